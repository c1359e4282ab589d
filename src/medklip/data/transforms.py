"""Image transforms: the release's training augmentation and the evaluation resize."""
from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
    steps += [T.Grayscale(num_output_channels=3), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return T.Compose(steps)


def eval_transform(size: int = 224, mean: tuple[float, ...] = IMAGENET_MEAN,
                   std: tuple[float, ...] = IMAGENET_STD) -> Callable[[Image.Image], torch.Tensor]:
    """medklip's evaluation transform: resize to ``size x size`` (bicubic) -> 3 channels ->
    normalisation (the ``medklip`` preprocessing profile)."""
    return T.Compose([
        T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC),
        T.Grayscale(num_output_channels=3), T.ToTensor(), T.Normalize(mean, std),
    ])


def release_eval_transform(size: int = 224, mean: tuple[float, ...] = IMAGENET_MEAN,
                           std: tuple[float, ...] = IMAGENET_STD) -> Callable[[Image.Image], torch.Tensor]:
    """The release's test transform on an RGB PIL image: ``Resize([size, size])`` with
    torchvision's defaults (bilinear, antialias), ``ToTensor``, normalisation."""
    return T.Compose([T.Resize([size, size]), T.ToTensor(), T.Normalize(mean, std)])
