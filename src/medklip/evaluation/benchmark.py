"""Zero-shot evaluation of a model on a benchmark split: per-image predictions, the paper's
classification metrics (AUC, F1-maximising threshold, ACC there, macro averages, bootstrap
CIs) and grounding metrics (pointing game, detection recall / precision at IoU 0.1, IoU and
Dice at the best threshold)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from medklip.data.benchmarks import Benchmark, Sample
from medklip.data.benchmarks.masks import resize_mask
from medklip.data.image_io import ImageReadError, read_image, to_pil
from medklip.errors import MedKLIPError
from medklip.evaluation.metrics import (
    DetectionCounts,
    best_f1,
    best_threshold_segmentation,
    bootstrap_ci,
    detection_counts,
    macro,
    normalize_heatmap,
    pointing_game,
    roc_auc,
)
from medklip.zeroshot.visualize import upsample

logger = logging.getLogger(__name__)

DESCRIPTION, NAME = "description", "name"


@dataclass
class Prompt:
    """One query per dataset class: the entity's knowledge-base description (or the user's),
    or, for an entity the model was not trained on, the bare name as the paper's "direct" prompt."""

    cls: str
    kind: str  # description | name
    key: str  # the name the Predictor knows the query by

    @property
    def label(self) -> str:
        return self.cls if self.kind == DESCRIPTION else f"{self.cls} (name)"


@dataclass
class EvaluationRun:
    """Everything computed for one split; ``metrics`` is what metrics.json holds."""

    samples: list[Sample]
    prompts: list[Prompt]
    probs: np.ndarray  # [N, P]
    failures: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)
    overlays: list[tuple[Sample, Prompt, np.ndarray, np.ndarray, float, np.ndarray]] = field(default_factory=list)


def build_prompts(bench: Benchmark, model_entities: Sequence[str], by_name: bool = True) -> tuple[list[Prompt], dict]:
    """Prompts for each class, and the descriptions to add for the name-only ones."""
    prompts, describe = [], {}
    for cls, entity in bench.classes.items():
        prompts.append(Prompt(cls, DESCRIPTION, entity))
        if by_name and entity not in model_entities:
            key = f"{entity} [name]"
            describe[key] = entity.replace("_", " ")
            prompts.append(Prompt(cls, NAME, key))
    return prompts, describe


def run_benchmark(predictor, bench: Benchmark, samples: list[Sample], describe: Mapping[str, str] | None = None,
                  by_name: bool = True, batch_size: int = 16, n_boot: int = 1000, seed: int = 0,
                  n_overlays: int = 6, progress: bool = False) -> EvaluationRun:
    """Predict every sample (unreadable images are listed, not fatal) and score them."""
    prompts, name_texts = build_prompts(bench, predictor.model.entity_names, by_name)
    unknown = [k for k in describe or {} if k not in bench.classes and k not in bench.classes.values()]
    if unknown:
        raise MedKLIPError(f"--describe {unknown}: not a class or entity of {bench.name} "
                           f"(classes: {', '.join(bench.classes)})")
    texts = {**name_texts, **{bench.classes.get(k, k): t for k, t in (describe or {}).items()}}
    findings = [p.key for p in prompts if p.key not in texts]
    _names, queries, rows = predictor.queries(findings, texts)
    order = findings + [k for k in texts if k not in findings]
    column = [rows[order.index(p.key)] for p in prompts]
    queries = queries.to(predictor.device)
    size = predictor.model.config.image_size
    grounded = [j for j, p in enumerate(prompts) if any(p.cls in s.regions for s in samples)]
    kept, probs, failures, overlays = [], [], [], []
    shown = {j: 0 for j in grounded}
    ground: dict[int, tuple[list, list]] = {j: ([], []) for j in grounded}
    starts = range(0, len(samples), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"evaluate {bench.name}", unit="batch")
    with torch.no_grad():
        for start in starts:
            batch, tensors, pixels = [], [], []
            for s in samples[start:start + batch_size]:
                try:
                    px = read_image(s.image)
                except ImageReadError as exc:
                    failures.append({"id": s.id, "image": str(s.image), "error": str(exc)})
                    continue
                batch.append(s)
                pixels.append(px)
                tensors.append(predictor.transform(to_pil(px)))
            if not batch:
                continue
            out = predictor.model(torch.stack(tensors).to(predictor.device), queries, need_attentions=bool(grounded))
            p = out.probs[:, column].float().cpu().numpy()
            probs.append(p)
            kept += batch
            for i, s in enumerate(batch):
                for j in grounded:
                    region = s.regions.get(prompts[j].cls)
                    if region is None or s.labels.get(prompts[j].cls, 0) <= 0:
                        continue
                    mask = region.mask(pixels[i].shape)
                    heat = out.heatmaps[i, column[j]].float().cpu().numpy()
                    ground[j][0].append(upsample(heat, (size, size)))
                    ground[j][1].append(resize_mask(mask, (size, size)))
                    if shown[j] < n_overlays:
                        shown[j] += 1
                        overlays.append((s, prompts[j], pixels[i], heat, float(p[i, j]), mask))
            del out
    for f in failures:
        logger.warning("%s", f["error"])
    run = EvaluationRun(kept, prompts, np.concatenate(probs) if probs else np.zeros((0, len(prompts))), failures,
                        overlays=overlays)
    run.metrics = score(bench, run, ground, n_boot, seed)
    return run


def _ci(metric, *arrays, n_boot: int, seed: int) -> list[float]:
    return list(bootstrap_ci(metric, *arrays, n_boot=n_boot, seed=seed)) if n_boot else [float("nan")] * 2


def _f1_of(y, s) -> float:
    return best_f1(y, s).f1


def _acc_of(y, s) -> float:
    return best_f1(y, s).accuracy


def classification(y: np.ndarray, p: np.ndarray, n_boot: int, seed: int) -> dict:
    """AUC, F1 at the F1-maximising threshold and ACC there, with bootstrap 95% CIs."""
    if len(np.unique(y)) < 2:
        return {"auc": float("nan"), "f1": float("nan"), "accuracy": float("nan"), "threshold": float("nan"),
                "positives": int(y.sum()), "n": int(len(y)), "note": "one label value only: not defined"}
    s = best_f1(y, p)
    return {"auc": s.auc, "f1": s.f1, "accuracy": s.accuracy, "threshold": s.threshold,
            "positives": int(y.sum()), "n": int(len(y)),
            "auc_ci": _ci(roc_auc, y, p, n_boot=n_boot, seed=seed),
            "f1_ci": _ci(_f1_of, y, p, n_boot=n_boot, seed=seed),
            "accuracy_ci": _ci(_acc_of, y, p, n_boot=n_boot, seed=seed)}


def grounding(heatmaps: list[np.ndarray], masks: list[np.ndarray], n_boot: int, seed: int) -> dict:
    """Pointing game; IoU and Dice at the threshold (0.01 steps) that maximises mean Dice;
    detection recall / precision of the regions at that threshold (IoU 0.1)."""
    hits = np.array([pointing_game(h, m) for h, m in zip(heatmaps, masks)], float)
    seg = best_threshold_segmentation(heatmaps, masks)
    counts = DetectionCounts(0, 0, 0, 0)
    for h, m in zip(heatmaps, masks):
        counts = counts + detection_counts(normalize_heatmap(h) >= seg.threshold, m)
    return {"pointing_game": float(hits.mean()), "pointing_game_ci": _ci(np.mean, hits, n_boot=n_boot, seed=seed),
            "recall": counts.recall, "precision": counts.precision, "iou": seg.iou, "dice": seg.dice,
            "threshold": seg.threshold, "images": len(masks)}


def score(bench: Benchmark, run: EvaluationRun, ground: dict[int, tuple[list, list]], n_boot: int, seed: int) -> dict:
    """The metrics dictionary (metrics.json) of one run."""
    from medklip.evaluation.metrics import roc_curve

    metrics: dict = {"dataset": bench.name, "task": bench.task, "images": len(run.samples),
                     "failed_images": len(run.failures), "classification": {}, "grounding": {}}
    for j, prompt in enumerate(run.prompts):
        values = np.array([s.labels.get(prompt.cls, 0) for s in run.samples])
        p = run.probs[:, j]
        if bench.task == "grade":
            metrics.setdefault("grading", {})[prompt.label] = {
                "mean_probability_per_grade": {str(g): float(p[values == g].mean()) if (values == g).any()
                                               else float("nan") for g in bench.grades},
                "images_per_grade": {str(g): int((values == g).sum()) for g in bench.grades}}
        y = (values > 0).astype(int)
        if bench.task != "ground" and len(run.samples):
            metrics["classification"][prompt.label] = classification(y, p, n_boot, seed)
            if len(np.unique(y)) == 2:
                fpr, tpr, _ = roc_curve(y, p)
                run.curves[prompt.label] = (fpr, tpr, metrics["classification"][prompt.label]["auc"])
        if j in ground and ground[j][0]:
            metrics["grounding"][prompt.label] = grounding(*ground[j], n_boot, seed)
    described = {k: v for k, v in metrics["classification"].items() if not k.endswith("(name)")}
    if described:
        metrics["macro"] = {m: macro(v[m] for v in described.values()) for m in ("auc", "f1", "accuracy")}
    return metrics


def evaluate_dataset(dataset: str, root: str | Path, model, out_dir: str | Path, *, split: str = "test",
                     split_file: str | Path | None = None, seed: int = 0, text_encoder: str | None = None,
                     device: str | None = None, describe: Mapping[str, str] | None = None, by_name: bool = True,
                     batch_size: int = 16, n_boot: int = 1000, mapping: str | Path | None = None,
                     labels: str | Path | None = None, n_overlays: int = 6, progress: bool = False) -> dict:
    """Read ``dataset`` at ``root``, split it (the paper's fractions, seeded, by patient) or reuse
    ``split_file``, score ``model`` zero-shot on ``split`` and write the run into ``out_dir``:
    metrics.json, metrics.csv, report.md, predictions.csv, errors.jsonl, split.csv, plots."""
    from medklip.data.benchmarks import (
        load_benchmark,
        make_split,
        read_split,
        write_split,
    )
    from medklip.evaluation.report import write_run
    from medklip.zeroshot.predict import Predictor

    out_dir = Path(out_dir)
    bench = load_benchmark(dataset, root, mapping, labels)
    if split_file:
        assignment = read_split(split_file, bench.samples)
        split_path = Path(split_file)
    else:
        assignment = make_split(bench.samples, bench.split_fractions, seed)
        split_path = write_split(assignment, out_dir / "split.csv")
    samples = bench.subset(split, assignment)
    if not samples:
        raise MedKLIPError(f"{dataset}: the {split} split is empty ({len(bench.samples)} images in all)")
    predictor = model if hasattr(model, "queries") else Predictor(model, text_encoder=text_encoder, device=device)
    logger.info("%s: %d images in the %s split", dataset, len(samples), split)
    run = run_benchmark(predictor, bench, samples, describe, by_name, batch_size, n_boot, seed, n_overlays, progress)
    sizes = {s: sum(1 for v in assignment.values() if v == s) for s in ("train", "valid", "test")}
    info = {"model": str(model if not hasattr(model, "queries") else "Predictor"), "root": str(root),
            "split": split, "split_file": str(split_path), "split_sizes": sizes, "seed": seed,
            "label_errors": len(bench.errors), "class_counts": bench.class_counts(samples),
            "prompts": {p.label: p.key for p in run.prompts}}
    return write_run(bench, run, out_dir, assignment, info)
