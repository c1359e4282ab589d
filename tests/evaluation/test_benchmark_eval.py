"""`medklip evaluate` end to end on real-format benchmark folders with a small model."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from medklip.cli import main
from medklip.evaluation.scoring import GroundingCase, grounding
from tests.data.benchmark_fixtures import make_rsna, radiograph


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    return tiny_model_dir


def test_grounding_metrics_on_hand_made_maps() -> None:
    mask = np.zeros((20, 20), bool)
    mask[2:6, 2:6] = True
    mask[12:16, 12:18] = True
    perfect = grounding([GroundingCase(mask.astype(float), mask)], n_boot=0, seed=0)
    assert perfect["pointing_game"] == 1 and perfect["dice_best"] == 1 and perfect["iou_best"] == 1
    assert perfect["dice_release"] == 1 and perfect["iou_release"] == 1
    assert perfect["recall"] == 1 and perfect["precision"] == 1
    half = np.zeros((20, 20))
    half[2:6, 2:6] = 1  # finds one of the two regions
    half[0, 19] = 0.5  # a faint spot outside
    s = grounding([GroundingCase(half, mask)], n_boot=0, seed=0)
    assert s["dice_best"] == pytest.approx(2 * 16 / (16 + 40)) and s["recall"] == 0.5 and s["precision"] == 1.0
    # the release's fixed 0.008 keeps the faint spot: 17 predicted pixels
    assert s["dice_release"] == pytest.approx(2 * 16 / (17 + 40))


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
    assert g["images"] == 6 and 0 <= g["pointing_game"] <= 1 and 0 < g["dice_best"] <= 1 and 0 <= g["recall"] <= 1
    assert 0 <= g["dice_release"] <= 1 and 0 <= g["iou_release"] <= 1 and g["release_threshold"] == 0.008
    assert m["preprocess"] == "medklip"
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == len(chosen) and set(rows[0]) >= {"id", "split", "label:Pneumonia", "prob:Pneumonia"}
    assert {r["split"] for r in rows} <= {"train", "validation", "test"}
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
    errors = [json.loads(line_) for line_ in (out / "errors.jsonl").read_text().splitlines()]
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


def _release_rows(name: str) -> list[list[str]]:
    from medklip.data.benchmarks.release import release_list

    return release_list(name).values.tolist()


def test_release_split_scores_exactly_the_release_chestxray14_list(model_dir, tmp_path, capsys) -> None:
    rows = _release_rows("chestxray14")
    assert len(rows) == 25_596  # distinct images in the file (its newline count, 25,595, misses the last row)
    chosen = rows[:3] + rows[20_000:20_003]
    root = tmp_path / "cxr14"
    for k, row in enumerate(chosen):
        folder = root / f"images_00{k % 2 + 1}" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(radiograph((96, 96), k)).save(folder / row[1])
    Image.fromarray(radiograph((96, 96), 9)).save(root / "images_001" / "images" / "not_in_the_list.png")
    out = tmp_path / "run"
    assert main(["evaluate", "--dataset", "chestxray14", "--root", str(root), "--model", str(model_dir),
                 "--split", "release", "--bootstrap", "0", "-q", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    # a partial copy: the rows are fine, their images are not there; the message says so with the counts
    assert "0 label rows unusable, 25590 of the 25596 listed images not in your copy (6 found" in printed, printed
    m = json.loads((out / "metrics.json").read_text())
    assert m["images"] == 6 and m["split"] == "release"
    assert (m["label_errors"], m["listed_images"], m["listed_images_not_found"]) == (0, 25_596, 25_590)
    assert "25590 of the 25596 images of the list were not found" in (out / "report.md").read_text()
    expected = {cls: sum(int(r[3 + j]) for r in chosen) for j, cls in enumerate(m["class_counts"])}
    assert m["class_counts"] == expected  # the list's own labels
    ids = [r["id"] for r in csv.DictReader((out / "predictions.csv").open())]
    assert ids == [r[1] for r in chosen]
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == 25_596 - 6 and all("listed by the release" in e["error"] for e in errors)


def test_release_split_rsna_uses_the_lists_boxes_and_the_release_preprocessing(minilm, tmp_path) -> None:
    from medklip.data.preprocess import PreprocessConfig
    from tests.conftest import make_tiny_model
    from tests.data.benchmark_fixtures import write_dicom

    rows = _release_rows("rsna-pneumonia")
    positives = [r for r in rows if r[3] == "1"][:3]
    negatives = [r for r in rows if r[3] == "0"][:2]
    root = tmp_path / "rsna"
    for k, row in enumerate(positives + negatives):
        write_dicom(root / "stage_2_train_images" / f"{row[0]}.dcm", radiograph((1024, 1024), k))
    model = make_tiny_model(minilm)
    model.preprocess_cfg = PreprocessConfig("release-cxr14", 64)  # as an official checkpoint has
    folder = model.save_pretrained(tmp_path / "m")
    out = tmp_path / "run"
    assert main(["evaluate", "--dataset", "rsna-pneumonia", "--root", str(root), "--model", str(folder),
                 "--split", "release", "--bootstrap", "0", "-q", "-o", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["images"] == 5 and m["preprocess"] == "release-rsna"
    g = m["grounding"]["Pneumonia"]
    assert g["images"] == 3 and 0 <= g["pointing_game"] <= 1
    assert 0 < g["pointing_game_chance"] < 1
