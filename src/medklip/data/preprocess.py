"""Evaluation preprocessing, kept with the model (as open_clip keeps ``PreprocessCfg``).

A model folder records its profile in ``config.json``; :func:`medklip.create_model` returns the
model with its :class:`Preprocess`. Profiles:

``release-cxr14``
    The release's ChestX-ray14 test script (``Sample_zero-shot_Classification_CXR14``): PIL
    ``open(path).convert('RGB')``, torchvision ``Resize([224, 224])`` (bilinear, antialias),
    ``ToTensor``, ImageNet normalisation. The script reads no DICOM; a DICOM is read by the
    standard (:func:`medklip.data.dicom.read_dicom`), rounded to 8 bits, then the same.
``release-rsna``
    The release's RSNA grounding script (``Sample_Zero-Shot_Grounding_RSNA``): DICOM
    ``pixel_array.astype(float) / 255``, ``skimage.exposure.equalize_hist`` (256 bins),
    ``(255 * img).astype(uint8)`` (truncation), PIL RGB, then as ``release-cxr14``. PNG / JPG
    (which the script never reads) as ``release-cxr14``.
``release-padchest``
    PadChest as the MedKLIP authors' follow-up code scores MedKLIP and its successors on it (KAD
    ``A3_CLIP/dataset/test_dataset.py``, MAVL ``Zero-shot_classification/dataset/dataset.py``
    ``Padchest_Dataset``): ``np.array(Image.open(path))`` (the 16-bit PNG values),
    ``img / img.max() * 255`` truncated to uint8, RGB, ``Resize([224, 224])`` **bicubic**, ``ToTensor``,
    ImageNet normalisation.
``medklip``
    medklip's own, for the models it trains: the file read to [0, 1] (DICOM by the standard),
    8-bit grayscale, ``Resize`` bicubic, three channels, ImageNet normalisation.

Official checkpoints get ``release-cxr14``; ``evaluate`` switches a release-profile model to
``release-rsna`` on the RSNA benchmark, as the release scores it.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from medklip.data.dicom import is_dicom, read_raw_pixels
from medklip.data.image_io import (
    DEFAULT_MAX_PIXELS,
    check_file,
    load_raster,
    read_image,
    read_raster_array,
    to_pil,
)
from medklip.data.profiles import PROFILES
from medklip.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    GrayToTensor,
    eval_transform,
    release_eval_transform,
)
from medklip.errors import ImageReadError, MedKLIPError


@dataclass(frozen=True)
class PreprocessConfig:
    """How a model's input is made from an image file (recorded in the model folder)."""

    profile: str = "medklip"
    image_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    """Images whose header announces more pixels are refused before decoding (None: no limit)."""
    fast: bool = False
    """Opt-in faster decoding that changes pixels slightly: JPEGs decoded at a reduced scale
    (libjpeg's DCT scaling, PIL ``draft``), resizing through ``reduce`` first (``reducing_gap``).
    Off by default: the release profiles then give the release's exact tensors."""

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise MedKLIPError(f"unknown preprocessing profile {self.profile!r}; use one of {', '.join(PROFILES)}")
        if self.image_size < 32:
            raise MedKLIPError(f"preprocessing image_size must be at least 32, got {self.image_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise MedKLIPError("preprocessing mean / std need three values each (std > 0)")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise MedKLIPError(f"max_pixels must be positive, got {self.max_pixels}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MedKLIPError(f"unknown preprocessing keys: {', '.join(unknown)}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> PreprocessConfig:
        return PreprocessConfig.from_dict({**self.to_dict(), **changes})


LUT_MAX_RANGE = 1 << 20
"""Integer pixel data spanning at most this many values is equalised through a lookup table."""


def release_equalize(pixels: np.ndarray) -> np.ndarray:
    """``(255 * skimage.exposure.equalize_hist(pixels.astype(float) / 255)).astype(uint8)``, the
    release's RSNA step, to the bit. For integer data (every DICOM) it is computed once per
    distinct value through a lookup table: the same histogram (numpy's bins over the image's
    range, counts as weights), the same interpolation, ten times faster on a radiograph."""
    if not np.issubdtype(pixels.dtype, np.integer) or int(pixels.max()) - int(pixels.min()) >= LUT_MAX_RANGE:
        from skimage import exposure

        return (255 * exposure.equalize_hist(pixels.astype(float) / 255.0)).astype(np.uint8)
    low = int(pixels.min())
    shifted = (pixels.astype(np.int64) - low).ravel()
    counts = np.bincount(shifted)
    present = np.flatnonzero(counts)
    values = (present + low).astype(float) / 255.0
    hist, edges = np.histogram(values, bins=256, range=(values.min(), values.max()), weights=counts[present])
    cdf = np.cumsum(hist)
    cdf = cdf / float(cdf[-1])
    centers = (edges[:-1] + edges[1:]) / 2.0
    table = np.zeros(len(counts), np.uint8)
    table[present] = (255 * np.interp(values, centers, cdf)).astype(np.uint8)
    return table[shifted].reshape(pixels.shape)


def release_rsna_image(path: Path, max_pixels: int | None) -> Image.Image:
    """The release's RSNA ``read_dcm``: raw stored values / 255, histogram equalisation, uint8
    truncation, RGB (no rescale, window or MONOCHROME1 handling, exactly as the release)."""
    pixels = read_raw_pixels(path, max_pixels)
    if pixels.ndim != 2:
        raise ImageReadError(f"{path}: the release's RSNA pipeline reads one grayscale image, got {pixels.shape}")
    return Image.fromarray(release_equalize(pixels))  # "L": the release's RGB is three copies of it


def max_scaled_image(pixels: np.ndarray) -> Image.Image:
    """``Image.fromarray((img / img.max() * 255).astype(uint8))`` of KAD / MAVL's PadChest reader
    (an all-black image stays black); grayscale as ``L``, colour as RGB."""
    top = float(pixels.max()) if pixels.size else 0.0
    scaled = (pixels / top * 255 if top > 0 else np.zeros(pixels.shape)).astype(np.uint8)
    image = Image.fromarray(scaled)
    return image if image.mode == "L" else image.convert("RGB")


class Preprocess:
    """An image file -> the model's input tensor ``[3, S, S]``, by the configured profile.

    ``load`` gives the decoded PIL image (what the profile sees before resizing); ``display``
    gives a float ``[H, W]`` array in [0, 1] for overlays. Picklable, so DataLoader workers
    can run it.
    """

    def __init__(self, config: PreprocessConfig) -> None:
        self.config = config
        medklip = config.profile == "medklip"
        bicubic = medklip or config.profile == "release-padchest"
        self.resample = Image.Resampling.BICUBIC if bicubic else Image.Resampling.BILINEAR
        self.transform: Callable[[Image.Image], torch.Tensor] = (
            eval_transform(config.image_size, config.mean, config.std) if medklip else
            release_eval_transform(config.image_size, config.mean, config.std, bicubic=bicubic))
        self._gray_to_tensor = GrayToTensor(config.mean, config.std)

    def load(self, path: str | Path) -> Image.Image:
        """The decoded image: 8-bit grayscale (``L``) for a grayscale radiograph, else RGB as the
        release's ``convert('RGB')`` makes it (medklip's own profile: grayscale always). The
        release's RGB of a grayscale image is three copies of it; resizing one copy gives the same
        numbers three times faster."""
        path = Path(path)
        check_file(path)
        budget = self.config.max_pixels
        if is_dicom(path):
            if self.config.profile == "release-rsna":
                return release_rsna_image(path, budget)
            return to_pil(read_image(path, budget))
        img = load_raster(path, budget, draft=(self.config.image_size,) * 2 if self.config.fast else None)
        if self.config.profile == "release-padchest":
            with img:
                return max_scaled_image(np.asarray(img))
        if img.mode == "L":
            return img
        with img:
            if self.config.profile == "medklip":
                return to_pil(read_raster_array(img))
            return img.convert("RGB")

    def tensor(self, image: Image.Image) -> torch.Tensor:
        """The model's input ``[3, S, S]`` from a decoded image. A grayscale image is resized once
        and normalised into three channels: the same numbers (to the bit) as the release's
        ``Resize`` / ``ToTensor`` / ``Normalize`` on its RGB copy, or medklip's on ``Grayscale(3)``."""
        if image.mode != "L":
            return self.transform(image)
        size = (self.config.image_size, self.config.image_size)
        return self._gray_to_tensor(image.resize(size, self.resample, reducing_gap=2.0 if self.config.fast else None))

    def __call__(self, path: str | Path) -> torch.Tensor:
        return self.tensor(self.load(path))

    @staticmethod
    def display(image: Image.Image) -> np.ndarray:
        """A decoded image as grayscale float ``[H, W]`` in [0, 1] (for overlays)."""
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0

    def __repr__(self) -> str:
        return f"Preprocess({self.config.profile!r}, image_size={self.config.image_size})"
