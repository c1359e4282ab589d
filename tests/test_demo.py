"""`medklip demo --quick` end to end (the CI profile): world -> filter -> pre-training -> zero-shot
through the benchmark evaluator."""
from __future__ import annotations

import csv
import json

import pytest

from medklip.cli import main


@pytest.mark.slow
def test_demo_quick_profile(tmp_path, capsys) -> None:
    assert main(["demo", "--quick", "-o", str(tmp_path / "demo"), "-q"]) == 0
    printed = capsys.readouterr().out
    z = tmp_path / "demo" / "zeroshot"
    metrics = json.loads((z / "metrics.json").read_text())
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert metrics["dataset"] == "synthetic" and metrics["unseen_classes"] == ["covid-19"]
    assert set(metrics["classification"]) >= {"effusion", "covid-19", "covid-19 (name)"}
    for value in [summary["seen_macro_auc"], summary["pointing_game"], summary["dice_best_macro"],
                  summary["covid-19_auc_by_description"], summary["covid-19_auc_by_name"],
                  *summary["per_finding_auc"].values()]:
        assert 0.0 <= value <= 1.0
    assert "covid-19" not in summary["per_finding_auc"] and len(summary["per_finding_auc"]) == 15
    # well above chance (the bar): a broken trainer, loss, filter or data path fails here
    assert summary["seen_macro_auc"] >= 0.75, summary["per_finding_auc"]
    # grounding by the release's rule, against a heatmap peaking on a random patch: 2.3x here
    # (seed 0; seeds 1 and 2 of the quick profile give 1.9x and 1.3x, README), so 1.5x is the bar
    # that a float difference between machines does not cross but a model that stopped grounding does
    assert summary["pointing_game"] >= 1.5 * summary["pointing_game_chance"], summary
    with (tmp_path / "demo" / "pretrain" / "train_log.csv").open() as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f) if r["loss"]]
    assert losses[-1] < 0.5 * losses[0], losses
    assert (z / "roc_curves.png").is_file() and (z / "report.md").is_file() and (z / "predictions.csv").is_file()
    assert list((z / "heatmaps").glob("*.png"))
    best = tmp_path / "demo" / "pretrain" / "best"
    assert (best / "model.safetensors").is_file()
    card = (best / "README.md").read_text()
    assert "synthetic" in card and "not for clinical decisions" in card
    assert "report:" in printed and str(z / "metrics.json") in printed
