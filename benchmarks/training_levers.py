"""What is left to gain on the CPU pre-training step in fp32 (issue #29): the release's step and
medklip's, with the multi-tensor and the fused AdamW, alternating in one process (batch 8,
ResNet-50 to layer3, 224 px, the steps of ``benchmarks/gpu.py``), medians of the timed rounds.

``--keep-memory`` raises glibc's mmap and trim thresholds to 1 GiB after the warm-up step (freed
memory stays in the process instead of being returned to the system and faulted in again at the
next step) for every step alike, and prints the minor page faults and system time per step.

    .venv/bin/python benchmarks/training_levers.py
    .venv/bin/python benchmarks/training_levers.py --keep-memory
"""
from __future__ import annotations

import argparse
import ctypes
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu import Sizes, make_step, paper_model  # noqa: E402

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def keep_freed_memory() -> None:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
    libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--keep-memory", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    sizes = Sizes(8, 224, "resnet50", 4, args.rounds, 0)
    steps = {"release": make_step(paper_model(sizes, cpu), sizes, cpu, release=True),
             "medklip, multi-tensor AdamW": make_step(paper_model(sizes, cpu), sizes, cpu, release=False, foreach=True),
             "medklip, fused AdamW": make_step(paper_model(sizes, cpu), sizes, cpu, release=False)}
    for step in steps.values():
        step()
    if args.keep_memory:
        keep_freed_memory()
    times: dict[str, list[float]] = {k: [] for k in steps}
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_SELF)
    n = args.rounds * len(steps)
    base = statistics.median(times["release"])
    print(f"threads {args.threads}, keep memory {args.keep_memory}: {(after.ru_minflt - before.ru_minflt) / n:.0f} "
          f"minor faults and {(after.ru_stime - before.ru_stime) / n:.3f} s system time per step")
    for name, t in times.items():
        print(f"{name:30} {statistics.median(t) * 1e3:7.0f} ms  {base / statistics.median(t):.3f}x the release")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
