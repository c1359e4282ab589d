"""Benchmark adapters on the real label formats (rows from torchxrayvision's files)."""
from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medklip.data.benchmarks import (
    BenchmarkError,
    load_benchmark,
    make_split,
    read_split,
    write_split,
)
from medklip.data.benchmarks.masks import boxes_to_mask, rle_to_mask
from tests.data.benchmark_fixtures import (
    make_chestxray14,
    make_rsna,
    make_siim,
    radiograph,
)


def test_rle_is_column_major_with_relative_gaps() -> None:
    # gap 1 then 2 pixels, gap 3 then 1 pixel, on a 4x4 image flattened column by column
    m = rle_to_mask("1 2 3 1", (4, 4))
    expected = np.zeros((4, 4), bool)
    expected[1:3, 0] = True  # flat 1, 2 -> column 0, rows 1-2
    expected[2, 1] = True  # flat 6 -> column 1, row 2
    assert (m == expected).all()
    assert not rle_to_mask(" -1", (4, 4)).any()
    with pytest.raises(Exception, match="past the end"):
        rle_to_mask("10 10", (4, 4))


def test_boxes_to_mask_clips_to_the_image() -> None:
    m = boxes_to_mask([(2, 1, 3, 2), (8, 8, 10, 10)], (10, 10))
    assert m[1:3, 2:5].all() and m.sum() == 6 + 4


def test_rsna_real_rows(tmp_path) -> None:
    chosen = make_rsna(tmp_path)
    raw = pd.read_csv(tmp_path / "stage_2_train_labels.csv")
    b = load_benchmark("rsna-pneumonia", tmp_path)
    assert len(b.samples) == len(chosen) and not b.errors
    assert b.class_counts() == {"Pneumonia": int(raw.groupby("patientId").Target.max().sum())}
    by_id = {s.id: s for s in b.samples}
    for pid, rows in raw[raw.Target == 1].groupby("patientId"):
        region = by_id[pid].regions["Pneumonia"]
        assert len(region.boxes) == len(rows) > 0  # multi-box patients keep every box
        mask = region.mask((1024, 1024))
        x, y, w, h = rows.iloc[0][["x", "y", "width", "height"]]
        assert mask[int(y + h / 2), int(x + w / 2)]
    assert b.split_fractions == (0.6, 0.2, 0.2)


def test_siim_real_rows_multi_region_and_empty(tmp_path) -> None:
    chosen = make_siim(tmp_path)
    raw = pd.read_csv(tmp_path / "train-rle.csv")
    raw.columns = [c.strip() for c in raw.columns]
    b = load_benchmark("siim-acr", tmp_path)
    assert len(b.samples) == len(chosen) and not b.errors
    positive = raw[raw.EncodedPixels.str.strip() != "-1"]
    assert b.class_counts() == {"Pneumothorax": positive.ImageId.nunique()}
    by_id = {s.id: s for s in b.samples}
    for image_id, rows in positive.groupby("ImageId"):
        region = by_id[image_id].regions["Pneumothorax"]
        assert len(region.rle) == len(rows)
        runs = sum(np.array(r.split(), int)[1::2].sum() for r in rows.EncodedPixels)
        assert 0 < region.mask((1024, 1024)).sum() <= runs  # regions of one image may overlap
    assert all("Pneumothorax" not in s.regions for s in b.samples if s.labels["Pneumothorax"] == 0)


def test_chestxray14_real_rows(tmp_path) -> None:
    chosen = make_chestxray14(tmp_path)
    raw = pd.read_csv(tmp_path / "Data_Entry_2017_v2020.csv")
    b = load_benchmark("chestxray14", tmp_path)
    assert len(b.samples) == len(chosen) and not b.errors
    expected = {c: 0 for c in b.classes}
    for labels in raw["Finding Labels"]:
        for t in labels.split("|"):
            if t != "No Finding":
                expected[t] += 1
    assert b.class_counts() == expected and sum(expected.values()) > len(chosen) // 2
    assert len(b.classes) == 14 and b.classes["Fibrosis"] == "tail_abnorm_obs"
    assert b.classes["Pleural_Thickening"] == "thicken" and b.classes["Infiltration"] == "infiltrate"
    boxes = pd.read_csv(tmp_path / "BBox_List_2017.csv")
    n_boxes = sum(len(r.boxes) for s in b.samples for r in s.regions.values())
    assert n_boxes == len(boxes) and boxes["Image Index"].duplicated().any()
    # patients stay together in the split
    split = make_split(b.samples, b.split_fractions, seed=0)
    by_patient: dict[str, set] = {}
    for s in b.samples:
        by_patient.setdefault(s.group, set()).add(split[s.id])
    assert all(len(v) == 1 for v in by_patient.values())


def test_split_is_seeded_sized_and_round_trips(tmp_path) -> None:
    make_rsna(tmp_path / "r", multi=6, single=10, negative=34)
    b = load_benchmark("rsna-pneumonia", tmp_path / "r")
    a = make_split(b.samples, b.split_fractions, seed=3)
    assert a == make_split(b.samples, b.split_fractions, seed=3) != make_split(b.samples, b.split_fractions, seed=4)
    counts = {s: list(a.values()).count(s) for s in ("train", "validation", "test")}
    assert counts == {"train": 30, "validation": 10, "test": 10}
    path = write_split(a, tmp_path / "split.csv")
    assert read_split(path, b.samples) == a
    with path.open("a") as f:
        f.write("not-in-dataset,test\n")
    with pytest.raises(BenchmarkError, match="not in this dataset"):
        read_split(path, b.samples)


def test_bad_rows_are_listed_not_dropped(tmp_path) -> None:
    chosen = make_rsna(tmp_path, multi=1, single=1, negative=2)
    (tmp_path / "stage_2_train_images" / f"{chosen[0]}.dcm").unlink()
    with (tmp_path / "stage_2_train_labels.csv").open("a") as f:
        f.write(f"{chosen[1]},,,,,7\n")
    b = load_benchmark("rsna-pneumonia", tmp_path)
    reasons = [e["error"] for e in b.errors]
    assert any("not found" in r for r in reasons) and any("Target must be 0 or 1" in r for r in reasons)
    assert all(e["row"] > 1 and e["source"].endswith("stage_2_train_labels.csv") for e in b.errors)
    with pytest.raises(BenchmarkError, match="no stage_2_train_labels.csv"):
        load_benchmark("rsna-pneumonia", tmp_path / "stage_2_train_images")
    with pytest.raises(BenchmarkError, match="unknown dataset"):
        load_benchmark("mnist", tmp_path)


def test_covidx_covid_rural_and_edema_layouts(tmp_path) -> None:
    cx = tmp_path / "covidx"
    for split, rows in {"train": [("p1", "a.png", "positive"), ("p1", "b.png", "negative"), ("p2", "c.jpg", "negative")],
                        "test": [("p3", "d.png", "positive"), ("p4", "e.png", "maybe")]}.items():
        (cx / split).mkdir(parents=True)
        (cx / f"{split}.txt").write_text("".join(f"{p} {f} {label} sirm\n" for p, f, label in rows))
        for _p, f, _l in rows:
            Image.fromarray(radiograph((64, 64), 0)).save(cx / split / f)
    b = load_benchmark("covidx", cx)
    assert b.class_counts() == {"COVID-19": 2} and len(b.samples) == 4
    assert [e["row"] for e in b.errors] == [2] and "unknown label" in b.errors[0]["error"]
    assert b.classes == {"COVID-19": "covid-19"} and b.split_fractions == (0.7, 0.2, 0.1)

    cr = tmp_path / "rural"
    (cr / "images").mkdir(parents=True)
    (cr / "masks").mkdir()
    for name in ("x1", "x2", "x3"):
        Image.fromarray(radiograph((80, 60), 1)).save(cr / "images" / f"{name}.png")
    m = np.zeros((80, 60), np.uint8)
    m[10:30, 5:20] = 255
    Image.fromarray(m).save(cr / "masks" / "x1.png")
    Image.fromarray(m).save(cr / "masks" / "x2_mask.png")
    b = load_benchmark("covid-rural", cr)
    assert [s.id for s in b.samples] == ["x1", "x2"] and b.errors[0]["id"] == "x3"
    assert b.samples[1].regions["COVID-19"].mask((80, 60)).sum() == 20 * 15

    ed = tmp_path / "edema"
    rows = [("10000032", "50414267", "d1", 0), ("10000032", "53189527", "d2", 3), ("10000898", "50771383", "d3", 2),
            ("10000898", "50771384", "d4", 9)]
    ed.mkdir()
    with (ed / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["subject_id", "study_id", "dicom_id", "edema_severity"])
        for r in rows:
            w.writerow(r)
            folder = ed / "files" / f"p{r[0][:2]}" / f"p{r[0]}" / f"s{r[1]}"
            folder.mkdir(parents=True)
            Image.fromarray(radiograph((64, 64), 2)).save(folder / f"{r[2]}.jpg")
    b = load_benchmark("edema-severity", ed)
    assert {s.id: s.labels["Edema"] for s in b.samples} == {"d1": 0, "d2": 3, "d3": 2}
    assert b.task == "grade" and "not one of" in b.errors[0]["error"]
