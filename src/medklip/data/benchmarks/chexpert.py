"""CheXpert (Irvin et al. 2019) as Stanford ships it: ``train.csv`` / ``valid.csv`` with a ``Path``
column and the 14 observations, and the radiologist-labelled test set (``test.csv`` /
``test_labels.csv`` with ``Path``, or CheXzero's ``groundtruth.csv`` with ``Study`` folders).

Labels as the publisher documents them: ``1`` positive, ``0`` negative, blank not mentioned
(negative), ``-1`` uncertain, handled by the spec's ``uncertain`` policy: ``ignore`` (default; the
image does not count for that observation), ``zeros`` or ``ones`` (the CheXpert paper's U-Zeros /
U-Ones). The validation (234 images) and test (500 studies) labels have no ``-1``. Frontal views
only by default (``views: all`` in a ``--mapping`` file keeps the laterals); the file decides the
split (train / valid / test), as the publisher splits it.
"""
from __future__ import annotations

import re
from pathlib import Path

from medklip.data.benchmarks.base import Benchmark, BenchmarkError, Sample, make_error
from medklip.data.benchmarks.tables import build_benchmark, find_optional, read_table

LABEL_FILES = {"train": ["train.csv"], "validation": ["valid.csv"],
               "test": ["test.csv", "test_labels.csv", "groundtruth.csv"]}
POLICIES = {"ignore": -1, "zeros": 0, "ones": 1}
VALUES = {"1": 1, "1.0": 1, "0": 0, "0.0": 0, "": 0, "-1": -1, "-1.0": -1}
PATIENT = re.compile(r"patient\d+")


def resolve_path(root: Path, listed: str) -> Path | None:
    """A CSV path (``CheXpert-v1.0-small/valid/...``) under the user's folder: as listed from the
    root or its parent, or with the dataset folder prefix dropped."""
    rel = Path(listed.strip().lstrip("/"))
    for candidate in (root / rel, root.parent / rel, root / Path(*rel.parts[1:]) if len(rel.parts) > 1 else None):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def is_frontal(row: dict, path: str) -> bool:
    view = row.get("Frontal/Lateral", "").strip().lower()
    if view:
        return view == "frontal"
    return "lateral" not in Path(path).name.lower()


def study_images(root: Path, study: str) -> list[Path]:
    """The images of one test study folder (``test/patient64741/study1``), sorted."""
    folder = root / study.strip().strip("/")
    if not folder.is_dir():
        folder = root / Path(*Path(study.strip().strip("/")).parts[1:])
    return sorted(p for p in folder.glob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"}) if folder.is_dir() else []


def read_chexpert(root: Path, spec: dict) -> Benchmark:
    policy = str(spec.get("uncertain", "ignore"))
    if policy not in POLICIES:
        raise BenchmarkError(f"chexpert: uncertain must be one of {', '.join(POLICIES)}, got {policy!r}")
    frontal_only = str(spec.get("views", "frontal")) == "frontal"
    classes = list(spec["classes"])
    files = {split: find_optional(root, names) for split, names in LABEL_FILES.items()}
    if not any(files.values()):
        raise BenchmarkError(f"{root}: no CheXpert label file (train.csv, valid.csv, test.csv, test_labels.csv or "
                             "groundtruth.csv); see `medklip evaluate --list`")
    samples: list[Sample] = []
    errors: list[dict] = []
    official: dict[str, str] = {}
    laterals = 0
    for split, path in files.items():
        if path is None:
            continue
        df = read_table(path, classes)
        key = "Path" if "Path" in df.columns else "Study" if "Study" in df.columns else None
        if key is None:
            raise BenchmarkError(f"{path}: needs a Path (image) or Study (folder) column; found {list(df.columns)}")
        for i, row in enumerate(df.to_dict("records"), start=2):
            listed = row[key]
            labels: dict[str, int] = {}
            bad = [c for c in classes if row[c].strip() not in VALUES]
            if bad:
                errors.append(make_error(path, i, listed, f"labels must be 1, 0, -1 or blank; got "
                                                          f"{ {c: row[c] for c in bad} }"))
                continue
            for c in classes:
                value = VALUES[row[c].strip()]
                labels[c] = POLICIES[policy] if value == -1 else value
            images = study_images(root, listed) if key == "Study" else [resolve_path(root, listed)]
            found = [p for p in images if p is not None]
            if not found:
                errors.append(make_error(path, i, listed, f"image not found under {root} (nor its parent)"))
                continue
            for image in found:
                if frontal_only and not is_frontal(row if key == "Path" else {}, str(image)):
                    laterals += 1
                    continue
                sid = listed if key == "Path" else f"{listed.strip('/')}/{image.name}"
                if sid in official:
                    errors.append(make_error(path, i, sid, "listed twice; the first row is used"))
                    continue
                patient = PATIENT.search(sid)
                samples.append(Sample(sid, image, dict(labels), patient.group(0) if patient else sid))
                official[sid] = split
    excluded = {"lateral views (views: frontal)": laterals} if laterals else {}
    return build_benchmark("chexpert", spec, samples, errors, official_split=official, excluded=excluded)
