"""Ground-truth masks from the datasets' own encodings: boxes, SIIM run-length strings, mask images."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from medklip.errors import MedKLIPError


def boxes_to_mask(boxes: Iterable[tuple[float, float, float, float]], shape: tuple[int, int]) -> np.ndarray:
    """Fill ``(x, y, w, h)`` boxes (pixels, origin top-left) into a boolean mask of ``shape``, as the
    release's RSNA script does: rows ``int(y) : int(y) + int(h)``, columns ``int(x) : int(x) + int(w)``
    (each value truncated on its own)."""
    mask = np.zeros(shape, bool)
    for x, y, bw, bh in boxes:
        y0, x0 = max(0, int(y)), max(0, int(x))
        mask[y0:max(y0, int(y) + int(bh)), x0:max(x0, int(x) + int(bw))] = True
    return mask


def rle_to_mask(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """Decode one SIIM-ACR ``EncodedPixels`` string (``-1`` = empty).

    The Kaggle encoding: pairs ``(gap, length)`` where each gap is counted from the end of the
    previous run, over the image flattened column by column (so the result is transposed).
    """
    text = rle.strip()
    h, w = shape
    flat = np.zeros(h * w, bool)
    if text in ("", "-1"):
        return flat.reshape(h, w)
    try:
        values = np.array(text.split(), dtype=np.int64)
    except ValueError as exc:
        raise MedKLIPError(f"run-length string is not a list of integers: {text[:40]!r}...") from exc
    if len(values) % 2:
        raise MedKLIPError(f"run-length string has an odd number of values ({len(values)})")
    pos = 0
    for gap, length in zip(values[0::2], values[1::2]):
        pos += int(gap)
        if pos + length > flat.size:
            raise MedKLIPError(f"run-length string runs past the end of a {w}x{h} image")
        flat[pos:pos + length] = True
        pos += int(length)
    return flat.reshape(w, h).T


def read_mask_array(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A mask array (any nonzero value is inside), resized nearest to ``shape`` if it differs."""
    arr = np.asarray(array)
    if arr.ndim == 3:
        arr = arr[..., :3].max(-1)
    arr = arr > 0
    if arr.shape != tuple(shape):
        img = Image.fromarray(arr.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.Resampling.NEAREST)
        arr = np.asarray(img) > 0
    return arr


def read_mask_file(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A mask image (any nonzero pixel is inside), resized nearest to ``shape`` if it differs."""
    try:
        with Image.open(path) as img:
            img.load()
            arr = np.asarray(img)
    except (OSError, ValueError) as exc:
        raise MedKLIPError(f"{path}: cannot read the mask image ({exc})") from exc
    return read_mask_array(arr, shape)
