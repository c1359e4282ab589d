#!/usr/bin/env python3
"""Speed of the report filter, end to end: `medklip extract` as a user runs it (start-up included),
pinned to one core.

Corpora, from the IU/OpenI development reports (odd ids) that torchxrayvision ships:

* **warm**: the real reports repeated to ``--reports`` (ids made unique). Real corpora repeat
  boilerplate sentences ("No pneumothorax."); the filter analyses each distinct sentence once.
* **cold**: MIMIC-length reports (``--sentences`` sentences each, FINDINGS + IMPRESSION) built by
  recombining the *distinct* sentences of the development reports, no sentence used twice: every
  sentence is new to the filter, the slowest case.

    python benchmarks/report_filter_speed.py                  # 20,000 warm reports, 1 core
    python benchmarks/report_filter_speed.py --workers 1 2    # also with 2 worker processes
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torchxrayvision

from medklip.reports import ReportFilter
from medklip.reports.iu import read_iu_reports, select

MIMIC_REPORTS = 227_835
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def dev_reports() -> list:
    tgz = Path(torchxrayvision.__file__).parent / "data" / "NLMCXR_reports.tgz"
    return select(list(read_iu_reports(tgz)), "dev")


def write_warm(reports: list, n: int, out: Path) -> None:
    with out.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"r{i}", "text": reports[i % len(reports)].text}) + "\n")


def write_cold(reports: list, per_report: int, out: Path, seed: int = 0) -> tuple[int, int]:
    """Reports of distinct sentences; returns (reports, mean characters)."""
    seen: dict[str, None] = {}
    for r in reports:
        for key in ("FINDINGS", "IMPRESSION"):
            for s in _SENTENCE.split(r.sections.get(key, "")):
                if len(s.split()) >= 3:
                    seen.setdefault(s.strip())
    sentences = list(seen)
    random.Random(seed).shuffle(sentences)
    n, chars = 0, 0
    with out.open("w") as f:
        for start in range(0, len(sentences) - per_report + 1, per_report):
            part = sentences[start:start + per_report]
            cut = 2 * per_report // 3
            text = "FINDINGS: " + " ".join(part[:cut]) + "\nIMPRESSION: " + " ".join(part[cut:])
            f.write(json.dumps({"id": f"c{n}", "text": text}) + "\n")
            n, chars = n + 1, chars + len(text)
    return n, chars // max(n, 1)


def run(corpus: Path, workers: int) -> float:
    exe = shutil.which("medklip") or str(Path(sys.executable).with_name("medklip"))
    cmd = [exe, "extract", str(corpus), "-o", str(corpus.with_suffix(".out.jsonl")), "-q", "--workers", str(workers)]
    if shutil.which("taskset") and workers == 1:
        cmd = ["taskset", "-c", "0", *cmd]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reports", type=int, default=20_000)
    p.add_argument("--sentences", type=int, default=12, help="sentences per cold report (MIMIC-length)")
    p.add_argument("--workers", type=int, nargs="*", default=[1])
    args = p.parse_args()
    reports = dev_reports()
    with tempfile.TemporaryDirectory() as tmp:
        warm, cold = Path(tmp) / "warm.jsonl", Path(tmp) / "cold.jsonl"
        write_warm(reports, args.reports, warm)
        n_cold, chars = write_cold(reports, args.sentences, cold)
        print(f"machine: {os.cpu_count()} cores; {len(reports):,} development reports")
        t = run(cold, 1)
        print(f"cold, 1 core : {n_cold:>7,} reports of {args.sentences} distinct sentences (~{chars} characters) in "
              f"{t:6.2f} s = {n_cold / t:7.0f} reports/s (start-up included)")
        texts = [json.loads(line)["text"] for line in cold.read_text().splitlines()]
        rf = ReportFilter()
        start = time.perf_counter()
        for text in texts:
            rf.extract(text)
        t = time.perf_counter() - start
        print(f"cold, in one process, start-up excluded: {len(texts) / t:7.0f} reports/s "
              f"({1000 * t / len(texts):.2f} ms per {args.sentences}-sentence report)")
        for workers in args.workers:
            t = run(warm, workers)
            rate = args.reports / t
            label = "warm, 1 core " if workers == 1 else f"warm, {workers} workers"
            print(f"{label}: {args.reports:>7,} reports in {t:6.2f} s = {rate:7.0f} reports/s; MIMIC-CXR size "
                  f"({MIMIC_REPORTS:,}) would take {MIMIC_REPORTS / rate:5.0f} s")


if __name__ == "__main__":
    main()
