"""What every benchmark adapter returns: samples with labels and (optional) regions, the
dataset's class -> entity mapping, rows it could not use, and the paper's seeded split."""
from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medklip.data.benchmarks.masks import (
    boxes_to_mask,
    read_mask_array,
    read_mask_file,
    rle_to_mask,
)
from medklip.errors import BenchmarkError
from medklip.splits import SPLITS, normalize_split

logger = logging.getLogger(__name__)



def index_files(root: Path, suffixes: set[str], key: Callable[[Path], str] = lambda p: p.name) -> dict[str, Path]:
    """Files under ``root`` by name (or another key); a key found twice keeps the first path."""
    found: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in suffixes and p.is_file():
            found.setdefault(key(p), p)
    return found


def make_error(source: Path, row: int, id_: str, error: str) -> dict:
    """One unusable label row, as ``errors.jsonl`` lists it."""
    return {"source": str(source), "row": row, "id": id_, "error": error}


@dataclass
class Region:
    """Where a finding is, in the pixel space of the original image: boxes ``(x, y, w, h)``,
    Kaggle SIIM run-length strings, or a mask file."""

    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    rle: list[str] = field(default_factory=list)
    mask_file: Path | None = None
    npz: tuple[Path, str] | None = None  # (file, key): a mask array in an .npz (the synthetic world)
    frame: tuple[int, int] | None = None  # (height, width) the boxes are given in, when it may differ
    # from the image file's (a downsampled copy of MS-CXR's MIMIC-CXR images); boxes are scaled to it

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Boolean mask of ``shape`` (the original image's ``(height, width)``)."""
        out = np.zeros(shape, bool)
        if self.boxes:
            boxes = self.boxes
            if self.frame is not None and tuple(self.frame) != tuple(shape):
                sy, sx = shape[0] / self.frame[0], shape[1] / self.frame[1]
                boxes = [(x * sx, y * sy, w * sx, h * sy) for x, y, w, h in boxes]
            out |= boxes_to_mask(boxes, shape)
        for rle in self.rle:
            out |= rle_to_mask(rle, shape)
        if self.mask_file is not None:
            out |= read_mask_file(self.mask_file, shape)
        if self.npz is not None:
            with np.load(self.npz[0]) as f:
                out |= read_mask_array(f[self.npz[1]], shape)
        return out


@dataclass
class Sample:
    """One image of a benchmark: labels per dataset class (0/1, or the grade) and regions."""

    id: str
    image: Path
    labels: dict[str, int]
    group: str = ""  # patient id: the split keeps a patient's images together
    regions: dict[str, Region] = field(default_factory=dict)
    phrase: str = ""  # phrase grounding: the sentence this sample asks the model to find


@dataclass
class Benchmark:
    """A dataset read from its published layout."""

    name: str
    title: str
    task: str  # classify | ground | grade
    classes: dict[str, str]  # dataset class -> knowledge-base entity
    samples: list[Sample]
    split_fractions: tuple[float, float, float]
    errors: list[dict] = field(default_factory=list)  # {"source", "row", "id", "error"}
    grades: list[int] = field(default_factory=list)
    grade_class: str | None = None  # the label that holds the grade (grading tasks)
    segment_class: str | None = None  # the class whose masks segmentation learns
    official_split: dict[str, str] | None = None  # the publisher's own split (id -> train/valid/test)
    groups: dict[str, list[str]] = field(default_factory=dict)  # named class subsets, each macro-averaged
    excluded: dict[str, int] = field(default_factory=dict)  # rows the protocol leaves out, by reason
    listed: int = 0  # rows of a fixed list (the release's), 0 where the benchmark reads the whole dataset
    missing_images: int = 0  # of ``errors``: listed rows whose image is not in the user's copy

    @property
    def label_errors(self) -> int:
        """Rows of ``errors`` that are unusable themselves (not merely missing their image)."""
        return len(self.errors) - self.missing_images

    def class_counts(self, samples: Sequence[Sample] | None = None) -> dict[str, int]:
        """Positive images per class (images with grade > 0 for grading; uncertain ``-1`` is not positive)."""
        rows = self.samples if samples is None else samples
        return {c: sum(1 for s in rows if s.labels.get(c, 0) > 0) for c in self.classes}

    def subset(self, split: str, assignment: dict[str, str]) -> list[Sample]:
        """The samples of one split (``"all"`` for every sample)."""
        if split == "all":
            return list(self.samples)
        canonical = normalize_split(split)
        if canonical is None:
            raise BenchmarkError(f"unknown split {split!r}; use one of {', '.join(SPLITS)} or all")
        split = canonical
        return [s for s in self.samples if assignment.get(s.id) == split]


def make_split(samples: Sequence[Sample], fractions: Sequence[float], seed: int = 0) -> dict[str, str]:
    """Seeded train/valid/test assignment by patient group, sizes as close to ``fractions`` as
    whole patients allow: sample id -> split."""
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise BenchmarkError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    groups: dict[str, list[str]] = {}
    for s in samples:
        groups.setdefault(s.group or s.id, []).append(s.id)
    keys = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    total = len(samples)
    bounds = np.cumsum(fractions)[:2] * total
    assignment: dict[str, str] = {}
    seen = 0
    for k in order:
        ids = groups[keys[k]]
        split = SPLITS[int(np.searchsorted(bounds, seen, side="right"))]
        for i in ids:
            assignment[i] = split
        seen += len(ids)
    return assignment


def write_split(assignment: dict[str, str], path: str | Path) -> Path:
    """``id,split`` CSV, sorted by id, so a run can be repeated with ``--split-file``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "split"])
        for k in sorted(assignment):
            w.writerow([k, assignment[k]])
    return path


def read_split(path: str | Path, samples: Sequence[Sample]) -> dict[str, str]:
    """Read a split file written by :func:`write_split`; ids it lists that the dataset lacks
    are an error (a different dataset version), dataset ids it lacks are logged and left out."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"{path}: split file not found")
    assignment: dict[str, str] = {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"id", "split"} <= set(reader.fieldnames):
            raise BenchmarkError(f"{path}: a split file needs the columns id,split (got {reader.fieldnames})")
        for line, row in enumerate(reader, start=2):
            split = normalize_split(row["split"] or "")
            if split is None:
                raise BenchmarkError(f"{path}:{line}: split {row['split']!r} is not one of {', '.join(SPLITS)}")
            assignment[row["id"]] = split
    ids = {s.id for s in samples}
    unknown = [k for k in assignment if k not in ids]
    if unknown:
        raise BenchmarkError(f"{path}: {len(unknown)} ids are not in this dataset (first: {unknown[:3]}); "
                             "was the split written for another version or --dataset?")
    missing = len(ids) - len(assignment)
    if missing:
        logger.warning("%s: %d images of the dataset are in no split and are left out", path, missing)
    return assignment
