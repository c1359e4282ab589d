"""Image transforms: the release's training augmentation and the evaluation resize."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class GrayToTensor:
    """``Grayscale(3)`` -> ``ToTensor`` -> ``Normalize`` in one step: the image as 8-bit gray, scaled
    to [0, 1] once and normalised into three channels. The same numbers to the bit, five times
    faster (no RGB copy of the image is made)."""

    def __init__(self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        gray = image if image.mode == "L" else image.convert("L")
        x = torch.from_numpy(np.asarray(gray, dtype=np.float32) / 255.0)
        return (x.expand(3, *x.shape) - self.mean) / self.std

    def __repr__(self) -> str:
        return "GrayToTensor()"


def train_transform(size: int = 224, scale: tuple[float, float] = (0.2, 1.0), hflip: bool = True,
                    randaugment: bool = True) -> Callable[[Image.Image], torch.Tensor]:
    """RandomResizedCrop (bicubic) -> horizontal flip -> RandAugment(2 ops, magnitude 7) ->
    3 channels -> ImageNet normalisation, as the release pre-trains.

    A horizontal flip swaps the patient's left and right; the release flips anyway, so it is on
    by default (turn it off when positions matter more than augmentation).
    """
    steps: list = [T.RandomResizedCrop(size, scale=scale, interpolation=T.InterpolationMode.BICUBIC)]
    if hflip:
        steps.append(T.RandomHorizontalFlip())
    if randaugment:
        steps.append(T.RandAugment(num_ops=2, magnitude=7))
    steps.append(GrayToTensor())
    return T.Compose(steps)


def eval_transform(size: int = 224, mean: tuple[float, ...] = IMAGENET_MEAN,
                   std: tuple[float, ...] = IMAGENET_STD) -> Callable[[Image.Image], torch.Tensor]:
    """medklip's evaluation transform: resize to ``size x size`` (bicubic) -> 3 channels ->
    normalisation (the ``medklip`` preprocessing profile)."""
    return T.Compose([T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC), GrayToTensor(mean, std)])


def release_eval_transform(size: int = 224, mean: tuple[float, ...] = IMAGENET_MEAN,
                           std: tuple[float, ...] = IMAGENET_STD, bicubic: bool = False
                           ) -> Callable[[Image.Image], torch.Tensor]:
    """The release's test transform on an RGB PIL image: ``Resize([size, size])`` with
    torchvision's defaults (bilinear, antialias; bicubic for the PadChest readers), ``ToTensor``,
    normalisation."""
    mode = T.InterpolationMode.BICUBIC if bicubic else T.InterpolationMode.BILINEAR
    return T.Compose([T.Resize([size, size], interpolation=mode), T.ToTensor(), T.Normalize(mean, std)])
