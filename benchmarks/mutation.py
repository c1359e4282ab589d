"""The test suite's strength, measured: mutation testing (mutmut, PyPI) of the modules whose numbers
users rely on, each with that module's own fast unit tests. Prints the share of mutants killed per
module (the target is >= 80%) and writes the surviving mutants' diffs, to be fixed by a test or
listed as equivalent in docs/mutation.md. A mutant counts as killed when its tests fail (mutmut's
"suspicious" ones failed too, only slower than the unmutated run); mutmut counts any pytest exit
code other than 1 as survived.

mutmut 2.x mutates files in place, so the run works on a copy of ``src/`` and ``tests/`` in a
temporary folder (the working tree and any running job stay untouched) and puts that copy first on
``PYTHONPATH``. mutmut is not a dependency of medklip: this script installs it into a private
virtual environment on first use (``--mutmut`` points at an existing executable instead).

    .venv/bin/python benchmarks/mutation.py                       # every module below (about 3 h on one core)
    .venv/bin/python benchmarks/mutation.py --modules evaluation/metrics.py --out runs/mutation
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {
    "evaluation/metrics.py": ["tests/evaluation/test_metrics.py",
                              "tests/evaluation/test_compare.py::test_bootstrap_aucs_equal_the_auc_of_each_resample_drawn_out"],
    "evaluation/grounding.py": ["tests/evaluation/test_grounding.py",
                                "tests/evaluation/test_metrics_from_predictions.py::test_random_patch_hit_rate_by_hand",
                                "tests/evaluation/test_metrics_from_predictions.py::test_mean_iou_over_thresholds_by_hand",
                                "tests/evaluation/test_metrics_from_predictions.py::test_contrast_to_noise_by_hand",
                                "tests/evaluation/test_operating_points.py::test_grounding_threshold_from_validation"],
    "evaluation/compare.py": ["tests/evaluation/test_compare.py"],
    "evaluation/operating.py": ["tests/evaluation/test_operating_points.py"],
    "evaluation/calibration.py": ["tests/evaluation/test_calibration.py"],
    "evaluation/scoring.py": ["tests/evaluation/test_scoring.py", "tests/evaluation/test_metrics_from_predictions.py"],
    "data/preprocess.py": ["tests/data/test_preprocess.py"],
    "data/dicom.py": ["tests/data/test_dicom.py", "tests/data/test_dicom_refusals.py",
                      "tests/data/test_bombs_in_a_fresh_process.py"],
    "reports/filter.py": ["tests/reports/test_filter.py", "tests/reports/test_radgraph.py",
                          "tests/reports/test_iu_dev_score.py::test_every_other_development_report_agrees_with_its_codes"],
}
"""Module (under src/medklip) -> the unit tests that cover it."""


def mutmut_executable(given: str | None) -> str:
    if given:
        return given
    venv = Path(tempfile.gettempdir()) / "medklip-mutmut-venv"
    exe = venv / "bin" / "mutmut"
    if not exe.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "mutmut==2.5.1"], check=True)
    return str(exe)


def mutant_status(cache: Path) -> dict[str, int]:
    """Mutants per status in mutmut's result cache (``ok_killed``, ``bad_survived``, ``bad_timeout``...)."""
    import sqlite3

    if not cache.is_file():
        return {}
    with sqlite3.connect(cache) as db:
        return dict(db.execute("select status, count(*) from Mutant group by status").fetchall())


def run_module(module: str, tests: list[str], mutmut: str, out: Path) -> dict:
    work = Path(tempfile.mkdtemp(prefix="medklip-mutation-"))
    try:
        shutil.copytree(ROOT / "src", work / "src")
        shutil.copytree(ROOT / "tests", work / "tests")
        shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
        runner = f"env PYTHONPATH={work / 'src'}:{work} {sys.executable} -m pytest -x -q -p no:cacheprovider " + \
                 " ".join(tests)
        start = time.perf_counter()
        done = subprocess.run([mutmut, "run", "--paths-to-mutate", f"src/medklip/{module}", "--runner", runner,
                               "--tests-dir", "tests", "--simple-output", "--no-progress"],
                              cwd=work, capture_output=True, text=True)
        status = mutant_status(work / ".mutmut-cache")
        if not status or status.get("untested"):
            raise RuntimeError(f"{module}: mutmut did not finish ({status}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        killed, timeout, suspicious = status.get("ok_killed", 0), status.get("bad_timeout", 0), status.get("ok_suspicious", 0)
        survived, skipped = status.get("bad_survived", 0), status.get("skipped", 0)
        show = subprocess.run([mutmut, "show", "all"], cwd=work, capture_output=True, text=True).stdout
        name = module.replace("/", "_").removesuffix(".py")
        (out / f"{name}.survivors.diff").write_text(show)
        total = killed + timeout + suspicious + survived
        return {"module": module, "tests": tests, "mutants": total, "killed": killed, "timeout": timeout,
                "suspicious": suspicious, "survived": survived, "skipped": skipped,
                "score": (killed + timeout + suspicious) / total if total else float("nan"),
                "minutes": (time.perf_counter() - start) / 60}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modules", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    p.add_argument("--mutmut", help="an installed mutmut 2.x executable")
    p.add_argument("--out", default="runs/mutation")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mutmut = mutmut_executable(args.mutmut)
    rows = []
    for module in args.modules:
        row = run_module(module, TARGETS[module], mutmut, out)
        rows.append(row)
        with (out / "results.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        killed = row["killed"] + row["timeout"] + row["suspicious"]
        print(f"{module}: {killed}/{row['mutants']} killed ({100 * row['score']:.0f}%), "
              f"{row['survived']} survived, {row['minutes']:.1f} min", flush=True)
    print("\n| module | tests | mutants | killed | survived | score |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['module']} | {', '.join(Path(t.split('::')[0]).name for t in r['tests'])} | {r['mutants']} | "
              f"{r['killed'] + r['timeout'] + r['suspicious']} | {r['survived']} | {100 * r['score']:.0f}% |")


if __name__ == "__main__":
    main()
