#!/usr/bin/env python3
"""Speed of the report filter, end to end: `medklip extract` as a user runs it (start-up included).

Corpus: the real IU/OpenI reports of ../shared/eval/iu_dev.jsonl (1,979 distinct reports),
repeated to the requested size with ids made unique. Real corpora repeat boilerplate
sentences too ("No pneumothorax."); the filter analyses each distinct sentence once, so the
first pass over distinct reports ("cold") is the slowest case and is measured separately.

    python benchmarks/report_filter_speed.py                  # 20,000 reports, 1 core
    python benchmarks/report_filter_speed.py --workers 2      # also with 2 worker processes
    python benchmarks/report_filter_speed.py --reports 227835 # MIMIC-CXR size
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "eval" / "iu_dev.jsonl"
MIMIC_REPORTS = 227_835


def write_corpus(source: Path, n: int, out: Path) -> int:
    texts = [json.loads(line)["text"] for line in source.read_text().splitlines() if line.strip()]
    with out.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"r{i}", "text": texts[i % len(texts)]}) + "\n")
    return len(texts)


def run(corpus: Path, workers: int, one_core: bool) -> float:
    exe = shutil.which("medklip") or str(Path(sys.executable).with_name("medklip"))
    cmd = [exe, "extract", str(corpus), "-o", str(corpus.with_suffix(".out.jsonl")), "-q", "--workers", str(workers)]
    if one_core and shutil.which("taskset") and workers == 1:
        cmd = ["taskset", "-c", "0", *cmd]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reports", type=int, default=20_000)
    p.add_argument("--workers", type=int, nargs="*", default=[1])
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="JSONL with a 'text' per line")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        distinct = write_corpus(args.source, args.reports, corpus)
        cold = Path(tmp) / "cold.jsonl"
        write_corpus(args.source, distinct, cold)
        print(f"machine: {os.cpu_count()} cores; corpus: {args.reports:,} reports ({distinct:,} distinct, "
              f"real IU/OpenI text)")
        t = run(cold, 1, one_core=True)
        print(f"cold   1 core : {distinct:>7,} distinct reports in {t:6.2f} s = {distinct / t:7.0f} reports/s "
              "(start-up included)")
        for workers in args.workers:
            t = run(corpus, workers, one_core=True)
            rate = args.reports / t
            print(f"{'1 core ' if workers == 1 else f'{workers} workers'}      : {args.reports:>7,} reports in "
                  f"{t:6.2f} s = {rate:7.0f} reports/s; MIMIC-CXR size ({MIMIC_REPORTS:,}) would take "
                  f"{MIMIC_REPORTS / rate:5.0f} s")


if __name__ == "__main__":
    main()
