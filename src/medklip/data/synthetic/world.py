"""The synthetic chest X-ray world written as a dataset on disk.

::

    ROOT/world.json            generator settings (a rerun with the same settings reuses the world)
    ROOT/manifest.jsonl        {"image", "study_id", "split", "report"} per study (the real-data format)
    ROOT/images/SPLIT/ID.png   8-bit grayscale radiographs
    ROOT/test_labels.jsonl     test split ground truth: {"study_id", "labels": {finding: 0/1}, "masks": path}
    ROOT/validation_labels.jsonl  the same for the validation split (operating points, calibration)
    ROOT/masks/SPLIT/ID.npz    one boolean mask per finding present in the image (validation, test)

Training labels are not written: they come from running the report filter on the reports,
as for real data. ``covid-19`` appears only in the test split and no report names it.
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medklip.data.synthetic import findings as F
from medklip.data.synthetic.anatomy import Canvas, Patient, render_anatomy, to_image
from medklip.data.synthetic.reports import write_report
from medklip.io_utils import atomic_path, atomic_write_text
from medklip.progress import track
from medklip.splits import SPLITS

logger = logging.getLogger(__name__)

WORLD_VERSION = 5
"""5: validation ground truth written too (the images are those of version 4)."""
HELD_OUT = ("validation", "test")
"""The splits whose ground truth is written (training labels come from the reports)."""
EVAL_ENTITY = {
    "effusion": "effusion", "opacity": "opacity", "consolidation": "consolidation", "pneumonia": "pneumonia",
    "atelectasis": "atelectasis", "pneumothorax": "pneumothorax", "cardiomegaly": "cardiomegaly",
    "nodule": "nodule", "mass": "mass", "edema": "edema", "et_tube": "tube", "ng_tube": "tube",
    "picc": "line", "central_line": "line", "pacemaker": "pacemaker", "fracture": "fracture",
    "hyperinflation": "hyperinflate", "covid-19": "covid-19",
}
"""Generator finding -> the knowledge-base entity it is evaluated as."""
SEEN_FINDINGS = ["effusion", "opacity", "consolidation", "pneumonia", "atelectasis", "pneumothorax", "cardiomegaly",
                 "nodule", "mass", "edema", "tube", "line", "pacemaker", "fracture", "hyperinflate"]
UNSEEN_FINDINGS = ["covid-19"]


@dataclass
class WorldConfig:
    """Sizes and knobs of the synthetic world."""

    train: int = 3000
    validation: int = 300
    test: int = 600
    image_size: int = 224
    seed: int = 0
    normal_rate: float = 0.3
    covid_rate: float = 0.15
    hedge_rate: float = 0.1
    max_findings: int = 3


@dataclass
class Study:
    study_id: str
    split: str
    image: np.ndarray  # uint8 [S, S]
    report: str
    labels: dict[str, int]
    masks: dict[str, np.ndarray]


def make_study(cfg: WorldConfig, split: str, index: int) -> Study:
    """One study, fully determined by (seed, split, index)."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, SPLITS.index(split), index]))
    patient = Patient.sample(rng)
    covid = split == "test" and rng.random() < cfg.covid_rate
    kinds: list[str] = []
    if not covid and rng.random() >= cfg.normal_rate:
        while not kinds:
            kinds = [k for k, p in F.PREVALENCE.items() if rng.random() < p * 1.4]
        kinds = list(rng.permutation(kinds)[: cfg.max_findings])
    elif covid and rng.random() < 0.3:
        kinds = [str(rng.choice(list(F.PREVALENCE)))]
    found: list[F.Finding] = [F.GLOBAL_FINDINGS[k](patient, rng) for k in kinds if k in F.GLOBAL_FINDINGS]
    canvas = Canvas(patient, cfg.image_size)
    layers = render_anatomy(canvas, rng)
    density = layers["density"]
    for k in kinds:
        if k in F.LOCAL_FINDINGS:
            found.append(F.LOCAL_FINDINGS[k](canvas, layers, density, rng))
    if covid:
        found.append(F.draw_covid(canvas, layers, density, rng))
    for f in found:
        if f.mask is None and f.kind == "cardiomegaly":
            f.mask = layers["heart"] > 0.5
        elif f.mask is None:
            f.mask = np.clip(layers["lung_right"] + layers["lung_left"], 0, 1) > 0.5
    image = (to_image(density, patient, rng) * 255).round().astype(np.uint8)
    report, _hedged = write_report(found, rng, cfg.hedge_rate)
    labels = {name: 0 for name in SEEN_FINDINGS + UNSEEN_FINDINGS}
    masks: dict[str, np.ndarray] = {}
    for f in found:
        name = EVAL_ENTITY[f.kind]
        labels[name] = 1
        assert f.mask is not None  # every finding got a mask above
        masks[name] = masks[name] | f.mask if name in masks else f.mask
    return Study(f"{split}-{index:06d}", split, image, report, labels, masks)


def _write(args: tuple[WorldConfig, str, int, str]) -> dict:
    cfg, split, index, root = args
    study = make_study(cfg, split, index)
    rel = f"images/{split}/{study.study_id}.png"
    Image.fromarray(study.image, mode="L").save(os.path.join(root, rel), optimize=False, compress_level=1)
    row: dict[str, Any] = {"image": rel, "study_id": study.study_id, "split": split, "report": study.report}
    if split in HELD_OUT:
        mask_rel = f"masks/{split}/{study.study_id}.npz"
        np.savez_compressed(os.path.join(root, mask_rel), **study.masks)  # type: ignore[arg-type]
        row["_labels"] = {"study_id": study.study_id, "labels": study.labels, "masks": mask_rel}
    return row


def generate_world(root: str | Path, cfg: WorldConfig | None = None, workers: int = 1, progress: bool = False) -> Path:
    """Write the world under ``root`` (reused when ``world.json`` matches ``cfg``)."""
    cfg = cfg or WorldConfig()
    root = Path(root)
    meta = {"version": WORLD_VERSION, **asdict(cfg)}
    if (root / "world.json").is_file() and json.loads((root / "world.json").read_text()) == meta:
        logger.info("reusing the synthetic world in %s", root)
        return root
    for split in SPLITS:
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
    for split in HELD_OUT:
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
    jobs = [(cfg, split, i, str(root)) for split in SPLITS for i in range(getattr(cfg, split))]
    pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
    rows = track(pool.imap(_write, jobs, chunksize=16) if pool else map(_write, jobs), len(jobs), "synthetic world",
                 unit="studies", enabled=progress)
    try:
        with atomic_path(root / "manifest.jsonl") as man_path, atomic_path(root / "validation_labels.jsonl") as val_path, \
                atomic_path(root / "test_labels.jsonl") as test_path, man_path.open("w") as man, \
                val_path.open("w") as val, test_path.open("w") as test:
            for row in rows:
                labels = row.pop("_labels", None)
                man.write(json.dumps(row) + "\n")
                if labels:
                    (val if row["split"] == "validation" else test).write(json.dumps(labels) + "\n")
    finally:
        if pool:
            pool.close()
            pool.join()
    atomic_write_text(root / "world.json", json.dumps(meta, indent=1))
    return root
