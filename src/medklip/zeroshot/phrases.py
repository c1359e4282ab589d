"""Phrase grounding (MS-CXR): every image is run with the model's own queries plus its sample's
phrase as one added query, so that, as in zero-shot diagnosis, the added query attends beside the
75 it was trained with and never beside another image's phrase. The phrase's attention map is
scored against the phrase's boxes (:mod:`medklip.evaluation.scoring`)."""
from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from medklip.data.benchmarks import Benchmark, Sample
from medklip.evaluation.grounding import resize_mask_nearest
from medklip.evaluation.plots import save_overlay
from medklip.evaluation.report import slug
from medklip.evaluation.scoring import DESCRIPTION, EvaluationRun, GroundingCase, Prompt, score
from medklip.progress import Progress
from medklip.zeroshot.backends import TorchBackend
from medklip.zeroshot.loading import iter_batches
from medklip.zeroshot.predict import Predictor

logger = logging.getLogger(__name__)


def phrase_prompts(bench: Benchmark) -> list[Prompt]:
    """One prompt per category; its cases are the category's (image, phrase) pairs."""
    return [Prompt(cls, DESCRIPTION, "phrase", True) for cls in bench.classes]


def run_phrase_grounding(predictor: Predictor, bench: Benchmark, samples: list[Sample], out_dir: Path,
                         assignment: Mapping[str, str] | None = None, batch_size: int = 16, n_boot: int = 1000,
                         seed: int = 0, n_overlays: int = 6, progress: Progress | None = None) -> EvaluationRun:
    """Ground each sample's phrase; unreadable images are listed, not fatal."""
    if not isinstance(predictor.backend, TorchBackend):
        logger.info("phrase grounding runs each image with its own query set: using the torch backend")
    backend = TorchBackend(predictor.model)
    own = predictor.model.entity_embeddings.detach().cpu()
    prompts = phrase_prompts(bench)
    column = {p.cls: j for j, p in enumerate(prompts)}
    size = predictor.preprocess.config.image_size
    run = EvaluationRun([], prompts, np.zeros((0, len(prompts))), {j: [] for j in range(len(prompts))})
    shown = dict.fromkeys(range(len(prompts)), 0)
    cache: dict[str, torch.Tensor] = {}
    rows: list[np.ndarray] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "predictions.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "image", "split", "category", "phrase", "probability", "peak_row", "peak_col"])
        for batch in iter_batches([s.image for s in samples], predictor.preprocess, batch_size, predictor.workers,
                                  keep_display=n_overlays > 0):
            for item in batch.items:
                if item.error is not None:
                    s = samples[item.index]
                    run.failures.append({"id": s.id, "image": str(s.image), "error": item.error})
            if progress is not None:
                progress.update(len(batch.items))
            good = batch.good
            if not good:
                continue
            kept = [samples[item.index] for item in good]
            new = sorted({s.phrase for s in kept} - cache.keys())
            if new:
                cache.update(zip(new, predictor.encoder.encode(new).cpu()))
            queries = torch.stack([torch.cat([own, cache[s.phrase][None]]) for s in kept])
            probs, maps = backend(batch.stack(), queries, True)
            assert maps is not None
            for i, (item, s) in enumerate(zip(good, kept)):
                [cls] = [c for c, v in s.labels.items() if v > 0]
                j, heat = column[cls], maps[i, -1]
                row = np.full(len(prompts), np.nan)
                row[j] = probs[i, -1]
                rows.append(row)
                original = s.regions[cls].mask(item.shape)
                run.grounding[j].append(GroundingCase(heat, resize_mask_nearest(original, (size, size))))
                peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
                writer.writerow([s.id, str(s.image), (assignment or {}).get(s.id, ""), cls, s.phrase,
                                 f"{probs[i, -1]:.6f}", int(peak[0]), int(peak[1])])
                if shown[j] < n_overlays and item.display is not None:
                    shown[j] += 1
                    run.overlays.append(save_overlay(
                        item.display, heat, out_dir / "heatmaps" / f"{slug(s.id)}_{slug(cls)}.png",
                        s.phrase[:60], float(probs[i, -1]), resize_mask_nearest(original, item.display.shape)))
            run.samples += kept
            f.flush()
    run.probs = np.stack(rows) if rows else np.zeros((0, len(prompts)))
    run.metrics = score(bench, run, n_boot, seed)
    return run
