"""Reading radiographs: PNG / JPG / TIFF and DICOM (MONOCHROME1/2, 8-16 bit, rescale and VOI applied).

Every reader returns a float32 array in [0, 1] where bright means dense (as radiographs are
displayed), so all later steps see one convention.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from medklip.errors import MedKLIPError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff", ".bmp"})


class ImageReadError(MedKLIPError):
    """An image file that cannot be read; the message names the file and the reason."""


def is_dicom(path: Path) -> bool:
    if path.suffix.lower() in {".dcm", ".dicom"}:
        return True
    try:
        with path.open("rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def read_dicom(path: Path) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:
        raise ImageReadError(f"{path}: not a readable DICOM file ({exc})") from exc
    if "PixelData" not in ds:
        raise ImageReadError(f"{path}: DICOM file has no pixel data (is it a report or a presentation state?)")
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise ImageReadError(f"{path}: cannot decode the DICOM pixel data ({exc}); "
                             "compressed transfer syntaxes may need pylibjpeg or GDCM") from exc
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3].mean(-1)
    elif arr.ndim != 2:
        raise ImageReadError(f"{path}: expected one 2-D image, got pixel data of shape {arr.shape}")
    arr = apply_modality_lut(arr, ds).astype(np.float32)
    windowed = "WindowCenter" in ds or "VOILUTSequence" in ds
    if windowed:
        arr = apply_voi_lut(arr, ds, prefer_lut=True).astype(np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    if windowed and "WindowCenter" in ds and "VOILUTSequence" not in ds:
        center = float(np.atleast_1d(ds.WindowCenter)[0])
        width = float(np.atleast_1d(ds.WindowWidth)[0])
        lo, hi = center - width / 2, center + width / 2
    out = np.clip((arr - lo) / max(hi - lo, 1e-6), 0, 1)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        out = 1.0 - out  # MONOCHROME1: low values are bright
    return out.astype(np.float32)


def read_raster(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float32)
                top = 65535.0 if arr.max() > 255 else 255.0
                return np.clip(arr / top, 0, 1)
            return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot decode the image ({exc})") from exc


def read_image(path: str | Path) -> np.ndarray:
    """A grayscale radiograph as float32 ``[H, W]`` in [0, 1] (bright = dense)."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: the file is empty")
    return read_dicom(path) if is_dicom(path) else read_raster(path)


def image_shape(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image file without decoding its pixels."""
    path = Path(path)
    try:
        if is_dicom(path):
            import pydicom

            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
            return int(ds.Rows), int(ds.Columns)
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    except Exception as exc:  # pydicom and PIL raise many kinds
        raise ImageReadError(f"{path}: cannot read the image size ({exc})") from exc


def to_pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8), mode="L")


def resize_short_side(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    if min(w, h) <= size:
        return img
    scale = size / min(w, h)
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)


class ImageCache:
    """Resized 8-bit copies of images on disk, so epochs do not decode full-size DICOMs again.

    Keyed by the source path, its size and modification time, and the target size.
    """

    def __init__(self, folder: str | Path, short_side: int = 256) -> None:
        self.folder = Path(folder)
        self.short_side = short_side
        self.folder.mkdir(parents=True, exist_ok=True)

    def _key(self, path: Path) -> Path:
        st = path.stat()
        digest = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{self.short_side}".encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.png"

    def load(self, path: str | Path) -> Image.Image:
        path = Path(path)
        if not path.is_file():
            raise ImageReadError(f"{path}: no such file")
        cached = self._key(path)
        if cached.is_file():
            try:
                with Image.open(cached) as img:
                    return img.convert("L")
            except OSError:
                logger.warning("re-creating damaged cache entry %s", cached)
        img = resize_short_side(to_pil(read_image(path)), self.short_side)
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".png")
        os.close(fd)
        img.save(tmp, compress_level=1)
        os.replace(tmp, cached)
        return img


def load_pil(path: str | Path, cache: ImageCache | None = None) -> Image.Image:
    """An 8-bit grayscale PIL image of ``path`` (through ``cache`` when given)."""
    return cache.load(path) if cache is not None else to_pil(read_image(path))
