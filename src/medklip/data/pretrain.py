"""The pre-training dataset: image + existence labels + sampled positions, from a manifest.

Labels come from the report filter (or the manifest's triplets). Every random choice of a
sample (augmentation, negative positions) is seeded by (seed, epoch, index), so a sample is
the same whichever process or world size loads it: runs resume exactly and DDP matches one
process.
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from medklip.data.image_io import ImageCache, ImageReadError, load_pil
from medklip.data.manifest import ManifestRow
from medklip.reports import ReportFilter
from medklip.reports.targets import ReportTargets, report_targets

logger = logging.getLogger(__name__)


class PretrainDataset(Dataset):
    """Samples ``{"image", "exist", "position_index", "index"}`` for :meth:`MedKLIP.loss`."""

    def __init__(
        self,
        rows: Sequence[ManifestRow],
        entity_names: Sequence[str],
        position_names: Sequence[str],
        transform: Callable[[Image.Image], torch.Tensor],
        seed: int = 0,
        report_filter: ReportFilter | None = None,
        image_cache: ImageCache | None = None,
    ) -> None:
        self.rows = list(rows)
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.cache = image_cache
        self.num_positions = len(position_names)
        rf = report_filter or ReportFilter()
        self.targets: list[ReportTargets] = [
            report_targets(r.triplets if r.triplets is not None else rf.extract(r.report or ""),
                           entity_names, position_names)
            for r in self.rows
        ]
        self.failures: list[tuple[str, str]] = []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def label_matrix(self) -> np.ndarray:
        """``[N, Q]`` existence labels of all rows (for statistics)."""
        return np.stack([t.exist for t in self.targets]) if self.targets else np.zeros((0, 0), np.int8)

    def _image(self, index: int) -> torch.Tensor:
        img = load_pil(self.rows[index].image, self.cache)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFF_FFFF)
            return self.transform(img)

    def __getitem__(self, index: int) -> dict:
        for attempt in range(len(self.rows)):
            i = (index + attempt) % len(self.rows)
            try:
                image = self._image(i)
                break
            except ImageReadError as exc:  # a damaged file is recorded and skipped, not fatal
                logger.warning("skipping unreadable image: %s", exc)
                self.failures.append((str(self.rows[i].image), str(exc)))
        else:  # pragma: no cover - every image unreadable
            raise ImageReadError("no readable image in the dataset")
        rng = np.random.default_rng([self.seed, self.epoch, i])
        target = self.targets[i]
        return {
            "image": image,
            "exist": torch.from_numpy(target.exist.astype(np.int64)),
            "position_index": torch.from_numpy(target.sample_position_index(rng, self.num_positions)),
            "index": i,
        }
