"""Zero-shot evaluation of a model on a benchmark split, streamed: images are decoded ahead of the
model, each batch's predictions are written to ``predictions.csv`` and its overlays drawn as soon
as it is done, and only probabilities and the positive images' patch-grid heatmaps and masks are
kept for scoring (:mod:`medklip.evaluation.scoring`)."""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medklip.data.benchmarks import (
    Benchmark,
    Sample,
    benchmark_specs,
    load_benchmark,
    make_split,
    read_split,
    write_split,
)
from medklip.data.benchmarks.release import read_release_split
from medklip.data.preprocess import Preprocess
from medklip.data.profiles import RELEASE_PROFILES
from medklip.errors import MedKLIPError
from medklip.evaluation.grounding import resize_mask_nearest
from medklip.evaluation.operating import OperatingPoints, fit_operating_points, unavailable
from medklip.evaluation.plots import save_overlay
from medklip.evaluation.report import PredictionsWriter, slug, write_run
from medklip.evaluation.scoring import (
    DESCRIPTION,
    NAME,
    EvaluationRun,
    GroundingCase,
    Prompt,
    score,
)
from medklip.knowledge import DescriptionTexts
from medklip.progress import Progress
from medklip.splits import SPLITS, VALIDATION, normalize_split
from medklip.zeroshot.loading import iter_batches
from medklip.zeroshot.phrases import run_phrase_grounding
from medklip.zeroshot.predict import Predictor

logger = logging.getLogger(__name__)


def build_prompts(bench: Benchmark, model_entities: Sequence[str], by_name: bool = True) -> tuple[list[Prompt], dict]:
    """Prompts for each class, and the descriptions to add for the name-only ones."""
    prompts, describe = [], {}
    for cls, entity in bench.classes.items():
        seen = entity in model_entities
        prompts.append(Prompt(cls, DESCRIPTION, entity, seen))
        if by_name and not seen:
            key = f"{entity} [name]"
            describe[key] = entity.replace("_", " ")
            prompts.append(Prompt(cls, NAME, key, seen))
    return prompts, describe


def run_benchmark(predictor: Predictor, bench: Benchmark, samples: list[Sample], out_dir: Path,
                  assignment: Mapping[str, str] | None = None, describe: Mapping[str, DescriptionTexts] | None = None,
                  by_name: bool = True, batch_size: int = 16, n_boot: int = 1000, seed: int = 0,
                  n_overlays: int = 6, progress: Progress | None = None,
                  operating: OperatingPoints | None = None) -> EvaluationRun:
    """Predict every sample (unreadable images are listed, not fatal) and score them (also at
    ``operating``'s thresholds when given)."""
    prompts, name_texts = build_prompts(bench, predictor.model.entity_names, by_name)
    unknown = [k for k in describe or {} if k not in bench.classes and k not in bench.classes.values()]
    if unknown:
        raise MedKLIPError(f"--describe {unknown}: not a class or entity of {bench.name} "
                           f"(classes: {', '.join(bench.classes)})")
    texts = {**name_texts, **{bench.classes.get(k, k): t for k, t in (describe or {}).items()}}
    findings = [p.key for p in prompts if p.key not in texts]
    qs = predictor.query_set(findings, texts)
    order = findings + [k for k in texts if k not in findings]
    groups = [qs.groups[order.index(p.key)] for p in prompts]
    column = [g[0] for g in groups]
    size = predictor.preprocess.config.image_size
    grounded = [j for j, p in enumerate(prompts) if any(p.cls in s.regions for s in samples)]
    run = EvaluationRun([], prompts, np.zeros((0, len(prompts))), {j: [] for j in grounded})
    shown = {j: 0 for j in grounded}
    probs: list[np.ndarray] = []
    raw_probs: list[np.ndarray] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "predictions.csv").open("w", newline="") as csv_file:
        writer = PredictionsWriter(csv_file, prompts, dict(assignment or {}))
        batches = iter_batches([s.image for s in samples], predictor.preprocess, batch_size, predictor.workers,
                               keep_display=bool(grounded) and n_overlays > 0)
        for batch in batches:
            good = batch.good
            for item in batch.items:
                if item.error is not None:
                    s = samples[item.index]
                    run.failures.append({"id": s.id, "image": str(s.image), "error": item.error})
                    logger.warning("%s", item.error)
            if progress is not None:
                progress.update(len(batch.items))
            if not good:
                continue
            all_probs, all_maps = predictor.backend(batch.stack(), qs.embeddings, bool(grounded))
            raw, maps = qs.reduce(all_probs, all_maps, groups)
            p = predictor.calibrate(raw, column)
            raw_probs.append(raw)
            kept = [samples[item.index] for item in good]
            writer.write(kept, p)
            probs.append(p)
            run.samples += kept
            for i, (item, s) in enumerate(zip(good, kept)):
                for j in grounded:
                    region = s.regions.get(prompts[j].cls)
                    if region is None or s.labels.get(prompts[j].cls, 0) <= 0:
                        continue
                    original = region.mask(item.shape)
                    assert maps is not None
                    heat = maps[i, j]
                    run.grounding[j].append(GroundingCase(heat, resize_mask_nearest(original, (size, size))))
                    if shown[j] < n_overlays and item.display is not None:
                        shown[j] += 1
                        shape = item.display.shape
                        run.overlays.append(save_overlay(
                            item.display, heat, out_dir / "heatmaps" / f"{slug(s.id)}_{slug(prompts[j].label)}.png",
                            prompts[j].label, float(p[i, j]), resize_mask_nearest(original, shape)))
    run.probs = np.concatenate(probs) if probs else np.zeros((0, len(prompts)))
    run.calibrated = predictor.calibrated_rows(column)
    if any(run.calibrated):
        run.raw_probs = np.concatenate(raw_probs) if raw_probs else np.zeros((0, len(prompts)))
        run.calibration_source = predictor.calibration_source
    run.metrics = score(bench, run, n_boot, seed, operating)
    return run


def operating_points_of(run: EvaluationRun, source: str) -> OperatingPoints:
    """Each prompt's F1-maximising threshold and grounding threshold on ``run`` (e.g. the
    validation split's predictions)."""
    labels, probs = {}, {}
    for j, prompt in enumerate(run.prompts):
        labels[prompt.label], probs[prompt.label] = run.binary(j)
    cases = {run.prompts[j].label: ([c.heatmap for c in g], [c.mask for c in g]) for j, g in run.grounding.items()}
    return fit_operating_points(source, labels, probs, cases)


def split_assignment(bench: Benchmark, split_file: str | Path | None, seed: int) -> tuple[dict[str, str], str]:
    """Image id -> split: ``split_file``'s, else the publisher's where the dataset has one, else the
    paper's seeded one; and which, in words."""
    if split_file:
        return read_split(split_file, bench.samples), f"split file {Path(split_file).name}"
    if bench.official_split is not None:
        return dict(bench.official_split), "the publisher's split"
    return make_split(bench.samples, bench.split_fractions, seed), f"the seeded split ({seed})"


def _no_operating_points(bench: Benchmark, split: str, calibration_split: str | None) -> str | None:
    """Why no operating points can be chosen for this run (None: they can)."""
    if not calibration_split or str(calibration_split).lower() == "none":
        return "not asked for (calibration split: none)"
    if bench.task == "phrase-ground":
        return "phrase grounding is scored at fixed thresholds (mIoU over 0.1-0.5)"
    if split == "release":
        return "the release's test list comes without validation images"
    if split == "all":
        return "every image is scored (split all): none is left to choose thresholds on"
    wanted = normalize_split(str(calibration_split))
    if wanted is None:
        raise MedKLIPError(f"unknown calibration split {calibration_split!r}; use one of {', '.join(SPLITS)} or none")
    if wanted == normalize_split(split):
        return f"the thresholds would be chosen on the {split} split being scored"
    return None


def evaluate_dataset(dataset: str, root: str | Path, model: Predictor | str | Path, out_dir: str | Path, *,
                     split: str = "test", split_file: str | Path | None = None, seed: int = 0,
                     text_encoder: str | None = None, device: str | None = None,
                     describe: Mapping[str, DescriptionTexts] | None = None, by_name: bool = True, batch_size: int = 16,
                     n_boot: int = 1000, mapping: str | Path | None = None, labels: str | Path | None = None,
                     n_overlays: int = 6, progress: bool = False, preprocess: str | None = None,
                     workers: int = 0, max_pixels: int | None | str = "model", backend: str = "torch",
                     fast: bool = False, calibration_split: str | None = VALIDATION, calibrated: bool = True,
                     precision: str = "fp32", ensemble: str = "embedding", variants: bool | None = None,
                     processes: int = 1) -> dict:
    """Read ``dataset`` at ``root``, split it (the paper's fractions, seeded, by patient; or the
    release's own test list with ``split="release"``; the publisher's split where a dataset has one)
    or reuse ``split_file``, score ``model``
    zero-shot on ``split`` and write the run into ``out_dir``: metrics.json, metrics.csv, report.md,
    predictions.csv, errors.jsonl, split.csv, plots.

    Each class's F1 / accuracy threshold and the grounding threshold are chosen on
    ``calibration_split`` of the same assignment (its predictions in ``out_dir/validation``) and the
    scored split is reported at them (``operating_*``) beside the paper's test-tuned values; where
    that split is empty, is the one scored, or the benchmark is a release list, metrics.json says
    why there is none (nothing is tuned on test silently)."""
    out_dir = Path(out_dir)
    specs = benchmark_specs(mapping)
    if split == "release":
        if dataset not in specs:
            raise MedKLIPError(f"unknown dataset {dataset!r}; known: {', '.join(specs)}")
        bench = read_release_split(dataset, Path(root), specs[dataset])
        assignment = {s.id: "test" for s in bench.samples}
        split_path = write_split(assignment, out_dir / "split.csv")
        samples = list(bench.samples)
    else:
        bench = load_benchmark(dataset, root, mapping, labels)
        assignment, _source = split_assignment(bench, split_file, seed)
        split_path = Path(split_file) if split_file else write_split(assignment, out_dir / "split.csv")
        samples = bench.subset(split, assignment)
    if not samples:
        raise MedKLIPError(f"{dataset}: the {split} split is empty ({len(bench.samples)} images in all)")
    predictor = model if isinstance(model, Predictor) else Predictor(
        model, text_encoder=text_encoder, device=device, preprocess=preprocess, max_pixels=max_pixels,
        workers=workers, backend=backend, fast=fast, calibrated=calibrated, precision=precision,
        ensemble=ensemble, variants=variants, processes=processes)
    profile = predictor.preprocess.config
    wanted = specs.get(dataset, {}).get("release_preprocess")
    if preprocess is None and wanted and profile.profile in RELEASE_PROFILES and profile.profile != wanted:
        logger.info("%s: scoring with the release's %s preprocessing, as the release does", dataset, wanted)
        predictor.preprocess = Preprocess(profile.replace(profile=wanted))
    logger.info("%s: %d images in the %s split", dataset, len(samples), split)
    started = time.perf_counter()
    reason = _no_operating_points(bench, split, calibration_split)
    held_out = [] if reason else bench.subset(str(calibration_split), assignment)
    if not reason and not held_out:
        reason = f"the split has no {calibration_split} images to choose thresholds on"
    operating = None
    if held_out:
        bar = Progress(len(held_out), f"evaluate {dataset} ({calibration_split}: operating points)", unit="img",
                       enabled=progress)
        try:
            tuned = run_benchmark(predictor, bench, held_out, out_dir / "validation", assignment, describe, by_name,
                                  batch_size, 0, seed, 0, bar)
        finally:
            bar.close()
        operating = operating_points_of(tuned, f"{calibration_split} split ({len(tuned.samples)} images)")
    bar = Progress(len(samples), f"evaluate {dataset}", unit="img", enabled=progress)
    try:
        if bench.task == "phrase-ground":
            run = run_phrase_grounding(predictor, bench, samples, out_dir, assignment, batch_size, n_boot, seed,
                                       n_overlays, bar)
        else:
            run = run_benchmark(predictor, bench, samples, out_dir, assignment, describe, by_name, batch_size,
                                n_boot, seed, n_overlays, bar, operating)
    finally:
        bar.close()
        if predictor is not model:  # this function's own: stop its model processes (if any)
            predictor.close()
    if operating is None:
        run.metrics["operating_points"] = unavailable(str(reason))
    sizes = {s: sum(1 for v in assignment.values() if v == s) for s in SPLITS}
    info = {"model": str(model if not isinstance(model, Predictor) else "Predictor"), "root": str(root),
            "split": split, "split_file": str(split_path), "split_sizes": sizes, "seed": seed,
            "preprocess": predictor.preprocess.config.profile, "precision": predictor.precision,
            "label_errors": bench.label_errors,
            "listed_images": bench.listed, "listed_images_not_found": bench.missing_images,
            "split_source": "split file" if split_file else "release list" if split == "release" else
            "publisher" if bench.official_split is not None else f"seeded ({seed})",
            "left_out_by_protocol": bench.excluded,
            "class_counts": bench.class_counts(samples), "prompts": {p.label: p.key for p in run.prompts},
            "prompt_classes": {p.label: p.cls for p in run.prompts},
            "seconds": round(time.perf_counter() - started, 2)}
    return write_run(bench, run, out_dir, info)

