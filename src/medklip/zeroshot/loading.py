"""Decoding images for inference, overlapped with the model: a DataLoader of paths whose
workers run the model's :class:`~medklip.data.preprocess.Preprocess` and hand back batches in
input order. An unreadable file is one error in its batch, never a crash of the run."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from medklip.data.preprocess import Preprocess
from medklip.errors import ImageReadError

DISPLAY_SIDE = 1024
"""Overlays and web previews use the image at most this big (memory stays flat for large inputs)."""


@dataclass
class Item:
    """One decoded image: its position in the input, tensor (or the error), original size."""

    index: int
    path: str
    tensor: torch.Tensor | None = None
    shape: tuple[int, int] = (0, 0)
    display: np.ndarray | None = None
    error: str | None = None
    error_type: str | None = None  # the exception's class name (ImageTooLargeError, ImageReadError)


@dataclass
class Batch:
    """Consecutive inputs: the readable ones stacked, the unreadable ones listed."""

    items: list[Item] = field(default_factory=list)

    @property
    def good(self) -> list[Item]:
        return [i for i in self.items if i.error is None]

    def stack(self) -> torch.Tensor:
        return torch.stack([i.tensor for i in self.good if i.tensor is not None])


def display_image(image: Image.Image, side: int = DISPLAY_SIDE) -> np.ndarray:
    """Grayscale float ``[H, W]`` in [0, 1], the longer side at most ``side`` pixels."""
    gray = image.convert("L")
    scale = min(1.0, side / max(gray.size))
    if scale < 1.0:
        gray = gray.resize((max(1, round(gray.width * scale)), max(1, round(gray.height * scale))), Image.Resampling.BILINEAR)
    return np.asarray(gray, dtype=np.float32) / 255.0


class _Files(Dataset):
    def __init__(self, paths: Sequence[str | Path], preprocess: Preprocess, keep_display: bool) -> None:
        self.paths, self.preprocess, self.keep_display = [str(p) for p in paths], preprocess, keep_display

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Item:
        item = Item(index, self.paths[index])
        try:
            image = self.preprocess.load(self.paths[index])
            item.shape = (image.height, image.width)
            item.tensor = self.preprocess.tensor(image)
            if self.keep_display:
                item.display = display_image(image)
            image.close()
        except ImageReadError as exc:
            item.error, item.error_type = str(exc), type(exc).__name__
        except MemoryError:
            item.error, item.error_type = f"{self.paths[index]}: out of memory while decoding the image", "MemoryError"
        return item


def load_batch(paths: Sequence[str | Path], start: int, preprocess: Preprocess, keep_display: bool = False) -> Batch:
    """``paths`` decoded in this process as one batch whose items are numbered from ``start``
    (their positions in the whole input)."""
    files = _Files(paths, preprocess, keep_display)
    items = [files[k] for k in range(len(files))]
    for k, item in enumerate(items):
        item.index = start + k
    return Batch(items)


def _collate(items: list[Item]) -> Batch:
    return Batch(items)


def iter_batches(paths: Sequence[str | Path], preprocess: Preprocess, batch_size: int = 16, workers: int = 0,
                 keep_display: bool = False) -> Iterator[Batch]:
    """Batches of decoded images in input order; ``workers`` processes decode ahead of the model
    (0: in this process)."""
    if not paths:
        return
    loader = DataLoader(_Files(paths, preprocess, keep_display), batch_size=max(1, batch_size), shuffle=False,
                        num_workers=max(0, workers), collate_fn=_collate,
                        prefetch_factor=2 if workers > 0 else None, persistent_workers=False)
    yield from loader
