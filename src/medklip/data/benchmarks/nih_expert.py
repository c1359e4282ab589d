"""The adjudicated expert labels of four findings on ChestX-ray14 images (Majkowska et al.,
Radiology 2020; "google2019"): one CSV with ``Image Index``, ``Patient ID``, the four findings as
``YES`` / ``NO`` and ``Set Id`` (``test`` / ``validation``), as torchxrayvision ships it
(``google2019_nih-chest-xray-labels.csv.gz``), or Google's two files
(``four_findings_expert_labels_test_labels.csv`` / ``..._validation_labels.csv``). Images: the
ChestX-ray14 PNGs anywhere under ROOT. The set decides the split.
"""
from __future__ import annotations

from pathlib import Path

from medklip.data.benchmarks.base import Benchmark, BenchmarkError, Sample, index_files, make_error
from medklip.data.benchmarks.tables import build_benchmark, find_optional, read_table
from medklip.splits import normalize_split

COMBINED = ["google2019_nih-chest-xray-labels.csv"]
GOOGLE = {"test": "four_findings_expert_labels_test_labels.csv",
          "validation": "four_findings_expert_labels_validation_labels.csv"}
VALUES = {"YES": 1, "NO": 0}


def read_nih_expert(root: Path, spec: dict) -> Benchmark:
    classes = list(spec["classes"])
    combined = find_optional(root, COMBINED)
    tables = [(combined, None)] if combined else [(p, s) for s, n in GOOGLE.items() if (p := find_optional(root, [n]))]
    if not tables:
        raise BenchmarkError(f"{root}: no {COMBINED[0]}(.gz) nor {GOOGLE['test']}; see `medklip evaluate --list`")
    images = index_files(root, {".png"})
    samples: list[Sample] = []
    errors: list[dict] = []
    official: dict[str, str] = {}
    for path, fixed_split in tables:
        assert path is not None
        df = read_table(path, ["Image Index", "Patient ID", *classes])
        for i, row in enumerate(df.to_dict("records"), start=2):
            name = row["Image Index"].strip()
            split = fixed_split or normalize_split(row.get("Set Id", "").strip())
            if split is None:
                errors.append(make_error(path, i, name, f"Set Id {row.get('Set Id')!r} is not test or validation"))
                continue
            bad = {c: row[c] for c in classes if row[c].strip().upper() not in VALUES}
            if bad:
                errors.append(make_error(path, i, name, f"labels must be YES or NO, got {bad}"))
                continue
            if name not in images:
                errors.append(make_error(path, i, name, "image file not found under the root"))
                continue
            if name in official:
                errors.append(make_error(path, i, name, "listed twice; the first row is used"))
                continue
            samples.append(Sample(name, images[name], {c: VALUES[row[c].strip().upper()] for c in classes},
                                  row["Patient ID"].strip()))
            official[name] = split
    return build_benchmark(spec.get("name", "chestxray14-expert"), spec, samples, errors, official_split=official)
