"""MS-CXR (Boecking et al. 2022): phrase grounding on MIMIC-CXR images, as PhysioNet ships it:
``MS_CXR_Local_Alignment_v1.x.x.csv`` with ``dicom_id, category_name, label_text, path, x, y, w, h,
image_width, image_height`` (one row per box), images at ``ROOT/<path>`` (a MIMIC-CXR-JPG folder).

Each (image, phrase) pair is one sample: the phrase is the query (an added description, which is
what MedKLIP's queries are) and the union of its boxes the ground truth, in the pixel frame of
``image_width`` x ``image_height`` (scaled when the image file is a resized copy). A ``split``
column, when present, is the publisher's split; otherwise every pair is ``test``.
"""
from __future__ import annotations

import re
from pathlib import Path

from medklip.data.benchmarks.base import Benchmark, BenchmarkError, Region, Sample, make_error
from medklip.data.benchmarks.tables import build_benchmark, read_table
from medklip.splits import normalize_split

COLUMNS = ["dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width", "image_height"]
SUBJECT = re.compile(r"p\d{6,}")


def find_ms_cxr_table(root: Path) -> Path:
    found = sorted(root.glob("MS_CXR_Local_Alignment_v*.csv")) + sorted(root.glob("MS_CXR_Local_Alignment_v*.csv.gz"))
    if not found:
        raise BenchmarkError(f"{root}: no MS_CXR_Local_Alignment_v*.csv; see `medklip evaluate --list`")
    return found[-1]  # the newest version


def read_ms_cxr(root: Path, spec: dict) -> Benchmark:
    table = find_ms_cxr_table(root)
    df = read_table(table, COLUMNS)
    classes = dict(spec["classes"])
    by_lower = {c.lower(): c for c in classes}
    pairs: dict[tuple[str, str], Sample] = {}
    official: dict[str, str] = {}
    errors: list[dict] = []
    for i, row in enumerate(df.to_dict("records"), start=2):
        dicom_id, phrase = row["dicom_id"].strip(), " ".join(row["label_text"].split())
        cls = by_lower.get(row["category_name"].strip().lower())
        if cls is None:
            errors.append(make_error(table, i, dicom_id, f"unknown category {row['category_name']!r} "
                                                         f"(known: {', '.join(classes)})"))
            continue
        if not phrase:
            errors.append(make_error(table, i, dicom_id, "empty label_text (the phrase to ground)"))
            continue
        try:
            box = tuple(float(row[k]) for k in ("x", "y", "w", "h"))
            frame = (int(float(row["image_height"])), int(float(row["image_width"])))
        except ValueError:
            errors.append(make_error(table, i, dicom_id, "x, y, w, h, image_width and image_height must be numbers"))
            continue
        if box[2] <= 0 or box[3] <= 0 or min(frame) <= 0:
            errors.append(make_error(table, i, dicom_id, f"empty box or frame: {box}, {frame}"))
            continue
        image = root / row["path"].strip().lstrip("/")
        if not image.is_file():
            errors.append(make_error(table, i, dicom_id, f"image not found: {image}"))
            continue
        key = (dicom_id, phrase)
        sample = pairs.get(key)
        if sample is None:
            subject = SUBJECT.search(row["path"])
            sample = Sample(f"{dicom_id}#{len(pairs)}", image, {c: int(c == cls) for c in classes},
                            subject.group(0) if subject else dicom_id, {cls: Region(frame=frame)}, phrase)
            pairs[key] = sample
            split = normalize_split(row.get("split", "") or "test") or "test"
            official[sample.id] = split
        sample.regions[cls].boxes.append(box)  # type: ignore[arg-type]
    return build_benchmark(spec.get("name", "ms-cxr"), spec, list(pairs.values()), errors, official_split=official)
