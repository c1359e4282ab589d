"""Reading radiographs: PNG / JPG / TIFF / BMP and DICOM (see :mod:`medklip.data.dicom`).

Every reader returns a float32 array in [0, 1] where bright means dense (as radiographs are
displayed), so all later steps see one convention. Every reader checks the image size from the
header before decoding (:data:`DEFAULT_MAX_PIXELS`), so a small file that claims a huge image is
refused, not allocated.
"""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from medklip.data.dicom import check_budget, dicom_shape, header, is_dicom, read_dicom
from medklip.errors import ImageReadError, ImageTooLargeError
from medklip.io_utils import atomic_path

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff", ".bmp"})
DEFAULT_MAX_PIXELS = 25_000_000
"""The default pixel budget: 5,000 x 5,000. Real chest radiographs are at most about
4,300 x 4,300 (18.5 million pixels); ``--max-pixels`` raises it."""

__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_SUFFIXES", "ImageCache", "ImageReadError", "ImageTooLargeError",
           "image_shape", "is_dicom", "load_pil", "open_raster", "read_dicom", "read_image", "read_raster",
           "to_pil"]


def open_raster(path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """A PIL image opened lazily (header only) and checked against the pixel budget; PIL's
    decompression-bomb guard becomes the same per-file error."""
    try:
        with warnings.catch_warnings():  # medklip's budget below decides, not PIL's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{path}: refused as a decompression bomb ({exc})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot decode the image ({exc})") from exc
    try:
        check_budget(path, img.size[1], img.size[0], max_pixels)
    except ImageTooLargeError:
        img.close()
        raise
    return img


def load_raster(path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                draft: tuple[int, int] | None = None) -> Image.Image:
    """:func:`open_raster`, then the pixels decoded (errors name the file). ``draft`` lets a JPEG
    decode at a reduced scale no smaller than that size (faster, slightly different pixels)."""
    img = open_raster(path, max_pixels)
    try:
        if draft is not None and img.format == "JPEG":
            img.draft("L" if img.mode == "L" else "RGB", draft)
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        img.close()
        raise ImageReadError(f"{path}: cannot decode the image ({exc})") from exc
    return img


def read_raster_array(img: Image.Image) -> np.ndarray:
    """A decoded PIL image as grayscale float32 ``[H, W]`` in [0, 1] (16-bit scaled by 65535)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if arr.max() > 255 else 255.0
        return np.clip(arr / top, 0, 1)
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def read_raster(path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    with load_raster(path, max_pixels) as img:
        return read_raster_array(img)


def check_file(path: Path) -> None:
    """A missing, empty or unreadable path as a per-file error."""
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    if size == 0:
        raise ImageReadError(f"{path}: the file is empty")
    if not os.access(path, os.R_OK):
        raise ImageReadError(f"{path}: permission denied (the file is not readable by this user)")


def read_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A grayscale radiograph as float32 ``[H, W]`` in [0, 1] (bright = dense)."""
    path = Path(path)
    check_file(path)
    return read_dicom(path, max_pixels) if is_dicom(path) else read_raster(path, max_pixels)


def image_shape(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image file without decoding its pixels."""
    path = Path(path)
    check_file(path)
    if is_dicom(path):
        _frames, rows, cols, _samples = dicom_shape(header(path), path)
        return rows, cols
    with open_raster(path, None) as img:
        return img.size[1], img.size[0]


def to_pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8), mode="L")


def resize_short_side(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    if min(w, h) <= size:
        return img
    scale = size / min(w, h)
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)


class ImageCache:
    """Resized 8-bit copies of images on disk, so epochs do not decode full-size DICOMs again.

    Keyed by the source path, its size and modification time, the target size and how the file is
    decoded (``tag``: a preprocessing profile's decoder gives other pixels than another's). Each
    copy is an uncompressed ``.npy`` array (uint8, rows x columns): reading one takes ~0.1 ms
    against ~0.9 ms for a PNG, so a training loader's core spends its time on augmentation
    (``benchmarks/speed.py``, loader row); about 77 kB per 256 x 300 image.
    """

    def __init__(self, folder: str | Path, short_side: int = 256,
                 decode: Callable[[Path], Image.Image] | None = None, tag: str = "medklip") -> None:
        self.folder = Path(folder)
        self.short_side = short_side
        self.decode = decode or decode_gray
        self.tag = tag
        self.folder.mkdir(parents=True, exist_ok=True)
        self._resolved: dict[str, str] = {}

    def _key(self, path: Path) -> Path:
        st = path.stat()
        resolved = self._resolved.get(str(path))
        if resolved is None:
            resolved = self._resolved[str(path)] = str(path.resolve())
        key = f"{resolved}|{st.st_size}|{st.st_mtime_ns}|{self.short_side}|{self.tag}"
        digest = hashlib.sha1(key.encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.npy"

    def load(self, path: str | Path) -> Image.Image:
        path = Path(path)
        try:
            cached = self._key(path)
        except OSError:
            raise ImageReadError(f"{path}: no such file") from None
        if cached.is_file():
            try:
                stored = np.load(cached, allow_pickle=False)
                if stored.dtype == np.uint8 and stored.ndim == 2:
                    return Image.fromarray(stored)  # uint8 rows x columns: mode L
            except (OSError, ValueError, EOFError):
                pass
            logger.warning("re-creating damaged cache entry %s", cached)
        img = resize_short_side(self.decode(path).convert("L"), self.short_side)
        with atomic_path(cached) as tmp, tmp.open("wb") as f:
            np.save(f, np.asarray(img, dtype=np.uint8), allow_pickle=False)
        return img


def decode_gray(path: str | Path) -> Image.Image:
    """medklip's decoding: :func:`read_image` as an 8-bit grayscale PIL image."""
    return to_pil(read_image(path))


def load_pil(path: str | Path, cache: ImageCache | None = None) -> Image.Image:
    """An 8-bit grayscale PIL image of ``path`` (through ``cache`` when given)."""
    return cache.load(path) if cache is not None else decode_gray(path)
