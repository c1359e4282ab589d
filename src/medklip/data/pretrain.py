"""The pre-training dataset: image + existence labels + sampled positions, from a manifest.

Labels come from the report filter (or the manifest's triplets). Every random choice of a
sample (augmentation, negative positions) is seeded by (seed, epoch, index), so a sample is
the same whichever process or world size loads it: runs resume exactly and DDP matches one
process.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate

from medklip.data.image_io import ImageCache, load_pil
from medklip.data.manifest import ManifestRow
from medklip.errors import ImageReadError
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

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def _image(self, index: int) -> torch.Tensor:
        img = load_pil(self.rows[index].image, self.cache)
        # The transforms draw from torch's global CPU generator: seed only that one. torch.manual_seed
        # would also seed every accelerator's generator (1.2 ms a call on a CPU-only machine, 10%
        # of a quick-profile step) and leave a CUDA seed changed behind fork_rng(devices=[]).
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFF_FFFF)
            return self.transform(img)

    def __getitem__(self, index: int) -> dict:
        """A sample, or ``{"failed": (image, error)}`` for an image that cannot be read:
        :func:`collate_pretrain` leaves it out of the batch and reports it (never swapped for
        another sample)."""
        try:
            image = self._image(index)
        except ImageReadError as exc:
            return {"failed": (str(self.rows[index].image), str(exc))}
        rng = np.random.default_rng([self.seed, self.epoch, index])
        target = self.targets[index]
        return {
            "image": image,
            "exist": torch.from_numpy(target.exist.astype(np.int64)),
            "position_index": torch.from_numpy(target.sample_position_index(rng, self.num_positions)),
            "index": index,
        }


def collate_pretrain(samples: list[dict]) -> dict:
    """Stack the readable samples; ``"failures"`` lists the (image, error) of the others."""
    good = [s for s in samples if "failed" not in s]
    batch: dict = default_collate(good) if good else {}
    batch["failures"] = [s["failed"] for s in samples if "failed" in s]
    return batch
