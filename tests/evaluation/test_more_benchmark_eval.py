"""`medklip evaluate` end to end on each added benchmark (published layouts, real rows where they
ship offline) with a small model: every output file, the protocol's summaries, listed bad rows."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from medklip.cli import main
from medklip.data.preprocess import Preprocess, PreprocessConfig
from tests.data.more_benchmark_fixtures import (
    make_chexpert,
    make_ms_cxr,
    make_nih_expert,
    make_openi,
    make_padchest,
    make_vindr,
)

OUTPUTS = ("metrics.json", "metrics.csv", "report.md", "predictions.csv", "errors.jsonl", "split.csv")


def _evaluate(dataset, root, model, out, split="test", extra=()):
    code = main(["evaluate", "--dataset", dataset, "--root", str(root), "--model", str(model), "--split", split,
                 "--bootstrap", "20", "-q", "-o", str(out), *extra])
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    return code, json.loads((out / "metrics.json").read_text())


def test_chexpert_end_to_end_reports_the_competition_macro(tiny_model_dir, tmp_path) -> None:
    root = tmp_path / "chexpert"
    make_chexpert(root)
    code, m = _evaluate("chexpert", root, tiny_model_dir, tmp_path / "run", split="train")
    assert code == 0 and m["split_source"] == "publisher" and m["left_out_by_protocol"]
    assert m["macro_competition"]["classes"] == 5 and 0 <= m["macro_competition"]["auc"] <= 1
    images = m["images"]
    assert any(v["n"] < images for v in m["classification"].values())  # uncertain labels left out per class
    split = {r["id"]: r["split"] for r in csv.DictReader((tmp_path / "run" / "split.csv").open())}
    assert set(split.values()) == {"train", "test"}
    assert "competition classes" in (tmp_path / "run" / "report.md").read_text()


def test_padchest_end_to_end_scores_unseen_findings_by_description_and_name(tiny_model_dir, tmp_path) -> None:
    root = tmp_path / "padchest"
    make_padchest(root)
    code, m = _evaluate("padchest-mavl-unseen", root, tiny_model_dir, tmp_path / "run")
    assert m["images"] == 30 and len(m["unseen_classes"]) == 60
    assert "macro_unseen_name" in m and "macro" in m
    assert "COPD signs" in m["classification"] and "COPD signs (name)" in m["classification"]
    code, m = _evaluate("padchest", root, tiny_model_dir, tmp_path / "kad")
    assert len(m["unseen_classes"]) == 179 and {"macro_seen", "macro_unseen", "macro_unseen_name"} <= set(m)
    report = (tmp_path / "kad" / "report.md").read_text()
    assert "unseen classes (description)" in report and "unseen classes (name only)" in report
    header = next(csv.reader((tmp_path / "kad" / "predictions.csv").open()))
    assert "prob:hiatal hernia" in header and "prob:hiatal hernia (name)" in header


def test_vindr_end_to_end_grounds_the_readers_boxes(tiny_model_dir, tmp_path) -> None:
    root = tmp_path / "vindr"
    make_vindr(root)
    code, m = _evaluate("vindr-cxr", root, tiny_model_dir, tmp_path / "run", split="all")
    assert code == 0 and m["grounding"] and m["grounding_overall"]["instances"] >= 10
    g = next(iter(m["grounding"].values()))
    assert {"pointing_game", "iou_release", "dice_release", "recall", "precision"} <= set(g)


def test_ms_cxr_end_to_end_phrase_grounding(tiny_model_dir, tmp_path) -> None:
    root = tmp_path / "ms-cxr"
    make_ms_cxr(root)
    code, m = _evaluate("ms-cxr", root, tiny_model_dir, tmp_path / "run")
    assert code == 0 and m["task"] == "phrase-ground" and not m["classification"]
    overall = m["grounding_overall"]
    assert overall["instances"] == 4 and 0 <= overall["miou"] <= 1 and overall["cnr"] >= 0
    assert overall["miou_thresholds"] == [0.1, 0.2, 0.3, 0.4, 0.5]
    rows = list(csv.DictReader((tmp_path / "run" / "predictions.csv").open()))
    assert len(rows) == 4 and {r["phrase"] for r in rows} >= {"The heart is enlarged", "Bilateral opacities"}
    errors = [json.loads(line) for line in (tmp_path / "run" / "errors.jsonl").read_text().splitlines()]
    assert [e["row"] for e in errors] == [7]
    assert "Phrase grounding" in (tmp_path / "run" / "report.md").read_text()


def test_phrase_grounding_uses_each_images_own_phrase(tiny_model_dir, tmp_path) -> None:
    """An image's phrase map does not depend on the other images of its batch."""
    root = tmp_path / "ms-cxr"
    make_ms_cxr(root)
    one = _evaluate("ms-cxr", root, tiny_model_dir, tmp_path / "b1", extra=["--batch-size", "1"])[1]
    four = _evaluate("ms-cxr", root, tiny_model_dir, tmp_path / "b4", extra=["--batch-size", "4"])[1]
    for k, v in one["grounding"].items():
        assert four["grounding"][k]["miou"] == pytest.approx(v["miou"], abs=0.01)  # maps equal to ~1e-6; thresholds
    p1 = {r["id"]: float(r["probability"]) for r in csv.DictReader((tmp_path / "b1" / "predictions.csv").open())}
    p4 = {r["id"]: float(r["probability"]) for r in csv.DictReader((tmp_path / "b4" / "predictions.csv").open())}
    assert p1.keys() == p4.keys() and all(abs(p1[k] - p4[k]) < 1e-5 for k in p1)


def test_openi_and_nih_expert_end_to_end(tiny_model_dir, tmp_path) -> None:
    root = tmp_path / "openi"
    make_openi(root)
    code, m = _evaluate("openi", root, tiny_model_dir, tmp_path / "openi-run", split="all")
    assert m["images"] > 5 and "normal" in m["classification"]
    nih = tmp_path / "nih"
    rows = make_nih_expert(nih)
    code, m = _evaluate("chestxray14-expert", nih, tiny_model_dir, tmp_path / "nih-run", split="all")
    assert m["images"] == len(rows) - 1 and m["label_errors"] == 1
    errors = (tmp_path / "nih-run" / "errors.jsonl").read_text()
    assert rows[-1]["Image Index"] in errors


def test_release_padchest_preprocessing_is_kad_and_mavls_reader(tmp_path) -> None:
    """16-bit PNG -> img / img.max() * 255 -> uint8 -> RGB -> Resize bicubic -> normalise."""
    import torchvision.transforms as T

    rng = np.random.default_rng(0)
    pixels = (rng.random((90, 70)) * 3000 + 500).astype(np.uint16)
    path = tmp_path / "x.png"
    Image.fromarray(pixels).save(path)
    ours = Preprocess(PreprocessConfig(profile="release-padchest"))(path)
    arr = np.array(Image.open(path))
    img = Image.fromarray((arr / arr.max() * 255).astype("uint8")).convert("RGB")
    reference = T.Compose([T.Resize([224, 224], interpolation=T.InterpolationMode.BICUBIC), T.ToTensor(),
                           T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])(img)
    assert float((ours - reference).abs().max()) < 1e-6


def test_evaluate_list_documents_every_benchmark(capsys) -> None:
    assert main(["evaluate", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("chexpert", "padchest", "padchest-mavl-seen", "padchest-mavl-unseen", "vindr-cxr", "ms-cxr",
                 "openi", "chestxray14-expert"):
        block = out.split(f"\n{name}: ")[1].split("\n\n")[0]
        assert "get it:" in block and "layout:" in block and "labels:" in block and "splits:" in block, name
    assert "(193 in all)" in out
