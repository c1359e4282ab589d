"""Where the time of zero-shot prediction goes, per stage, on full-size radiographs.

For the paper's model (ResNet-50, 224 px, release-cxr14 preprocessing) and full-size PNG / JPEG
files (2,500 x 2,000, as ChestX-ray14's and CheXpert's originals), each stage is timed alone,
one image (or one batch) at a time, single process:

decode (file -> 8-bit image), resize (-> 224 x 224), normalise (-> [3, 224, 224] tensor), forward
(batch 8, probabilities only), forward with heatmaps (the attention maps kept), writing (one CSV row
per image). The shares say what a schedule must overlap: on 2 cores the decoding worker and the
model compete for the same cores.

    .venv/bin/python benchmarks/stages.py [--images 16] [--threads 2]
"""
from __future__ import annotations

import argparse
import csv
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from medklip import MedKLIP, MedKLIPConfig
from medklip.data.preprocess import Preprocess, PreprocessConfig


def radiograph(height: int, width: int, seed: int) -> np.ndarray:
    """A chest-like 8-bit picture with film grain (compresses like a real radiograph)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy, xx = yy / height, xx / width
    lungs = np.exp(-((xx - 0.3) ** 2 / 0.02 + (yy - 0.5) ** 2 / 0.08)) + np.exp(
        -((xx - 0.7) ** 2 / 0.02 + (yy - 0.5) ** 2 / 0.08))
    img = 0.75 - 0.45 * lungs + 0.08 * np.sin(40 * yy) + rng.normal(0, 0.035, (height, width)).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def per_item(fn, items) -> float:
    """Mean milliseconds of ``fn`` over ``items`` (one warm-up call first)."""
    fn(items[0])
    start = time.perf_counter()
    for item in items:
        fn(item)
    return 1000 * (time.perf_counter() - start) / len(items)


def write_row(values: np.ndarray, out: io.StringIO = io.StringIO()) -> None:  # noqa: B008 - one buffer
    csv.writer(out).writerow([f"{v:.9g}" for v in values])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = MedKLIP(MedKLIPConfig(), torch.randn(75, 768), torch.randn(51, 768)).eval()
    model = model.to(memory_format=torch.channels_last)
    pre = Preprocess(PreprocessConfig("release-cxr14", 224))
    size = (224, 224)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("png", "jpg"):
            paths = []
            for i in range(args.images):
                path = Path(tmp) / f"x{i}.{kind}"
                Image.fromarray(radiograph(2500, 2000, i)).save(path, **({"quality": 95} if kind == "jpg" else {}))
                paths.append(path)
            images = [pre.load(p) for p in paths]
            small = [im.resize(size, pre.resample) for im in images]
            stages = {"decode": per_item(pre.load, paths),
                      "resize": per_item(lambda im: im.resize(size, pre.resample), images),
                      "normalise": per_item(pre._gray_to_tensor, small)}
            batch = torch.stack([pre._gray_to_tensor(s) for s in small[:8]]).contiguous(
                memory_format=torch.channels_last)
            with torch.inference_mode():
                stages["forward (per image, batch 8)"] = per_item(
                    lambda x: model(x, need_attentions=False), [batch] * 3) / 8
                stages["forward with heatmaps (per image, batch 8)"] = per_item(
                    lambda x: model(x, need_attentions=True), [batch] * 3) / 8
            probs = np.random.default_rng(0).random((len(paths), 14))
            stages["writing (CSV row)"] = per_item(write_row, list(probs))
            total = sum(v for k, v in stages.items() if "with heatmaps" not in k)
            for name, ms in stages.items():
                rows.append((kind.upper(), name, ms, 100 * ms / total))
    print(f"torch {torch.__version__}, {args.threads} threads, {args.images} images of 2,500 x 2,000 per format\n")
    print("| format | stage | ms / image | share of the total (without heatmaps) |\n|---|---|---|---|")
    for kind, name, ms, share in rows:
        print(f"| {kind} | {name} | {ms:.1f} | {share:.0f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
