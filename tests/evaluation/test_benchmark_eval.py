"""`medklip evaluate` end to end on real-format benchmark folders with a small model."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from medklip.cli import main
from medklip.evaluation.benchmark import grounding
from tests.data.benchmark_fixtures import make_rsna, radiograph


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    return tiny_model_dir


def test_grounding_metrics_on_hand_made_maps() -> None:
    mask = np.zeros((20, 20), bool)
    mask[2:6, 2:6] = True
    mask[12:16, 12:18] = True
    perfect = grounding([mask.astype(float)], [mask], n_boot=0, seed=0)
    assert perfect["pointing_game"] == 1 and perfect["dice"] == 1 and perfect["iou"] == 1
    assert perfect["recall"] == 1 and perfect["precision"] == 1
    half = np.zeros((20, 20))
    half[2:6, 2:6] = 1  # finds one of the two regions
    half[0, 19] = 0.5  # a faint spot outside
    s = grounding([half], [mask], n_boot=0, seed=0)
    assert s["dice"] == pytest.approx(2 * 16 / (16 + 40)) and s["recall"] == 0.5 and s["precision"] == 1.0


def test_evaluate_rsna_writes_everything_and_reuses_the_split(model_dir, tmp_path, capsys) -> None:
    root = tmp_path / "rsna"
    chosen = make_rsna(root, multi=3, single=3, negative=6)
    out = tmp_path / "run"
    args = ["evaluate", "--dataset", "rsna-pneumonia", "--root", str(root), "--model", str(model_dir),
            "--split", "all", "--bootstrap", "50", "-q"]
    assert main(args + ["-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Pneumonia" in text and "pointing game" in text
    m = json.loads((out / "metrics.json").read_text())
    c = m["classification"]["Pneumonia"]
    assert m["images"] == len(chosen) and c["positives"] == 6 and 0 <= c["auc"] <= 1
    assert c["auc_ci"][0] <= c["auc_ci"][1] and 0 <= c["f1"] <= 1 and 0 <= c["accuracy"] <= 1
    g = m["grounding"]["Pneumonia"]
    assert g["images"] == 6 and 0 <= g["pointing_game"] <= 1 and 0 < g["dice"] <= 1 and 0 <= g["recall"] <= 1
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == len(chosen) and set(rows[0]) >= {"id", "split", "label:Pneumonia", "prob:Pneumonia"}
    assert {r["split"] for r in rows} <= {"train", "valid", "test"}
    report = (out / "report.md").read_text()
    assert "Table 1" in report and "Tables 3 and 4" in report and (out / "roc_curves.png").is_file()
    assert len(list((out / "heatmaps").glob("*.png"))) == 6
    metric_rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert any(r["metric"] == "auc" and r["ci_low"] for r in metric_rows)
    # the same split file gives the same numbers; the test split is a subset
    assert main(args + ["-o", str(tmp_path / "again"), "--split-file", str(out / "split.csv")]) == 0
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["classification"] == m["classification"]
    capsys.readouterr()
    assert main(args[:-5] + ["--split", "test", "-q", "--bootstrap", "0", "-o", str(tmp_path / "t")]) in (0, 1)
    assert json.loads((tmp_path / "t" / "metrics.json").read_text())["images"] == m["split_sizes"]["test"]


def test_evaluate_lists_unreadable_images_and_bad_rows(model_dir, tmp_path, capsys) -> None:
    root = tmp_path / "rsna"
    chosen = make_rsna(root, multi=1, single=2, negative=3)
    (root / "stage_2_train_images" / f"{chosen[0]}.dcm").write_bytes(b"DICM truncated")
    (root / "stage_2_train_images" / f"{chosen[1]}.dcm").unlink()
    out = tmp_path / "run"
    code = main(["evaluate", "--dataset", "rsna-pneumonia", "--root", str(root), "--model", str(model_dir),
                 "--split", "all", "--bootstrap", "0", "-q", "-o", str(out)])
    assert code == 1
    errors = [json.loads(l) for l in (out / "errors.jsonl").read_text().splitlines()]
    assert {e["kind"] for e in errors} == {"image", "label row"}
    assert any(chosen[0] in e.get("image", "") for e in errors) and any(e.get("id") == chosen[1] for e in errors)
    m = json.loads((out / "metrics.json").read_text())
    assert m["failed_images"] == 1 and m["images"] == len(chosen) - 2
    assert main(["evaluate", "--dataset", "rsna-pneumonia", "--root", str(tmp_path / "none"),
                 "--model", str(model_dir)]) == 2
    assert "dataset folder not found" in capsys.readouterr().err


def test_evaluate_unseen_covid_by_name_and_description(model_dir, tmp_path) -> None:
    cr = tmp_path / "rural"
    (cr / "images").mkdir(parents=True)
    (cr / "masks").mkdir()
    for k in range(4):
        Image.fromarray(radiograph((96, 80), k)).save(cr / "images" / f"case{k}.png")
        m = np.zeros((96, 80), np.uint8)
        m[50:90, 5 + k:30 + k] = 1
        Image.fromarray(m).save(cr / "masks" / f"case{k}.png")
    out = tmp_path / "run"
    assert main(["evaluate", "--dataset", "covid-rural", "--root", str(cr), "--model", str(model_dir),
                 "--split", "all", "--bootstrap", "0", "-q", "-o", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["grounding"]) == {"COVID-19", "COVID-19 (name)"} and m["classification"] == {}
    assert m["prompts"] == {"COVID-19": "covid-19", "COVID-19 (name)": "covid-19 [name]"}
    # a description for a class: used instead of the knowledge base's; an unknown name is an error
    args = ["evaluate", "--dataset", "covid-rural", "--root", str(cr), "--model", str(model_dir), "--split", "all",
            "--bootstrap", "0", "-q", "--no-name-prompt"]
    assert main(args + ["-o", str(tmp_path / "d"), "--describe", "COVID-19=Ground-glass opacities at both bases."]) == 0
    assert set(json.loads((tmp_path / "d" / "metrics.json").read_text())["grounding"]) == {"COVID-19"}
    assert main(args + ["-o", str(tmp_path / "e"), "--describe", "sarcoid=Hilar nodes."]) == 2


def test_evaluate_edema_grades(model_dir, tmp_path) -> None:
    root = tmp_path / "edema"
    rows = [("10000032", f"5000000{i}", f"d{i}", i % 4) for i in range(8)]
    lines = ["subject_id,study_id,dicom_id,edema_severity"]
    for k, (sid, study, dicom, grade) in enumerate(rows):
        folder = root / "files" / f"p{sid[:2]}" / f"p{sid}" / f"s{study}"
        folder.mkdir(parents=True)
        Image.fromarray(radiograph((64, 64), k)).save(folder / f"{dicom}.jpg")
        lines.append(f"{sid},{study},{dicom},{grade}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    assert main(["evaluate", "--dataset", "edema-severity", "--root", str(root), "--model", str(model_dir),
                 "--split", "all", "--bootstrap", "0", "-q", "-o", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["grading"]["Edema"]["images_per_grade"] == {"0": 2, "1": 2, "2": 2, "3": 2}
    assert m["classification"]["Edema"]["positives"] == 6
    assert "Severity grades" in (out / "report.md").read_text()
