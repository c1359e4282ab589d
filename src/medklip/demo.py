"""``medklip demo``: the whole method on a fresh machine, no dataset, no GPU.

Synthetic world -> report filter -> pre-training (small config) -> zero-shot on the held-out
test split through the same evaluator as every benchmark (seen findings, covid-19 by name and by
description, grounding by the release's rules).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from medklip.config_utils import load_config
from medklip.io_utils import atomic_write_text
from medklip.train.config import PretrainConfig, builtin_config
from medklip.train.trainer import pretrain
from medklip.zeroshot.benchmark import evaluate_dataset

logger = logging.getLogger(__name__)

COVID = "covid-19"


@dataclass
class DemoResult:
    output: Path
    metrics: dict
    """The evaluator's metrics.json of the synthetic test split."""
    summary: dict
    """The headline numbers (:func:`demo_summary`)."""
    seconds: dict[str, float]


def demo_summary(metrics: dict) -> dict:
    """The demo's headline numbers from the evaluator's metrics: seen macro AUC, F1 at the
    thresholds chosen on validation (and tuned on test, the paper's protocol), the seen findings'
    ECE, covid-19 (unseen) AUC by description and by name, the release's pointing game over all
    grounded findings and per finding, and Dice at the best threshold."""
    cls = metrics["classification"]
    overall = metrics.get("grounding_overall", {})
    seen = metrics.get("macro_seen", metrics.get("macro", {}))
    nan = float("nan")
    return {
        "seen_macro_f1_validation_threshold": seen.get("operating_f1", nan),
        "seen_macro_f1_test_tuned": seen.get("f1", nan),
        "seen_mean_ece": metrics.get("calibration", {}).get("seen", {}).get("ece", nan),
        "seen_macro_auc": seen.get("auc", nan),
        "per_finding_auc": {k: v["auc"] for k, v in cls.items() if k not in metrics.get("unseen_classes", [])
                            and not k.endswith("(name)")},
        "covid-19_auc_by_description": cls.get(COVID, {}).get("auc", float("nan")),
        "covid-19_auc_by_name": cls.get(f"{COVID} (name)", {}).get("auc", float("nan")),
        "pointing_game": overall.get("pointing_game", float("nan")),
        "pointing_game_chance": overall.get("pointing_game_chance", float("nan")),
        "pointing_game_per_finding": {k: v["pointing_game"] for k, v in metrics["grounding"].items()
                                      if not k.endswith("(name)")},
        "dice_best_macro": overall.get("dice_best_macro", float("nan")),
    }


def run_demo(output: str | Path = "runs/demo", quick: bool = False, overrides: tuple[str, ...] = (),
             progress: bool = True) -> DemoResult:
    output = Path(output)
    cfg = load_config(PretrainConfig, builtin_config("demo-quick" if quick else "demo"),
                      [f"run.output={output / 'pretrain'}", f"data.world_dir={output / 'world'}", *overrides])
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    result = pretrain(cfg, progress=progress)
    times["world + pre-training"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    metrics = evaluate_dataset("synthetic", cfg.data.world_dir, result.best_model, output / "zeroshot", split="test",
                               n_boot=200, n_overlays=2, progress=progress, device=cfg.run.device
                               if cfg.run.device != "auto" else None)
    times["zero-shot evaluation"] = time.perf_counter() - t1
    times["total"] = time.perf_counter() - t0
    summary = demo_summary(metrics)
    atomic_write_text(output / "summary.json", json.dumps({**summary, "seconds": times}, indent=1))
    return DemoResult(output, metrics, summary, times)
