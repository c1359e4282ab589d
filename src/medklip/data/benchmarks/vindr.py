"""VinDr-CXR (Nguyen et al. 2022) with the lesion boxes of its readers, in either published layout:

- Kaggle (VinBigData challenge): ``ROOT/train.csv`` with ``image_id, class_name, class_id, rad_id,
  x_min, y_min, x_max, y_max`` (three readers per image) and ``ROOT/train/<image_id>.dicom``;
  split seeded by image, as the paper's fractions.
- PhysioNet: ``ROOT/annotations/annotations_train.csv`` (three readers) and
  ``annotations_test.csv`` (the five-reader consensus), images ``ROOT/train/`` and ``ROOT/test/``;
  the publisher's train / test split.

An image is positive for a class when at least ``min_readers`` readers (spec, default 1) drew it;
the ground-truth region is the union of every reader's boxes of that class (pointing game, IoU /
Dice and detection as for RSNA). ``No finding`` rows carry no box. Labels outside the spec's
classes (PhysioNet's extra local labels) are counted as left out by the protocol, never mixed in.
"""
from __future__ import annotations

from pathlib import Path

from medklip.data.benchmarks.base import Benchmark, BenchmarkError, Region, Sample, index_files, make_error
from medklip.data.benchmarks.tables import build_benchmark, find_optional, read_table

NO_FINDING = "no finding"
IMAGE_SUFFIXES = {".dicom", ".dcm", ".png", ".jpg", ".jpeg"}
COLUMNS = ["image_id", "class_name", "x_min", "y_min", "x_max", "y_max"]


def read_vindr(root: Path, spec: dict) -> Benchmark:
    kaggle = find_optional(root, ["train.csv"])
    files = {"train": find_optional(root, ["annotations/annotations_train.csv", "annotations_train.csv"]),
             "test": find_optional(root, ["annotations/annotations_test.csv", "annotations_test.csv"])}
    physionet = any(files.values())
    if not physionet:
        if kaggle is None:
            raise BenchmarkError(f"{root}: no VinDr-CXR annotations (train.csv, or annotations/annotations_train.csv "
                                 "and annotations_test.csv); see `medklip evaluate --list`")
        files = {"train": kaggle, "test": None}
    classes = dict(spec["classes"])
    by_lower = {c.lower(): c for c in classes}
    min_readers = int(spec.get("min_readers", 1))
    images = index_files(root, IMAGE_SUFFIXES, key=lambda p: p.stem)
    drawn: dict[str, dict[str, set[str]]] = {}  # image -> class -> readers
    boxes: dict[str, dict[str, list[tuple[float, float, float, float]]]] = {}
    source: dict[str, tuple[Path, int, str]] = {}
    errors: list[dict] = []
    left_out: dict[str, int] = {}
    for split, path in files.items():
        if path is None:
            continue
        df = read_table(path, COLUMNS)
        readers = df["rad_id"] if "rad_id" in df.columns else ["consensus"] * len(df)
        for i, (row, reader) in enumerate(zip(df.to_dict("records"), readers), start=2):
            image_id = row["image_id"].strip()
            name = row["class_name"].strip()
            if image_id not in source:
                source[image_id] = (path, i, split)
                drawn[image_id], boxes[image_id] = {}, {}
            if name.lower() == NO_FINDING:
                continue
            cls = by_lower.get(name.lower())
            if cls is None:
                reason = f"label {name!r} is not one of this benchmark's classes (add it with --mapping)"
                left_out[reason] = left_out.get(reason, 0) + 1
                continue
            try:
                x0, y0, x1, y1 = (float(row[k]) for k in ("x_min", "y_min", "x_max", "y_max"))
            except ValueError:
                errors.append(make_error(path, i, image_id, f"{name} without a numeric box"))
                continue
            if not (x1 > x0 and y1 > y0):
                errors.append(make_error(path, i, image_id, f"{name}: empty box ({x0}, {y0}, {x1}, {y1})"))
                continue
            drawn[image_id].setdefault(cls, set()).add(str(reader).strip() or f"row{i}")
            boxes[image_id].setdefault(cls, []).append((x0, y0, x1 - x0, y1 - y0))
    samples: list[Sample] = []
    official: dict[str, str] = {}
    for image_id, (path, row, split) in source.items():
        if image_id not in images:
            errors.append(make_error(path, row, image_id, "image <image_id>.dicom (or .dcm / .png / .jpg) not found "
                                                          "under the root"))
            continue
        positive = {c for c, who in drawn[image_id].items() if len(who) >= min_readers}
        regions = {c: Region(boxes=boxes[image_id][c]) for c in positive}
        samples.append(Sample(image_id, images[image_id], {c: int(c in positive) for c in classes}, image_id, regions))
        official[image_id] = split
    return build_benchmark(spec.get("name", "vindr-cxr"), spec, samples, errors,
                           official_split=official if physionet else None, excluded=left_out)
