"""``medklip demo``: the whole method on a fresh machine, no dataset, no GPU.

Synthetic world -> report filter -> pre-training (small config) -> zero-shot on the
held-out test split (seen findings, covid-19 by name and by description, grounding).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from medklip.config_utils import load_config
from medklip.train.config import PretrainConfig, builtin_config

logger = logging.getLogger(__name__)


@dataclass
class DemoResult:
    output: Path
    metrics: dict
    seconds: dict[str, float]


def run_demo(output: str | Path = "runs/demo", quick: bool = False, overrides: tuple[str, ...] = (),
             progress: bool = True) -> DemoResult:
    from medklip.knowledge import KnowledgeBase
    from medklip.models import MedKLIP
    from medklip.text import TextEncoder
    from medklip.train.trainer import pretrain
    from medklip.zeroshot.synthetic import evaluate_synthetic

    output = Path(output)
    cfg = load_config(PretrainConfig, builtin_config("demo-quick" if quick else "demo"),
                      [f"run.output={output / 'pretrain'}", f"data.world_dir={output / 'world'}", *overrides])
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    result = pretrain(cfg, progress=progress)
    times["world + pre-training"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    model = MedKLIP.from_pretrained(result.best_model)
    encoder = TextEncoder(cfg.text.encoder, pooling=cfg.text.pooling, max_length=cfg.text.max_length,
                          cache_dir=cfg.text.cache_dir)
    covid = KnowledgeBase.default().description("covid-19")
    metrics = evaluate_synthetic(model, cfg.data.world_dir, output / "zeroshot", encoder, covid, progress=progress)
    times["zero-shot evaluation"] = time.perf_counter() - t1
    times["total"] = time.perf_counter() - t0
    (output / "timings.json").write_text(json.dumps(times, indent=1))
    return DemoResult(output, metrics, times)
