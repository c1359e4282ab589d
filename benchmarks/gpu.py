"""The GPU run of issue #29, ready to go: one script, one CUDA device, <= 8 minutes.

Measures, on the paper's model (ResNet-50 to layer3, 224 px, 4 decoder layers, 75 + 51 queries):

- the pre-training step (images/s, median of timed steps) of the **release** (fp32, attention
  weights computed, ``loss.item()`` every step, for-loop AdamW) against medklip's step in fp32 and
  under bf16 autocast, channels-last, fused AdamW, with ``torch.compile`` off and on;
- the share of the GPU's dense bf16 peak that the trunk's convolutions reach in the best step
  (trunk FLOPs counted with ``torch.utils.flop_counter``; the peak from ``--peak-tflops`` or a table
  of known GPUs);
- zero-shot images/s at batch 64 from the image cache (the decoded, resized copies training and
  evaluation reuse), fp32 and bf16;
- peak GPU memory of each;
- a two-process DDP step on the one GPU (gloo when both processes share the device).

    python benchmarks/gpu.py --out gpu.json            # on the GPU machine
    python benchmarks/gpu.py --device cpu --smoke      # what the tests run: every part, tiny sizes

Every result is written to ``--out`` as soon as it is measured (a run cut short keeps what it had).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medklip import MedKLIP, MedKLIPConfig
from medklip.models import MedKLIPCriterion
from medklip.train.builders import adamw

PEAK_BF16_TFLOPS = {"H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0,
                    "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0, "RTX 4090": 165.0}
"""Dense bf16 tensor-core peaks (vendor data sheets, without sparsity), by a name the device's contains."""


@dataclass(frozen=True)
class Sizes:
    batch: int
    image_size: int
    backbone: str
    num_layers: int
    steps: int
    zero_shot_images: int

    @staticmethod
    def pick(smoke: bool) -> Sizes:
        return Sizes(2, 64, "resnet18", 1, 2, 8) if smoke else Sizes(64, 224, "resnet50", 4, 20, 1024)


def paper_model(sizes: Sizes, device: torch.device, seed: int = 0) -> MedKLIP:
    gen = torch.Generator().manual_seed(seed)
    cfg = MedKLIPConfig(backbone=sizes.backbone, image_size=sizes.image_size, num_layers=sizes.num_layers)
    return MedKLIP(cfg, torch.randn(75, 768, generator=gen), torch.randn(51, 768, generator=gen)).to(device)


def peak_tflops(device_name: str, given: float | None = None) -> float | None:
    """The dense bf16 peak of a GPU named ``device_name`` (None when unknown and not given)."""
    if given:
        return given
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key.lower() in device_name.lower():
            return PEAK_BF16_TFLOPS[key]
    return None


def trunk_flops_per_image(model: MedKLIP, image_size: int) -> float:
    """FLOPs (2 x multiply-adds) of one image's forward through the image trunk."""
    from torch.utils.flop_counter import FlopCounterMode

    trunk = model.image_encoder
    x = torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        trunk(x)
    return float(counter.get_total_flops())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], None], steps: int, device: torch.device, warmup: int = 2) -> float:
    """Median seconds of one call of ``step`` after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_step(model: MedKLIP, sizes: Sizes, device: torch.device, *, release: bool, bf16: bool = False,
              compiled: bool = False, foreach: bool = False) -> Callable[[], None]:
    """One optimiser step on a fixed random batch, the release's way or medklip's (``foreach``:
    medklip's step with the multi-tensor AdamW it used before the fused one)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(sizes.batch, 3, sizes.image_size, sizes.image_size, generator=gen).to(device)
    labels = torch.randint(-1, 3, (sizes.batch, 75), generator=gen).to(device)
    index = torch.randint(0, 51, (sizes.batch, 75, 8), generator=gen).to(device)
    crit = MedKLIPCriterion()
    model.train()
    if release:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.02, foreach=False)
        forward: Callable = model
    else:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.02, foreach=True) if foreach \
            else adamw(model.parameters(), 1e-4, device, weight_decay=0.02)  # the trainer's optimiser
        forward = torch.compile(model) if compiled else model

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = forward(x, need_attentions=release)  # the release always computes attention weights
            loss = crit(out, labels, index, model.position_embeddings).total
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if release:
            loss.item()  # the release logs loss.item() every step

    return step


def peak_memory(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def zero_shot_rate(model: MedKLIP, sizes: Sizes, device: torch.device, bf16: bool, folder: Path) -> float:
    """Images/s of zero-shot prediction at batch 64 (``sizes.batch`` in a smoke run) reading the
    image cache's resized copies through a loader, as ``medklip evaluate`` reads cached images."""
    from torch.utils.data import DataLoader, Dataset

    from medklip.data.image_io import ImageCache
    from medklip.data.transforms import eval_transform

    rng = np.random.default_rng(0)
    sources = []
    for i in range(min(sizes.zero_shot_images, 64)):
        path = folder / f"xray{i}.png"
        from PIL import Image

        Image.fromarray(rng.integers(0, 255, (512, 416), dtype=np.uint8)).save(path, compress_level=1)
        sources.append(path)
    cache = ImageCache(folder / "cache", short_side=256)
    for p in sources:
        cache.load(p)
    tf = eval_transform(sizes.image_size)

    class Cached(Dataset):
        def __len__(self) -> int:
            return sizes.zero_shot_images

        def __getitem__(self, i: int) -> torch.Tensor:
            return tf(cache.load(sources[i % len(sources)]).convert("RGB"))

    batch = 64 if sizes.batch >= 64 else sizes.batch
    loader = DataLoader(Cached(), batch_size=batch, num_workers=min(8, os.cpu_count() or 1) if device.type == "cuda"
                        else 0, pin_memory=device.type == "cuda")
    model = model.eval().to(memory_format=torch.channels_last)
    queries = model.entity_embeddings
    start, n = time.perf_counter(), 0
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for images in loader:
            out = model(images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last), queries)
            out.probs.float().cpu()
            n += len(images)
    sync(device)
    return n / (time.perf_counter() - start)


def _ddp_worker(rank: int, world: int, port: int, device: str, smoke: bool, results: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dev = torch.device(device)
    backend = "gloo" if dev.type == "cpu" or torch.cuda.device_count() < world else "nccl"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        sizes = Sizes.pick(smoke)
        model = paper_model(sizes, dev).to(memory_format=torch.channels_last)  # before DDP sees its strides
        ddp = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
        half = Sizes(max(1, sizes.batch // world), sizes.image_size, sizes.backbone, sizes.num_layers, sizes.steps,
                     sizes.zero_shot_images)
        gen = torch.Generator().manual_seed(rank)
        x = torch.randn(half.batch, 3, half.image_size, half.image_size, generator=gen).to(dev)
        x = x.contiguous(memory_format=torch.channels_last)
        crit = MedKLIPCriterion()
        labels = torch.randint(-1, 3, (half.batch, 75), generator=gen).to(dev)
        index = torch.randint(0, 51, (half.batch, 75, 8), generator=gen).to(dev)
        opt = torch.optim.AdamW(ddp.parameters(), lr=1e-4)

        def ddp_step() -> None:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                out = ddp(x, need_attentions=False)
                loss = crit(out, labels, index, model.position_embeddings).total
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        seconds = time_steps(ddp_step, half.steps, dev)
        if rank == 0:
            Path(results).write_text(json.dumps({"ddp_images_per_s": half.batch * world / seconds,
                                                 "backend": backend, "processes": world}))
    finally:
        dist.destroy_process_group()


def ddp_rate(device: torch.device, smoke: bool, world: int = 2) -> dict:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ddp.json"
        mp.spawn(_ddp_worker, args=(world, port, str(device), smoke, str(out)), nprocs=world, join=True)
        return json.loads(out.read_text())


def run(device: torch.device, smoke: bool, out: Path, given_peak: float | None = None,
        compile_on: bool = True) -> dict:
    sizes = Sizes.pick(smoke)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    results: dict = {"device": name, "torch": torch.__version__, "sizes": sizes.__dict__}

    def record(key: str, value) -> None:
        results[key] = value
        out.write_text(json.dumps(results, indent=1))
        print(f"{key}: {value}", flush=True)

    flops = trunk_flops_per_image(paper_model(sizes, device), sizes.image_size)
    record("trunk_gflops_per_image_forward", flops / 1e9)
    variants = [("release fp32", dict(release=True)), ("medklip fp32", dict(release=False)),
                ("medklip bf16", dict(release=False, bf16=True))]
    if compile_on:
        variants += [("medklip bf16 compiled", dict(release=False, bf16=True, compiled=True))]
    steps: dict[str, dict] = {}
    for label, options in variants:
        reset_memory(device)
        model = paper_model(sizes, device)
        seconds = time_steps(make_step(model, sizes, device, **options), sizes.steps, device,
                             warmup=3 if options.get("compiled") else 2)
        steps[label] = {"images_per_s": sizes.batch / seconds, "peak_memory_gib": peak_memory(device)}
        record("train_steps", steps)
    base = steps["release fp32"]["images_per_s"]
    record("train_speedup_vs_release", {k: v["images_per_s"] / base for k, v in steps.items()})
    peak = peak_tflops(name, given_peak) if device.type == "cuda" else None
    best = max(v["images_per_s"] for k, v in steps.items() if "bf16" in k)
    achieved = 3 * flops * best / 1e12  # forward + backward (about 2x forward) through the trunk
    record("trunk_bf16_tflops_achieved", achieved)
    record("trunk_share_of_bf16_peak", achieved / peak if peak else None)
    with tempfile.TemporaryDirectory() as tmp:
        for bf16 in (False, True):
            reset_memory(device)
            rate = zero_shot_rate(paper_model(sizes, device), sizes, device, bf16, Path(tmp))
            record(f"zero_shot_images_per_s_{'bf16' if bf16 else 'fp32'}",
                   {"images_per_s": rate, "peak_memory_gib": peak_memory(device)})
    record("ddp_two_processes_one_device", ddp_rate(device, smoke))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: every part runs in seconds (CPU tests)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, when not in the table")
    p.add_argument("--out", default="gpu.json")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; run on the GPU machine, or --device cpu --smoke for a check")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32: the release's numbers
    run(device, args.smoke, Path(args.out), args.peak_tflops, not args.no_compile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
