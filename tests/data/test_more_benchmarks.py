"""The added benchmark readers on real label rows: class counts recomputed independently from the
publisher's files, the protocols (views, uncertain labels, readers, radiologist subset) and bad rows."""
from __future__ import annotations

import ast
import csv
import gzip
import json
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from medklip.data.benchmarks import benchmark_specs, load_benchmark
from medklip.data.benchmarks.padchest import padchest_protocols, protocol_classes
from medklip.errors import BenchmarkError
from medklip.knowledge import KnowledgeBase
from tests.data.benchmark_fixtures import txv_data_dir
from tests.data.more_benchmark_fixtures import (
    PADCHEST_CSV,
    make_chexpert,
    make_ms_cxr,
    make_nih_expert,
    make_openi,
    make_padchest,
    make_vindr,
)


def _write_mapping(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


# ------------------------------------------------------------------------------------ CheXpert
def test_chexpert_counts_views_and_uncertain_policies(tmp_path) -> None:
    root = tmp_path / "chexpert"
    rows = make_chexpert(root)
    bench = load_benchmark("chexpert", root)
    frontal = [r for r in rows if r["Frontal/Lateral"] == "Frontal"]
    train = [s for s in bench.samples if bench.official_split[s.id] == "train"]
    laterals = len(rows) - len(frontal) + 3  # and one lateral view in each of the 3 test studies
    assert len(train) == len(frontal) and bench.excluded == {"lateral views (views: frontal)": laterals}
    for cls in bench.classes:
        positives = sum(r[cls] in ("1.0", "1") for r in frontal)
        uncertain = sum(r[cls] in ("-1.0", "-1") for r in frontal)
        assert sum(s.labels[cls] == 1 for s in train) == positives
        assert sum(s.labels[cls] == -1 for s in train) == uncertain  # ignore: left out of that class
    assert any(s.labels[c] == -1 for s in train for c in bench.classes)
    # the test split from CheXzero's Study folders: frontal image of each study
    test = [s for s in bench.samples if bench.official_split[s.id] == "test"]
    assert len(test) == 3 and all(s.image.name == "view1_frontal.jpg" for s in test)
    assert bench.groups["competition"] == ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]
    ones = load_benchmark("chexpert", root, _write_mapping(tmp_path / "m.json", {"chexpert": {"uncertain": "ones",
                                                                                             "views": "all"}}))
    assert len(ones.samples) == len(rows) + 6 and not any(v == -1 for s in ones.samples for v in s.labels.values())
    with pytest.raises(BenchmarkError, match="uncertain must be one of"):
        load_benchmark("chexpert", root, _write_mapping(tmp_path / "b.json", {"chexpert": {"uncertain": "maybe"}}))


def test_chexpert_bad_values_and_missing_images_are_listed(tmp_path) -> None:
    root = tmp_path / "chexpert"
    rows = make_chexpert(root, rows=10)
    text = (root / "train.csv").read_text().splitlines()
    text[2] = text[2].replace("CheXpert-v1.0-small/train/", "CheXpert-v1.0-small/missing/")
    fields = text[3].split(",")
    fields[-1] = "2.0"
    text[3] = ",".join(fields)
    (root / "train.csv").write_text("\n".join(text) + "\n")
    bench = load_benchmark("chexpert", root)
    errors = {e["row"]: e["error"] for e in bench.errors}
    assert "image not found" in errors[3] and "labels must be 1, 0, -1 or blank" in errors[4]
    assert len(rows) == 10


# ------------------------------------------------------------------------------------ PadChest
def test_padchest_kad_protocol_is_the_radiologist_subset_and_its_193_labels() -> None:
    """On torchxrayvision's full CSV: the radiologist-labelled images are 39,053 (KAD's n) and
    carry exactly the 193 labels of KAD's list; every unseen one has a packaged description."""
    with gzip.open(txv_data_dir() / (PADCHEST_CSV + ".gz"), "rt", newline="") as f:
        labels, images = set(), 0
        for row in csv.DictReader(f):
            if row["MethodLabel"] == "Physician":
                images += 1
                labels |= {x.strip() for x in ast.literal_eval(row["Labels"])}
    classes = protocol_classes("kad")
    assert images == 39053 and set(classes) == labels and len(classes) == 193
    seen = padchest_protocols()["seen"]
    base = KnowledgeBase.default()
    assert len(seen) == 14 and all(e in base.entity_names for e in seen.values())
    extended = KnowledgeBase.extended()
    unseen = [c for c in classes if c not in seen]
    assert len(unseen) == 179 and all(c in extended for c in unseen) and not any(c in base for c in unseen)
    assert set(protocol_classes("mavl-unseen")) <= set(classes) and len(protocol_classes("mavl-unseen")) == 60
    assert set(protocol_classes("mavl-seen")) == set(seen)


def test_padchest_reader_counts_and_protocols(tmp_path) -> None:
    root = tmp_path / "padchest"
    rows = make_padchest(root)
    doctors = [r for r in rows if r["MethodLabel"] == "Physician"]
    bench = load_benchmark("padchest", root)
    assert len(bench.samples) == len(doctors) and set(bench.official_split.values()) == {"test"}
    assert bench.excluded == {"labelled by the publisher's RNN (labelled_by: Physician)": len(rows) - len(doctors)}
    for cls in bench.classes:
        expected = sum(cls in {x.strip() for x in ast.literal_eval(r["Labels"])} for r in doctors)
        assert bench.class_counts()[cls] == expected
    assert bench.classes["pleural effusion"] == "effusion" and bench.classes["COPD signs"] == "COPD signs"
    everyone = load_benchmark("padchest", root, _write_mapping(tmp_path / "m.json",
                                                               {"padchest": {"labelled_by": "all"}}))
    assert len(everyone.samples) == len(rows) and sum(v == "train" for v in everyone.official_split.values()) == 6
    seen = load_benchmark("padchest-mavl-seen", root)
    assert len(seen.classes) == 14
    assert len(load_benchmark("padchest-mavl-unseen", root).classes) == 60


def test_padchest_bad_label_list_is_listed(tmp_path) -> None:
    root = tmp_path / "padchest"
    make_padchest(root, physician=5, rnn=0)
    path = root / (PADCHEST_CSV + ".gz")
    with gzip.open(path, "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    header = list(rows[0])
    rows[1]["Labels"] = "['pleural effusion'"
    with gzip.open(path, "wt", newline="") as f:
        w = csv.DictWriter(f, header)
        w.writeheader()
        w.writerows(rows)
    bench = load_benchmark("padchest", root)
    assert len(bench.samples) == 4 and bench.errors[0]["row"] == 3 and "Labels is not a list" in bench.errors[0]["error"]


# ------------------------------------------------------------------------------------ VinDr-CXR
def test_vindr_reader_labels_by_readers_and_box_union(tmp_path) -> None:
    root = tmp_path / "vindr"
    chosen = make_vindr(root)
    bench = load_benchmark("vindr-cxr", root)
    assert len(bench.samples) == len(chosen) and bench.official_split is None
    by_id = {s.id: s for s in bench.samples}
    for image_id, rows in chosen.items():
        readers: dict[str, set[str]] = {}
        for r in rows:
            if r["class_name"] != "No finding":
                readers.setdefault(r["class_name"], set()).add(r["rad_id"])
        sample = by_id[image_id]
        assert {c for c, v in sample.labels.items() if v} == set(readers)
        for cls, region in sample.regions.items():
            assert len(region.boxes) == sum(r["class_name"] == cls for r in rows)
    strict = load_benchmark("vindr-cxr", root, _write_mapping(tmp_path / "m.json", {"vindr-cxr": {"min_readers": 2}}))
    for s in strict.samples:
        for cls, v in s.labels.items():
            assert v == int(len({r["rad_id"] for r in chosen[s.id] if r["class_name"] == cls}) >= 2)


def test_vindr_physionet_layout_uses_the_publisher_split_and_counts_extra_labels(tmp_path) -> None:
    root = tmp_path / "vindr"
    make_vindr(root, findings=2, normal=1)
    rows = list(csv.DictReader((root / "train.csv").open()))
    (root / "train.csv").unlink()
    (root / "annotations").mkdir()
    train_rows = [{k: r[k] for k in ("image_id", "rad_id", "class_name", "x_min", "y_min", "x_max", "y_max")}
                  for r in rows]
    test_id = rows[0]["image_id"]
    with (root / "annotations" / "annotations_train.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, list(train_rows[0]))
        w.writeheader()
        w.writerows([r for r in train_rows if r["image_id"] != test_id])
    with (root / "annotations" / "annotations_test.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["image_id", "class_name", "x_min", "y_min", "x_max", "y_max"])
        w.writeheader()
        w.writerow({"image_id": test_id, "class_name": "Lung tumor", "x_min": 10, "y_min": 10, "x_max": 50, "y_max": 60})
        w.writerow({"image_id": test_id, "class_name": "Cardiomegaly", "x_min": 10, "y_min": 10, "x_max": 50,
                    "y_max": 60})
        w.writerow({"image_id": test_id, "class_name": "Nodule/Mass", "x_min": "", "y_min": "", "x_max": "",
                    "y_max": ""})
    bench = load_benchmark("vindr-cxr", root)
    assert bench.official_split[test_id] == "test" and list(bench.official_split.values()).count("test") == 1
    test = next(s for s in bench.samples if s.id == test_id)
    assert test.labels["Cardiomegaly"] == 1 and test.regions["Cardiomegaly"].boxes == [(10.0, 10.0, 40.0, 50.0)]
    assert any("Lung tumor" in k for k in bench.excluded)
    assert any("Nodule/Mass without a numeric box" in e["error"] for e in bench.errors)


# ------------------------------------------------------------------------------------ MS-CXR
def test_ms_cxr_pairs_phrases_and_scaled_boxes(tmp_path) -> None:
    root = tmp_path / "ms-cxr"
    make_ms_cxr(root)
    bench = load_benchmark("ms-cxr", root)
    assert bench.task == "phrase-ground" and len(bench.samples) == 4
    assert [e["row"] for e in bench.errors] == [7] and "unknown category 'Fibrosis'" in bench.errors[0]["error"]
    opacity = next(s for s in bench.samples if s.phrase == "Bilateral opacities")
    region = opacity.regions["Lung Opacity"]
    assert len(region.boxes) == 2 and region.frame == (2048, 2048)
    mask = region.mask((512, 512))  # the 512 x 512 copy: boxes scaled by 1/4
    assert mask[150:300, 75:175].all() and mask[150:300, 325:425].all() and mask.sum() == 2 * 100 * 150
    assert len({s.image for s in bench.samples}) == 3 and set(bench.official_split.values()) == {"test"}


# ------------------------------------------------------------------------------------ Open-I
def test_openi_labels_from_manual_mesh_codes_and_views(tmp_path) -> None:
    root = tmp_path / "openi"
    images = make_openi(root)
    bench = load_benchmark("openi", root)
    spec = benchmark_specs()["openi"]
    views = {}
    with gzip.open(root / "nlmcxr_dicom_metadata.csv.gz", "rt", newline="") as f:
        for row in csv.DictReader(f):
            views[row["imageid"]] = row["View Position"]
    expected: dict[str, set[str]] = {}
    with tarfile.open(root / "NLMCXR_reports.tgz") as tar:
        for m in tar.getmembers():
            xml = ET.fromstring(tar.extractfile(m).read())
            codes = [n.text.strip() for n in xml.iter("major")]
            if "No Indexing" in codes:
                continue
            heads = {spec["aliases"].get(c.split("/")[0].strip(), c.split("/")[0].strip()) for c in codes}
            for node in xml.iter("parentImage"):
                if views.get(node.get("id"), "") in ("PA", "AP") and node.get("id") != images[0]:
                    expected[node.get("id")] = heads & set(spec["classes"])
    assert {s.id for s in bench.samples} == set(expected)
    for s in bench.samples:
        assert {c for c, v in s.labels.items() if v} == expected[s.id]
    assert sum(bench.excluded.values()) > 0
    missing_listed = any(e["id"] == images[0] and "not found" in e["error"] for e in bench.errors)
    assert missing_listed == (views.get(images[0], "") in ("PA", "AP"))


def test_openi_reads_the_extracted_report_folder_as_the_tarball(tmp_path) -> None:
    root = tmp_path / "openi"
    make_openi(root)
    packed = load_benchmark("openi", root)
    with tarfile.open(root / "NLMCXR_reports.tgz") as tar:
        tar.extractall(root, filter="data")  # ecgen-radiology/<id>.xml
    (root / "NLMCXR_reports.tgz").unlink()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    extracted = load_benchmark("openi", root)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert [(s.id, s.labels, s.group) for s in extracted.samples] == [(s.id, s.labels, s.group) for s in packed.samples]
    assert extracted.excluded == packed.excluded


# ------------------------------------------------------------------------------------ NIH expert
def test_nih_expert_labels_and_sets(tmp_path) -> None:
    root = tmp_path / "nih"
    rows = make_nih_expert(root)
    bench = load_benchmark("chestxray14-expert", root)
    assert len(bench.samples) == len(rows) - 1 and bench.errors[0]["id"] == rows[-1]["Image Index"]
    for cls in bench.classes:
        assert bench.class_counts()[cls] == sum(r[cls] == "YES" for r in rows[:-1])
    assert set(bench.official_split.values()) <= {"test", "validation"}
    assert list(bench.official_split.values()).count("test") == sum(r["Set Id"] == "test" for r in rows[:-1])


def test_knowledge_extension_descriptions_are_complete() -> None:
    from medklip.knowledge.base import extension_descriptions

    texts = extension_descriptions()
    assert len(texts) == 181 and all(isinstance(v, list) and len(v) == 4 for v in texts.values())
    assert all(len(v[0].split()) >= 8 for v in texts.values())  # the main description says it all
    assert all(len(t.split()) >= 3 for v in texts.values() for t in v)  # each variant: what / looks / where
    assert all(len(set(v)) == 4 for v in texts.values())
    lengths = np.array([len(t) for v in texts.values() for t in v])
    assert lengths.max() < 300  # fits the zero-shot token limit of the release (64 tokens)
