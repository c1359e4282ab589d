"""PadChest (Bustos et al. 2020) as BIMCV ships it: the labels CSV
(``PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv``, plain or .gz) and the 16-bit PNGs in
numbered folders (``ROOT/<ImageDir>/<ImageID>``, or anywhere under ROOT).

The ``Labels`` column is a Python list literal; labels are taken as written (stripped). The
protocol (``data/padchest.yaml``) chooses the classes: ``kad`` (the 193 labels of the 39,053
radiologist-labelled images), ``mavl-seen`` / ``mavl-unseen`` (MAVL's lists). Which images: the
radiologist-labelled ones by default (``labelled_by: Physician``; ``all`` adds the 121,808 labelled
by the publisher's RNN from the reports), which are the official ``test`` split; the others are
``train``. Every projection is kept (``views: all``) as KAD counts them; ``views: frontal`` keeps
PA / AP / AP_horizontal.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from medklip.data.benchmarks.base import Benchmark, BenchmarkError, Sample, index_files, make_error
from medklip.data.benchmarks.tables import build_benchmark, find_file, read_table

LABEL_FILE = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"
FRONTAL = {"PA", "AP", "AP_HORIZONTAL"}
RADIOLOGIST = "Physician"


@lru_cache(maxsize=1)
def padchest_protocols() -> dict:
    """``{"seen": {label: entity}, "protocols": {name: [labels]}}`` (``data/padchest.yaml``)."""
    text = resources.files("medklip.data.benchmarks").joinpath("data/padchest.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def protocol_classes(protocol: str) -> dict[str, str]:
    """PadChest label -> entity for ``protocol``: a seen label's MedKLIP entity, else the label
    itself (an entity of the knowledge-base extension)."""
    data = padchest_protocols()
    if protocol not in data["protocols"]:
        raise BenchmarkError(f"unknown PadChest protocol {protocol!r}; use one of {', '.join(data['protocols'])}")
    return {label: data["seen"].get(label, label) for label in data["protocols"][protocol]}


def parse_labels(text: str) -> list[str]:
    """``"['pleural effusion', 'cardiomegaly']"`` -> the labels, stripped (empty ones dropped)."""
    value = ast.literal_eval(text.strip() or "[]")
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError("not a list of strings")
    return [v.strip() for v in value if v.strip()]


def read_padchest(root: Path, spec: dict) -> Benchmark:
    classes = protocol_classes(str(spec.get("protocol", "kad")))
    labelled_by = str(spec.get("labelled_by", RADIOLOGIST))
    frontal_only = str(spec.get("views", "all")) == "frontal"
    labels_csv = find_file(root, [LABEL_FILE], LABEL_FILE, "padchest")
    df = read_table(labels_csv, ["ImageID", "ImageDir", "PatientID", "Projection", "MethodLabel", "Labels"])
    index: dict[str, Path] | None = None
    samples: list[Sample] = []
    errors: list[dict] = []
    official: dict[str, str] = {}
    excluded = {"labelled by the publisher's RNN (labelled_by: Physician)": 0, "not frontal (views: frontal)": 0}
    for i, row in enumerate(df.to_dict("records"), start=2):
        image_id = row["ImageID"].strip()
        method = row["MethodLabel"].strip()
        if labelled_by != "all" and method != labelled_by:
            excluded["labelled by the publisher's RNN (labelled_by: Physician)"] += 1
            continue
        if frontal_only and row["Projection"].strip().upper() not in FRONTAL:
            excluded["not frontal (views: frontal)"] += 1
            continue
        try:
            found = set(parse_labels(row["Labels"]))
        except (ValueError, SyntaxError) as exc:
            errors.append(make_error(labels_csv, i, image_id, f"Labels is not a list of names ({exc}): "
                                                               f"{row['Labels'][:60]!r}"))
            continue
        path = root / row["ImageDir"].strip() / image_id
        if not path.is_file():
            index = index if index is not None else index_files(root, {".png"})
            path = index.get(image_id, path)
        if not path.is_file():
            errors.append(make_error(labels_csv, i, image_id, f"image not found ({row['ImageDir']}/{image_id} "
                                                               "or anywhere under the root)"))
            continue
        if image_id in official:
            errors.append(make_error(labels_csv, i, image_id, "listed twice; the first row is used"))
            continue
        samples.append(Sample(image_id, path, {c: int(c in found) for c in classes}, row["PatientID"].strip()))
        official[image_id] = "test" if method == RADIOLOGIST else "train"
    return build_benchmark(spec.get("name", "padchest"), spec, samples, errors, classes=classes,
                           official_split=official, excluded={k: v for k, v in excluded.items() if v})
