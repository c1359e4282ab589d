"""What a newcomer waits for before the first test: `make install` with uv against pip alone.

Times, in fresh virtual environments and with empty package caches (as on a fresh machine), the
two ways the Makefile can install torch (pinned), medklip and its test extras: one ``uv pip
install`` from the sources pip is configured with (``tools/uv_sources.py``; what ``make install``
does) and pip alone (its fallback). Runs the two methods alternately, ``--repeats`` times each,
and prints each time and the ratio of the medians. Needs a quiet machine and about 7 GB of disk
per environment (deleted after each run).

    .venv/bin/python benchmarks/install_time.py --repeats 2
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINS = ["torch==2.14.1", "torchvision==0.29.1"]


def run(cmd: list[str], env: dict[str, str]) -> None:
    """Run quietly; on failure raise with the command's last output."""
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])}... exited {done.returncode}: {(done.stdout + done.stderr)[-2000:]}")


def install(method: str, base: Path) -> float:
    """Seconds from `python -m venv` to an environment with everything `make test` needs."""
    venv, cache = base / "venv", base / "cache"
    env = {**os.environ, "UV_CACHE_DIR": str(cache), "PIP_CACHE_DIR": str(cache / "pip")}
    py = str(venv / "bin" / "python")
    start = time.perf_counter()
    run([sys.executable, "-m", "venv", str(venv)], env)
    if method == "uv":
        run([py, "-m", "pip", "install", "--quiet", "uv"], env)
        sources = subprocess.run([py, str(ROOT / "tools" / "uv_sources.py")], check=True, env=env,
                                 capture_output=True, text=True).stdout.split()
        run([str(venv / "bin" / "uv"), "pip", "install", "--quiet", "--compile-bytecode", "--python", py, *sources,
             *PINS, "-e", ".[test]"], env)
    else:
        run([py, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], env)
        run([py, "-m", "pip", "install", "--quiet", *PINS], env)
        run([py, "-m", "pip", "install", "--quiet", "-e", ".[test]"], env)
    seconds = time.perf_counter() - start
    run([py, "-c", "import torch, torchvision, medklip, pytest"], env)
    return seconds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--methods", nargs="+", default=["uv", "pip"], choices=["uv", "pip"])
    args = p.parse_args()
    times: dict[str, list[float]] = {m: [] for m in args.methods}
    for i in range(args.repeats):
        for method in args.methods:
            base = Path(tempfile.mkdtemp(prefix=f"medklip-install-{method}-"))
            try:
                times[method].append(install(method, base))
            finally:
                shutil.rmtree(base, ignore_errors=True)
            print(f"run {i + 1} {method}: {times[method][-1]:.1f} s", flush=True)
    for method, values in times.items():
        print(f"{method}: median {statistics.median(values):.1f} s over {len(values)} ({', '.join(f'{v:.1f}' for v in values)})")
    if len(times) == 2:
        print(f"pip / uv: {statistics.median(times['pip']) / statistics.median(times['uv']):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
