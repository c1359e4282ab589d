"""medklip against a release-equivalent path, side by side in one process (issue #14).

Each row is a ratio against a baseline measured in the same run:

* **release** mode: what the release's scripts do - eager fp32 model, PIL ``open().convert('RGB')``
  + torchvision ``Resize([224, 224])`` per image, a plain loop over batches of 8, no workers
  (``torch.no_grad``, attention weights computed, contiguous tensors);
* **medklip** (exact): the ``Predictor`` with the release's preprocessing profile - decoding in a
  worker process overlapped with the model, grayscale resized once, channels_last,
  ``inference_mode``; its probabilities are compared with the release mode's;
* **medklip, ONNX Runtime**: the same, the model run by ONNX Runtime (``--backend onnxruntime``);
* **medklip fast** (opt-in): ``PreprocessConfig(fast=True)`` (JPEG DCT-scaled decoding, resizing
  through ``reduce``) with ONNX Runtime;
* **N model processes** (opt-in, ``Predictor(processes=N)`` / ``--processes N``, N = the cores by
  default): each process decodes its own batches and runs the model on one share of the cores.

Rows: end-to-end zero-shot on full-size PNG, JPEG and DICOM radiographs; one training step;
the data loader with the release's augmentation, from full-size files and from the image cache;
the model alone (eager / channels_last / ONNX Runtime). Numbers depend on the machine: compare
ratios, not images/s, across machines.

    python benchmarks/speed.py [--images 32] [--quick]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from medklip import MedKLIP, MedKLIPConfig
from medklip.zeroshot.predict import Predictor

RELEASE_TF = T.Compose([T.Resize([224, 224]), T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
ROWS: list[tuple[str, str, float, float, str]] = []
PRECISIONS_TO_TIME: set[str] = set()
"""``bf16`` with ``--bf16`` (the opt-in bf16 autocast rows; slower where the CPU emulates bf16),
``openvino`` with ``--openvino`` (the OpenVINO backend's rows)."""


def radiograph(height: int, width: int, seed: int) -> np.ndarray:
    """A chest-like 8-bit picture with film grain (compresses like a real radiograph)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy /= height
    xx /= width
    lungs = np.exp(-((xx - 0.3) ** 2 / 0.02 + (yy - 0.5) ** 2 / 0.08)) + np.exp(-((xx - 0.7) ** 2 / 0.02
                                                                                 + (yy - 0.5) ** 2 / 0.08))
    ribs = 0.08 * np.sin(40 * yy + 3 * np.abs(xx - 0.5))
    img = 0.75 - 0.45 * lungs + ribs + rng.normal(0, 0.035, (height, width)).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def write_inputs(folder: Path, n: int, quick: bool) -> dict[str, list[Path]]:
    h, w = (1250, 1000) if quick else (2500, 2000)
    files: dict[str, list[Path]] = {"png": [], "jpeg": [], "dicom": []}
    for k in range(n):
        img = radiograph(h, w, k)
        files["png"].append(folder / f"cxr{k:03d}.png")
        Image.fromarray(img).save(files["png"][-1])
        files["jpeg"].append(folder / f"cxr{k:03d}.jpg")
        Image.fromarray(img).save(files["jpeg"][-1], quality=95)
        if k < n // 2:
            files["dicom"].append(folder / f"cxr{k:03d}.dcm")
            write_dicom(files["dicom"][-1], img.astype(np.uint16) * 16)
    return files


def write_dicom(path: Path, pixels: np.ndarray) -> None:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def paper_model() -> MedKLIP:
    """The paper's architecture (ResNet-50, 4 layers, 75 queries, 768-d text) with random weights."""
    torch.manual_seed(0)
    return MedKLIP(MedKLIPConfig(), torch.randn(75, 768), torch.randn(51, 768)).eval()


@contextmanager
def timed(out: list[float]):
    start = time.perf_counter()
    yield
    out.append(time.perf_counter() - start)


def release_predict(model: MedKLIP, files: list[Path], profile: str, batch: int = 8) -> np.ndarray:
    """The release's loop: decode + resize each image in turn, then the batch, eager."""
    import pydicom
    from skimage import exposure

    probs = []
    with torch.no_grad():
        for start in range(0, len(files), batch):
            tensors = []
            for path in files[start:start + batch]:
                if profile == "release-rsna":  # the release's read_dcm
                    pixels = pydicom.dcmread(path).pixel_array.astype(float) / 255.0
                    img = Image.fromarray((255 * exposure.equalize_hist(pixels)).astype(np.uint8)).convert("RGB")
                else:
                    img = Image.open(path).convert("RGB")
                tensors.append(RELEASE_TF(img))
            probs.append(model(torch.stack(tensors), need_attentions=True).probs.numpy())
    return np.concatenate(probs)


def medklip_predict(predictor: Predictor, files: list[Path], batch: int = 8) -> np.ndarray:
    names = list(predictor.model.entity_names)
    out = []
    for r in predictor.iter_predict(files, names, batch_size=batch, heatmaps=True):
        assert r.error is None, r.error
        out.append([r.probabilities[n] for n in names])
    return np.array(out)


def rate(n: int, seconds: list[float]) -> float:
    return n / min(seconds)


def row(name: str, baseline: str, base_rate: float, ours_rate: float, note: str = "") -> None:
    ROWS.append((name, baseline, base_rate, ours_rate, note))
    print(f"{name}: {base_rate:.2f} -> {ours_rate:.2f} img/s = {ours_rate / base_rate:.2f}x {note}", flush=True)


FORMATS = {"png": "release-cxr14", "jpeg": "release-cxr14", "dicom": "release-rsna"}


def end_to_end(model: MedKLIP, files: dict[str, list[Path]], repeats: int, workers: int,
               formats: tuple[str, ...] = tuple(FORMATS), processes: int = 2) -> None:
    for kind, profile in ((k, FORMATS[k]) for k in formats):
        paths = files[kind]
        def make(**options) -> Predictor:
            return Predictor(model, device="cpu", preprocess=profile, workers=workers, **options)  # noqa: B023

        many = f"{processes} model processes"
        runs = {"exact": make(), "exact, ONNX Runtime": make(backend="onnxruntime"),
                "opt-in fast (reduced decoding + ONNX Runtime)": make(backend="onnxruntime", fast=True)}
        if processes > 1:
            runs[f"{many}, PyTorch"] = make(processes=processes)
            runs[f"{many}, ONNX Runtime"] = make(backend="onnxruntime", processes=processes)
            runs[f"{many}, fast + ONNX Runtime"] = make(backend="onnxruntime", fast=True, processes=processes)
        if "openvino" in PRECISIONS_TO_TIME:
            runs["exact, OpenVINO"] = make(backend="openvino")
            runs["opt-in fast (reduced decoding + OpenVINO)"] = make(backend="openvino", fast=True)
            if processes > 1:
                runs[f"{many}, OpenVINO"] = make(backend="openvino", processes=processes)
        if "bf16" in PRECISIONS_TO_TIME:
            runs["opt-in bf16 autocast"] = make(precision="bf16")
        for name, predictor in runs.items():
            started = time.perf_counter()
            medklip_predict(predictor, paths[:8 * processes])  # warm-up: workers, ONNX exports, every model process
            print(f"  warm-up of {name} ({kind}): {time.perf_counter() - started:.1f} s", flush=True)
        times: dict[str, list[float]] = {"release": [], **{name: [] for name in runs}}
        results: dict[str, np.ndarray] = {}
        for _ in range(repeats):
            with timed(times["release"]):
                reference = release_predict(model, paths, profile)
            for name, predictor in runs.items():
                with timed(times[name]):
                    results[name] = medklip_predict(predictor, paths)
        base = rate(len(paths), times["release"])
        for name in runs:
            diff = float(np.abs(results[name] - reference).max())
            row(f"end to end, {len(paths)} full-size {kind.upper()} ({profile}), {name}", "release loop", base,
                rate(len(paths), times[name]), f"(max probability difference {diff:.1e})")
        for predictor in runs.values():
            predictor.close()


def fast_copy(model: MedKLIP) -> MedKLIP:
    import copy

    return copy.deepcopy(model).to(memory_format=torch.channels_last)


def training_step(steps: int) -> None:
    """The release's pre-training step against medklip's, both as ``benchmarks/gpu.py`` defines them
    (one definition of each), on the CPU at batch 8."""
    from gpu import Sizes, make_step, paper_model, time_steps

    cpu = torch.device("cpu")
    sizes = Sizes(8, 224, "resnet50", 4, steps, 0)

    def rate(**options) -> float:
        return 8 / time_steps(make_step(paper_model(sizes, cpu), sizes, cpu, **options), steps, cpu, warmup=1)

    base, ours = rate(release=True), rate(release=False)
    row("training step, batch 8, 224 px, ResNet-50 (CPU)", "release step", base, ours,
        "(channels_last, fused attention, fused AdamW, no per-step sync)")
    if "bf16" in PRECISIONS_TO_TIME:
        row("training step, bf16 autocast", "release step (fp32)", base, rate(release=False, bf16=True))


def loaders(files: list[Path], seconds: float = 8.0) -> None:
    from medklip.data.image_io import ImageCache, load_pil
    from medklip.data.transforms import train_transform

    tf = train_transform(224)
    release_tf = T.Compose([T.RandomResizedCrop(224, scale=(0.2, 1.0), interpolation=T.InterpolationMode.BICUBIC),
                            T.RandomHorizontalFlip(), T.RandAugment(2, 7), T.ToTensor(),
                            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])

    def measure(fn) -> float:
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            fn(files[n % len(files)])
            n += 1
        return n / (time.perf_counter() - start)

    torch.set_num_threads(1)
    base = measure(lambda p: release_tf(Image.open(p).convert("RGB")))
    full = measure(lambda p: tf(load_pil(p)))
    with tempfile.TemporaryDirectory() as tmp:
        cache = ImageCache(tmp, 256)
        for p in files:
            cache.load(p)
        cached = measure(lambda p: tf(cache.load(p)))
    torch.set_num_threads(os.cpu_count() or 1)
    row("loader, release augmentation, one core, from full-size PNG", "release loader", base, full)
    row("loader, release augmentation, one core, from the image cache", "release loader", base, cached,
        f"({cached:.0f} img/s per core)")


def model_only(model: MedKLIP, repeats: int) -> None:
    x = torch.randn(8, 3, 224, 224)
    fast = fast_copy(model)

    def measure(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return 8 / min(times)

    with torch.no_grad():
        eager = measure(lambda: model(x))
    with torch.inference_mode():
        cl = measure(lambda: fast(x.contiguous(memory_format=torch.channels_last)))
    row("model only, batch 8, 224 px (eval)", "eager fp32", eager, cl, "(channels_last + inference_mode)")
    if "bf16" in PRECISIONS_TO_TIME:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            bf = measure(lambda: fast(x.contiguous(memory_format=torch.channels_last)))
        row("model only, bf16 autocast + channels_last", "eager fp32", eager, bf)
    try:
        from medklip.models.export import export_onnx, onnx_session

        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(model, Path(tmp) / "m.onnx")
            session = onnx_session(path)
            ort = measure(lambda: session.run(None, {"images": x.numpy()}))
        row("model only, ONNX Runtime (CPU)", "eager fp32", eager, ort)
        if "openvino" in PRECISIONS_TO_TIME:
            import openvino as ov

            with tempfile.TemporaryDirectory() as tmp:
                path = export_onnx(model, Path(tmp) / "m.onnx")
                compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
                request = compiled.create_infer_request()
                ovr = measure(lambda: request.infer({"images": x.numpy()}))
            row("model only, OpenVINO (CPU, fp32)", "eager fp32", eager, ovr)
    except ImportError as exc:
        print(f"ONNX / OpenVINO row skipped: {exc}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--workers", type=int, default=1, help="decoding processes for medklip (default 1)")
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                   help="model processes for the multi-process rows (default: the cores; 1: no such rows)")
    p.add_argument("--quick", action="store_true", help="half-size images, fewer of them (a smoke run)")
    p.add_argument("--only", nargs="*", default=["e2e", "train", "loader", "model"])
    p.add_argument("--bf16", action="store_true", help="also time the opt-in bf16 autocast paths")
    p.add_argument("--openvino", action="store_true", help="also time the OpenVINO backend (medklip[openvino])")
    p.add_argument("--formats", nargs="+", choices=["png", "jpeg", "dicom"], default=["png", "jpeg", "dicom"],
                   help="end-to-end rows for these file formats")
    args = p.parse_args()
    if args.bf16:
        PRECISIONS_TO_TIME.add("bf16")
    if args.openvino:
        PRECISIONS_TO_TIME.add("openvino")
    print(f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    model = paper_model()
    with tempfile.TemporaryDirectory(prefix="medklip-speed-") as tmp:
        files = write_inputs(Path(tmp), 8 if args.quick else args.images, args.quick)
        if "model" in args.only:
            model_only(model, args.repeats + 1)
        if "e2e" in args.only:
            end_to_end(model, files, args.repeats, args.workers, tuple(args.formats), args.processes)
        if "train" in args.only:
            training_step(3 if args.quick else 6)
        if "loader" in args.only:
            loaders(files["png"], 3 if args.quick else 8)
    print("\n| | baseline (same run) | baseline img/s | medklip img/s | ratio | note |\n|---|---|---|---|---|---|")
    for name, baseline, base, ours, note in ROWS:
        print(f"| {name} | {baseline} | {base:.2f} | {ours:.2f} | **{ours / base:.2f}x** | {note.strip('()')} |")


if __name__ == "__main__":
    main()
