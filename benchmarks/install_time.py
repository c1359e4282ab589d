"""What a newcomer waits for before the first test: `make install` with uv against pip alone.

Times, in a fresh clone of this repository's HEAD and with empty package caches (as on a fresh
machine), the two ways the Makefile can install torch (pinned), medklip and its test extras:
``make install`` itself (one ``uv pip install`` from the sources pip is configured with) and pip
alone (the Makefile's fallback branch, run as written there). Runs the two methods alternately,
``--repeats`` times each, and prints each time and the ratio of the medians. Needs a quiet machine
and about 7 GB of disk per environment (deleted after each run).

    .venv/bin/python benchmarks/install_time.py --repeats 2
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], env: dict[str, str], cwd: Path) -> None:
    """Run quietly; on failure raise with the command's last output."""
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])}... exited {done.returncode}: {(done.stdout + done.stderr)[-2000:]}")


def install(method: str, base: Path) -> float:
    """Seconds from a fresh clone without ``.venv`` to an environment with everything `make test` needs."""
    clone, cache = base / "main", base / "cache"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = {**os.environ, "UV_CACHE_DIR": str(cache), "PIP_CACHE_DIR": str(cache / "pip")}
    py = str(clone / ".venv" / "bin" / "python")
    start = time.perf_counter()
    if method == "uv":
        run(["make", "install"], env, clone)
    else:  # the Makefile's fallback branch, with the Makefile's torch pins
        pins = re.search(r"^TORCH_PINS := (.+)$", (clone / "Makefile").read_text(), re.M)
        assert pins is not None, "Makefile: no TORCH_PINS line"
        run([sys.executable, "-m", "venv", ".venv"], env, clone)
        run([py, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], env, clone)
        run([py, "-m", "pip", "install", "--quiet", *pins.group(1).split()], env, clone)
        run([py, "-m", "pip", "install", "--quiet", "-e", ".[test]"], env, clone)
    seconds = time.perf_counter() - start
    run([py, "-c", "import torch, torchvision, medklip, pytest"], env, clone)
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
