"""Readers for the paper's evaluation datasets, each in the layout its publisher ships.

Every reader returns a :class:`Benchmark`; label rows it cannot use (a missing image, an
unknown label, a bad number) are listed in ``Benchmark.errors`` with the file and row, never
dropped silently.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from medklip.data.benchmarks.base import (
    Benchmark,
    BenchmarkError,
    Region,
    Sample,
    index_files,
    make_error,
)
from medklip.data.benchmarks.tables import build_benchmark, find_file, pd, read_table

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- ChestX-ray14
def read_chestxray14(root: Path, spec: dict) -> Benchmark:
    labels_csv = find_file(root, ["Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv"], "Data_Entry_2017.csv",
                       "chestxray14")
    df = read_table(labels_csv, ["Image Index", "Finding Labels"])
    classes, aliases = spec["classes"], spec.get("aliases", {})
    images = index_files(root, {".png"})
    boxes: dict[str, dict[str, Region]] = {}
    try:
        bbox_csv = find_file(root, ["BBox_List_2017.csv"], "", "chestxray14")
    except BenchmarkError:
        bbox_csv = None
    errors: list[dict] = []
    if bbox_csv is not None:
        bdf = pd.read_csv(bbox_csv)
        for i, row in enumerate(bdf.itertuples(index=False), start=2):
            label = aliases.get(str(row[1]).strip(), str(row[1]).strip())
            if label not in classes:
                errors.append(make_error(bbox_csv, i, str(row[0]), f"unknown finding label {row[1]!r}"))
                continue
            region = boxes.setdefault(str(row[0]), {}).setdefault(label, Region())
            x, y, w, h = (float(v) for v in row[2:6])
            region.boxes.append((x, y, w, h))
    samples = []
    patients = df["Patient ID"] if "Patient ID" in df.columns else df["Image Index"]
    for i, (name, text, patient) in enumerate(zip(df["Image Index"], df["Finding Labels"], patients), start=2):
        found = [t.strip() for t in text.split("|") if t.strip() and t.strip() != "No Finding"]
        unknown = [t for t in found if aliases.get(t, t) not in classes]
        if unknown:
            errors.append(make_error(labels_csv, i, name, f"unknown finding label(s) {unknown}"))
            continue
        if name not in images:
            errors.append(make_error(labels_csv, i, name, "image file not found under the root"))
            continue
        positive = {aliases.get(t, t) for t in found}
        samples.append(Sample(name, images[name], {c: int(c in positive) for c in classes}, str(patient),
                              boxes.get(name, {})))
    return build_benchmark("chestxray14", spec, samples, errors)


# ----------------------------------------------------------------------------- RSNA Pneumonia
def read_rsna(root: Path, spec: dict) -> Benchmark:
    labels_csv = find_file(root, ["stage_2_train_labels.csv", "stage_1_train_labels.csv"], "stage_2_train_labels.csv",
                       "rsna-pneumonia")
    df = read_table(labels_csv, ["patientId", "x", "y", "width", "height", "Target"])
    images = index_files(root, {".dcm"}, key=lambda p: p.stem)
    [cls] = spec["classes"]
    by_id: dict[str, Sample] = {}
    errors: list[dict] = []
    for i, row in enumerate(df.itertuples(index=False), start=2):
        pid = row.patientId.strip()
        if row.Target not in ("0", "1"):
            errors.append(make_error(labels_csv, i, pid, f"Target must be 0 or 1, got {row.Target!r}"))
            continue
        if pid not in images:
            errors.append(make_error(labels_csv, i, pid, "DICOM <patientId>.dcm not found under the root"))
            continue
        sample = by_id.setdefault(pid, Sample(pid, images[pid], {cls: 0}, pid))
        if row.Target == "1":
            try:
                box = (float(row.x), float(row.y), float(row.width), float(row.height))
            except ValueError:
                errors.append(make_error(labels_csv, i, pid, "Target 1 without a numeric box"))
                continue
            sample.labels[cls] = 1
            sample.regions.setdefault(cls, Region()).boxes.append(box)
    return build_benchmark("rsna-pneumonia", spec, list(by_id.values()), errors)


# ----------------------------------------------------------------------------- SIIM-ACR
def read_siim(root: Path, spec: dict) -> Benchmark:
    labels_csv = find_file(root, ["train-rle.csv", "stage_2_train.csv", "siim-pneumothorax-train-rle.csv"],
                       "train-rle.csv", "siim-acr")
    df = read_table(labels_csv, ["ImageId", "EncodedPixels"])
    images = index_files(root, {".dcm"}, key=lambda p: p.stem)
    [cls] = spec["classes"]
    by_id: dict[str, Sample] = {}
    errors: list[dict] = []
    for i, row in enumerate(df.itertuples(index=False), start=2):
        image_id, rle = row.ImageId.strip(), row.EncodedPixels.strip()
        if image_id not in images:
            errors.append(make_error(labels_csv, i, image_id, "DICOM <ImageId>.dcm not found under the root"))
            continue
        if rle != "-1" and not rle.replace(" ", "").isdigit():
            errors.append(make_error(labels_csv, i, image_id, "EncodedPixels is neither -1 nor run-length integers"))
            continue
        sample = by_id.setdefault(image_id, Sample(image_id, images[image_id], {cls: 0}, image_id))
        if rle != "-1":
            sample.labels[cls] = 1
            sample.regions.setdefault(cls, Region()).rle.append(rle)
    return build_benchmark("siim-acr", spec, list(by_id.values()), errors)


# ----------------------------------------------------------------------------- COVIDx CXR-2
COVIDX_POSITIVE = {"positive", "covid-19", "covid"}
COVIDX_NEGATIVE = {"negative", "normal", "pneumonia"}


def read_covidx(root: Path, spec: dict) -> Benchmark:
    lists = [root / n for n in ("train.txt", "val.txt", "test.txt") if (root / n).is_file()]
    if not lists:
        raise BenchmarkError(f"{root}: no train.txt / test.txt found for covidx; "
                             "see `medklip evaluate --list` for the layout")
    [cls] = spec["classes"]
    index: dict[str, Path] | None = None
    samples, errors, seen = [], [], set()
    for lst in lists:
        for i, line in enumerate(lst.read_text().splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 3:
                errors.append(make_error(lst, i, line[:40], "expected: patient_id filename label [source]"))
                continue
            patient, filename, label = parts[0], parts[1], parts[2].lower()
            if label not in COVIDX_POSITIVE | COVIDX_NEGATIVE:
                errors.append(make_error(lst, i, filename, f"unknown label {parts[2]!r}"))
                continue
            path: Path | None = root / lst.stem / filename
            if path is None or not path.is_file():
                index = index if index is not None else index_files(root, {".png", ".jpg", ".jpeg"})
                path = index.get(filename)
            if path is None:
                errors.append(make_error(lst, i, filename, f"image not found in {root / lst.stem} or under the root"))
                continue
            if filename in seen:
                errors.append(make_error(lst, i, filename, "listed twice; the first row is used"))
                continue
            seen.add(filename)
            samples.append(Sample(filename, path, {cls: int(label in COVIDX_POSITIVE)}, patient))
    return build_benchmark("covidx", spec, samples, errors)


# ----------------------------------------------------------------------------- COVID Rural
def read_covid_rural(root: Path, spec: dict) -> Benchmark:
    image_dir, mask_dir = root / "images", root / "masks"
    if not image_dir.is_dir() or not mask_dir.is_dir():
        raise BenchmarkError(f"{root}: covid-rural needs images/ and masks/ folders (same file stems)")
    [cls] = spec["classes"]
    masks = {p.stem.removesuffix("_mask"): p for p in sorted(mask_dir.iterdir()) if p.is_file()}
    samples, errors = [], []
    for i, img in enumerate(sorted(p for p in image_dir.iterdir() if p.is_file()), start=1):
        if img.stem not in masks:
            errors.append(make_error(img, i, img.stem, f"no mask {img.stem}.png in {mask_dir}"))
            continue
        samples.append(Sample(img.stem, img, {cls: 1}, img.stem, {cls: Region(mask_file=masks.pop(img.stem))}))
    errors += [make_error(m, 0, stem, "mask without an image") for stem, m in masks.items()]
    return build_benchmark("covid-rural", spec, samples, errors)


# ----------------------------------------------------------------------------- edema severity
def read_edema(root: Path, spec: dict, labels: Path | None = None) -> Benchmark:
    if labels is None:
        candidates = [p for p in sorted(root.glob("*.csv")) if "edema_severity" in p.open().readline()]
        if not candidates:
            raise BenchmarkError(f"{root}: no CSV with an edema_severity column (pass --labels FILE)")
        labels = candidates[0]
    df = read_table(labels, ["edema_severity"])
    has_path = "path" in df.columns
    if not has_path and not {"subject_id", "study_id", "dicom_id"} <= set(df.columns):
        raise BenchmarkError(f"{labels}: needs a path column or subject_id, study_id, dicom_id")
    [cls] = spec["classes"]
    grades = [int(g) for g in spec["grades"]]
    samples, errors = [], []
    for i, row in enumerate(df.to_dict("records"), start=2):
        if has_path:
            path, id_, group = root / row["path"], row["path"], row.get("subject_id", row["path"])
        else:
            sid, study, dicom = row["subject_id"], row["study_id"].lstrip("s"), row["dicom_id"]
            sid = sid.lstrip("p")
            path = root / "files" / f"p{sid[:2]}" / f"p{sid}" / f"s{study}" / f"{dicom}.jpg"
            id_, group = dicom, sid
        try:
            grade = int(float(row["edema_severity"]))
        except ValueError:
            grade = None
        if grade not in grades:
            errors.append(make_error(labels, i, id_, f"edema_severity {row['edema_severity']!r} is not one of {grades}"))
        elif not path.is_file():
            errors.append(make_error(labels, i, id_, f"image not found: {path}"))
        else:
            samples.append(Sample(id_, path, {cls: grade}, group))
    return build_benchmark("edema-severity", spec, samples, errors)


# ----------------------------------------------------------------------------- synthetic world
def read_synthetic(root: Path, spec: dict) -> Benchmark:
    """The synthetic world's ground truth (``medklip synthetic``): the test split and, where the
    world wrote it (version 5 on), the validation split, as the publisher's split; labels, masks,
    and a 4-level grade (the number of findings present, capped at 3) for the grading task."""
    import json

    manifest = root / "manifest.jsonl"
    if not (root / "test_labels.jsonl").is_file() or not manifest.is_file():
        raise BenchmarkError(f"{root}: not a synthetic world (write one with `medklip synthetic -o {root}`)")
    images = {r["study_id"]: r["image"] for r in map(json.loads, manifest.read_text().splitlines())}
    classes = spec["classes"]
    samples, errors, official = [], [], {}
    for split in ("validation", "test"):
        labels_file = root / f"{split}_labels.jsonl"
        if not labels_file.is_file():
            continue
        for i, row in enumerate(map(json.loads, labels_file.read_text().splitlines()), start=1):
            sid = row["study_id"]
            path = root / images.get(sid, "")
            if sid not in images or not path.is_file():
                errors.append(make_error(labels_file, i, sid, "image not found"))
                continue
            labels = {c: int(row["labels"].get(c, 0)) for c in classes}
            labels["burden"] = min(3, sum(labels.values()))
            masks = root / row["masks"]
            regions = {}
            if masks.is_file():
                with np.load(masks) as f:
                    regions = {c: Region(npz=(masks, c)) for c in f.files if c in classes}
            samples.append(Sample(sid, path, labels, sid, regions))
            official[sid] = split
    return build_benchmark("synthetic", spec, samples, errors, official_split=official)
