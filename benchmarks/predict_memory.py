"""Flat memory over long inputs: peak RSS of `medklip predict` (process and its decoding workers)
over 10 and over 1,000 full-size 2,500 x 2,000 PNG radiographs, with an overlay written per image.
Target (issue #14): the peak over 1,000 images within 1.5x of the peak over 10.

    python benchmarks/predict_memory.py [--images 1000] [--workers 1]

The 1,000 files are hard links to 20 distinct synthetic radiographs (each is decoded in full every
time; the disk holds 20).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image


def tree_rss_mb(root: int) -> float:
    """RSS of a process and all its descendants (MB)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
        except (OSError, StopIteration):
            pass
        stack.extend(children.get(pid, []))
    return total


def peak_of(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS of the process tree in MB, seconds) of one command."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak, start = 0.0, time.perf_counter()

    def watch() -> None:
        nonlocal peak
        while proc.poll() is None:
            peak = max(peak, tree_rss_mb(proc.pid))
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    _, err = proc.communicate()
    thread.join()
    if proc.returncode not in (0, 1):
        raise RuntimeError(err[-2000:])
    return peak, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from soak_server import build_model
    from speed import radiograph

    with tempfile.TemporaryDirectory(prefix="medklip-memory-") as tmp:
        tmp_path = Path(tmp)
        model = build_model(tmp_path / "model")
        distinct = []
        for k in range(20):
            distinct.append(tmp_path / f"distinct{k}.png")
            Image.fromarray(radiograph(2500, 2000, k)).save(distinct[-1], compress_level=1)
        rows = []
        for n in (10, args.images):
            folder = tmp_path / f"n{n}"
            folder.mkdir()
            for i in range(n):
                os.link(distinct[i % len(distinct)], folder / f"cxr{i:05d}.png")
            cmd = [sys.executable, "-m", "medklip", "predict", str(folder), "--model", str(model), "--findings",
                   "effusion", "--format", "csv", "--heatmaps", str(tmp_path / f"overlays{n}"), "--workers",
                   str(args.workers), "--device", "cpu"]
            peak, seconds = peak_of(cmd)
            overlays = len(list((tmp_path / f"overlays{n}").glob("*.png")))
            rows.append((n, peak, seconds, overlays))
            print(f"{n} images: peak RSS {peak:.0f} MB (process + workers), {seconds:.0f} s, {overlays} overlays",
                  flush=True)
        (n0, p0, _, _), (n1, p1, _, _) = rows
        print("\n| images (2500 x 2000 PNG) | peak RSS, MB | seconds | overlays |\n|---|---|---|---|")
        for n, peak, seconds, overlays in rows:
            print(f"| {n} | {peak:.0f} | {seconds:.0f} | {overlays} |")
        print(f"\npeak over {n1} / peak over {n0}: {p1 / p0:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
