"""`medklip demo --quick` end to end (the CI profile): world -> filter -> pre-training -> zero-shot."""
from __future__ import annotations

import json

import pytest

from medklip.cli import main


@pytest.mark.slow
def test_demo_quick_profile(tmp_path, capsys) -> None:
    assert main(["demo", "--quick", "-o", str(tmp_path / "demo"), "-q"]) == 0
    printed = capsys.readouterr().out
    z = tmp_path / "demo" / "zeroshot"
    metrics = json.loads((z / "metrics.json").read_text())
    for key in ("seen_macro_auc", "per_finding_auc", "unseen", "pointing_game", "dice"):
        assert key in metrics
    assert set(metrics["unseen"]["covid-19"]) >= {"auc_by_name", "auc_by_description"}
    for value in [metrics["seen_macro_auc"], metrics["pointing_game"], metrics["dice"],
                  *metrics["per_finding_auc"].values(), *metrics["unseen"]["covid-19"].values()]:
        assert 0.0 <= value <= 1.0
    # well above chance (the bar): a broken trainer, loss, filter or data path fails here
    # (measured 0.777 on 2 cores in 2.5 min)
    assert metrics["seen_macro_auc"] >= 0.75, metrics["per_finding_auc"]
    g = metrics["grounding"]
    assert 0.0 <= g["pointing_game"] <= g["pointing_game_ceiling"] <= 1.0
    assert 0.0 <= g["pointing_game_region"] <= 1.0
    import csv

    with (tmp_path / "demo" / "pretrain" / "train_log.csv").open() as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f) if r["loss"]]
    assert losses[-1] < 0.5 * losses[0], losses
    assert (z / "roc_curves.png").is_file() and (z / "report.md").is_file()
    assert list((z / "heatmaps").glob("*.png"))
    assert (tmp_path / "demo" / "pretrain" / "best" / "model.safetensors").is_file()
    assert "report:" in printed and str(z / "metrics.json") in printed
