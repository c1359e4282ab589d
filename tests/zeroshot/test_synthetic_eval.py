"""Zero-shot evaluation on a tiny synthetic world with an untrained model: the files and the
metric layout (the numbers of a trained model are checked by the demo test)."""
from __future__ import annotations

import json

from medklip.data.synthetic import SEEN_FINDINGS, WorldConfig, generate_world
from medklip.knowledge import KnowledgeBase
from medklip.zeroshot.synthetic import evaluate_synthetic
from tests.conftest import make_tiny_model


def test_evaluate_synthetic_writes_metrics_report_and_pictures(tmp_path, minilm) -> None:
    world = generate_world(tmp_path / "w", WorldConfig(train=4, validation=2, test=40, image_size=64, covid_rate=0.3))
    model = make_tiny_model(minilm)
    metrics = evaluate_synthetic(model, world, tmp_path / "out", minilm,
                                 KnowledgeBase.default().description("covid-19"), n_overlays=2)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["seen_macro_auc"] == metrics["seen_macro_auc"]
    assert set(saved["per_finding_auc"]) == set(SEEN_FINDINGS)
    covid = saved["unseen"]["covid-19"]
    assert 0 <= covid["auc_by_name"] <= 1 and 0 <= covid["auc_by_description"] <= 1
    assert 0 <= saved["pointing_game"] <= 1 and 0 <= saved["dice"] <= 1
    assert (tmp_path / "out" / "roc_curves.png").stat().st_size > 10_000
    assert len(list((tmp_path / "out" / "heatmaps").glob("*.png"))) == 2
    report = (tmp_path / "out" / "report.md").read_text()
    assert "covid-19 (description)" in report and "![ROC curves](roc_curves.png)" in report
