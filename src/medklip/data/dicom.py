"""DICOM radiographs read as the standard displays them, once, within a pixel budget.

Grayscale pipeline (PS3.3 C.11 / C.7.6.3.1.2):

1. decode the pixel data (uncompressed, deflated, RLE, JPEG baseline / extended / lossless,
   JPEG-LS, JPEG 2000: pydicom with its pylibjpeg plugins); signed data and Bits Stored <
   Bits Allocated are handled by pydicom's decoders;
2. the Modality LUT: Rescale Slope / Intercept or a Modality LUT Sequence;
3. one VOI step into [0, 1]: the VOI LUT Sequence when present (scaled by its entry depth),
   else the first window (Window Center / Width with the VOI LUT Function: LINEAR,
   LINEAR_EXACT or SIGMOID), else the data's own min-max;
4. MONOCHROME1 inverted, so bright always means dense.

Colour images (RGB, YBR, palette) are converted to RGB and reduced to luminance. Image size is
checked from the header, before any pixel is decoded, so a small file that claims a huge image
(or a deflate bomb) is refused without allocating it.
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

from medklip.errors import ImageReadError, ImageTooLargeError

DEFLATED = "1.2.840.10008.1.2.1.99"
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
_HEADER_INFLATE_LIMIT = 1 << 20
"""Bytes of a deflated data set inflated to read the header (everything before Pixel Data)."""
_ELEMENT_START_GROUPS = (0x0002, 0x0008)
"""Groups a data set without the 128-byte preamble starts with (file meta, or identifying)."""


def looks_like_dicom(head: bytes) -> bool:
    """Whether the first bytes of a file are DICOM: ``DICM`` after the 128-byte preamble, or a
    data set written without preamble (it starts with a group 0002 / 0008 element)."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    group = int.from_bytes(head[0:2], "little")
    element = int.from_bytes(head[2:4], "little")
    return group in _ELEMENT_START_GROUPS and element < 0x0100 and (head[4:6].isalpha() or head[6:8] == b"\0\0")


def is_dicom(path: Path) -> bool:
    """DICOM by suffix or by content (files without a suffix, or without the preamble)."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as f:
            return looks_like_dicom(f.read(132))
    except OSError:
        return False


def _read(path: Path, stop_before_pixels: bool) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        try:
            return pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels)
        except InvalidDicomError:  # no preamble / no file meta: read if the bytes are DICOM
            with path.open("rb") as f:
                if not looks_like_dicom(f.read(132)):
                    raise
            ds = pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels, force=True)
            if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
                from pydicom.dataset import FileMetaDataset
                from pydicom.uid import ImplicitVRLittleEndian

                ds.file_meta = getattr(ds, "file_meta", None) or FileMetaDataset()
                ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian  # PS3.5 A.1: the default
            return ds
    except ImageReadError:
        raise
    except Exception as exc:  # pydicom raises many kinds for a damaged file
        raise ImageReadError(f"{path}: not a readable DICOM file ({type(exc).__name__}: {exc})") from exc


def _transfer_syntax(path: Path) -> str:
    import pydicom

    try:
        meta = pydicom.filereader.read_file_meta_info(str(path))
        return str(meta.get("TransferSyntaxUID", ""))
    except Exception:  # no file meta: not deflated (deflate needs the meta to say so)
        return ""


def _read_deflated(path: Path, max_bytes: int | None) -> Any:
    """A deflated data set, inflated at most ``max_bytes`` (None: only the header).

    pydicom inflates the whole stream before it reads a single element; a 1 MB file can hold a
    20,000 x 20,000 image. Here the header is read from the first MiB, the size checked, and the
    rest inflated only up to the size the header announces."""
    import pydicom
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import ExplicitVRLittleEndian

    meta = pydicom.filereader.read_file_meta_info(str(path))
    raw = path.read_bytes()
    start = 132 if raw[128:132] == b"DICM" else 0
    meta_end = _meta_end(raw, start)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    limit = _HEADER_INFLATE_LIMIT if max_bytes is None else max_bytes
    try:
        body = inflater.decompress(raw[meta_end:], limit)
    except zlib.error as exc:
        raise ImageReadError(f"{path}: the deflated data set cannot be inflated ({exc})") from exc
    if max_bytes is not None and inflater.unconsumed_tail:
        raise ImageTooLargeError(f"{path}: the deflated data set inflates beyond the {max_bytes:,} bytes its "
                                 "header announces")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    buffer.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=False)
    buffer.write(body)
    buffer.seek(0)
    try:
        ds = pydicom.dcmread(buffer, stop_before_pixels=max_bytes is None)
    except Exception as exc:
        raise ImageReadError(f"{path}: not a readable DICOM file ({type(exc).__name__}: {exc})") from exc
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _meta_end(raw: bytes, start: int) -> int:
    """Offset just past the file meta group (0002), which is always explicit VR little endian."""
    pos = start
    while pos + 8 <= len(raw) and int.from_bytes(raw[pos:pos + 2], "little") == 0x0002:
        vr = raw[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV"):
            pos += 12 + int.from_bytes(raw[pos + 8:pos + 12], "little")
        else:
            pos += 8 + int.from_bytes(raw[pos + 6:pos + 8], "little")
    return pos


def header(path: Path) -> Any:
    """The data set without its pixel data (cheap for every transfer syntax)."""
    if _transfer_syntax(path) == DEFLATED:
        return _read_deflated(path, None)
    return _read(path, stop_before_pixels=True)


def dicom_shape(ds: Any, path: Path) -> tuple[int, int, int, int]:
    """``(frames, rows, columns, samples per pixel)`` from a header."""
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        rows, cols = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ImageReadError(f"{path}: the DICOM header has no usable Rows / Columns ({exc})") from exc
    return frames, rows, cols, samples


def check_budget(path: Path, height: int, width: int, max_pixels: int | None) -> None:
    """Refuse an image over ``max_pixels`` before it is decoded."""
    if max_pixels is not None and height * width > max_pixels:
        raise ImageTooLargeError(
            f"{path}: {width} x {height} = {height * width:,} pixels is over the limit of {max_pixels:,} "
            "(real chest radiographs are at most about 4,300 x 4,300); raise --max-pixels if this image is genuine")


def deflated_size_limit(ds: Any, rows: int, cols: int, samples: int) -> int:
    """Bytes a deflated data set may inflate to: the pixel data its header announces (whole bytes
    per sample of Bits Allocated, 16 bits when absent, at least one) plus 16 MiB for the elements
    around it."""
    bits = int(ds.get("BitsAllocated", 16) or 16)
    return rows * cols * samples * max(1, bits // 8) + (16 << 20)


def read_dicom_dataset(path: Path, max_pixels: int | None) -> Any:
    """The full data set of a single-frame image within the pixel budget."""
    ds = header(path)
    if "Rows" not in ds:  # the header holds no pixel data element (stop_before_pixels): dimensions tell
        raise ImageReadError(f"{path}: DICOM file has no image: no pixel data or no Rows in its header (a "
                             "report, a presentation state, or a file cut short?)")
    frames, rows, cols, samples = dicom_shape(ds, path)
    if frames > 1:
        raise ImageReadError(f"{path}: a multi-frame DICOM ({frames} frames); medklip reads one 2-D radiograph per "
                             "file: export the frame you want as its own file")
    check_budget(path, rows, cols, max_pixels)
    if _transfer_syntax(path) == DEFLATED:
        ds = _read_deflated(path, deflated_size_limit(ds, rows, cols, samples))
    else:
        ds = _read(path, stop_before_pixels=False)
    if "PixelData" not in ds:
        raise ImageReadError(f"{path}: DICOM file has no pixel data (a report, a presentation state, or a file cut "
                             "short?)")
    return ds


def decode_pixels(ds: Any, path: Path) -> np.ndarray:
    """The stored pixel values (pydicom's decoders: every supported transfer syntax)."""
    try:
        return ds.pixel_array
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax)
        hint = ("; install pylibjpeg, pylibjpeg-libjpeg and pylibjpeg-openjpeg for compressed files"
                if getattr(syntax, "is_compressed", False) else "")
        raise ImageReadError(f"{path}: cannot decode the DICOM pixel data ({name}: {exc}){hint}") from exc


def window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """The VOI window of PS3.3 C.11.2.1.2 into [0, 1] (y_min 0, y_max 1), computed in float32 in
    place (one image-sized buffer)."""
    out = np.array(values, dtype=np.float32)  # a copy we may overwrite
    function = function.upper()
    if function == "SIGMOID":
        out -= center
        out *= -4.0 / width
        np.exp(out, out=out)
        out += 1.0
        return np.reciprocal(out, out=out)
    if function == "LINEAR_EXACT":
        if width <= 0:
            raise ValueError(f"Window Width must be > 0 for LINEAR_EXACT, got {width}")
        out -= center
        out /= width
        out += 0.5
        return np.clip(out, 0.0, 1.0, out=out)
    if width < 1:
        raise ValueError(f"Window Width must be >= 1 for LINEAR, got {width}")
    if width == 1:  # a threshold: below or at the centre - 0.5 is y_min
        return (out > center - 0.5).astype(np.float32)
    # inside the window the standard's line; at or below its lower end 0, above its upper end 1 --
    # the line is <= 0 and > 1 exactly there, so clipping it is the standard's piecewise function
    out -= center - 0.5
    out /= width - 1
    out += 0.5
    return np.clip(out, 0.0, 1.0, out=out)


def _first(value: Any) -> float:
    return float(value[0]) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else float(value)


def voi_to_unit(values: np.ndarray, ds: Any, path: Path) -> np.ndarray:
    """One VOI step (LUT sequence, else first window, else min-max) into [0, 1]."""
    from pydicom.pixels import apply_voi

    if ds.get("VOILUTSequence"):
        item = ds.VOILUTSequence[0]
        depth = int(item.LUTDescriptor[2])
        index = np.rint(values).astype(np.int64) if not np.issubdtype(values.dtype, np.integer) else values
        mapped = apply_voi(index, ds, index=0).astype(np.float32)
        top = max(float(2 ** depth - 1), float(mapped.max()))
        mapped /= top
        return np.clip(mapped, 0.0, 1.0, out=mapped)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
            return window(values, center, width, str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR"))
        except (TypeError, ValueError) as exc:
            raise ImageReadError(f"{path}: unusable Window Center / Width ({exc})") from exc
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, np.float32)
    out = np.array(values, dtype=np.float32)
    out -= lo
    out /= hi - lo
    return out


def read_dicom(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """A DICOM radiograph as float32 ``[H, W]`` in [0, 1], bright = dense (see the module doc)."""
    from pydicom.pixels import apply_modality_lut
    from pydicom.pixels.processing import apply_color_lut

    path = Path(path)
    ds = read_dicom_dataset(path, max_pixels)
    arr = decode_pixels(ds, path)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric.startswith("MONOCHROME"):
        if arr.ndim != 2:
            raise ImageReadError(f"{path}: expected one 2-D image, got pixel data of shape {arr.shape}")
        values = apply_modality_lut(arr, ds)
        del arr
        if values.dtype == np.float64:  # the rescale's output: float32 holds 16-bit data exactly
            values = values.astype(np.float32)
        out = voi_to_unit(values, ds, path)
        del values
        if photometric == "MONOCHROME1":
            np.subtract(1.0, out, out=out)
        return out.astype(np.float32, copy=False)
    if photometric == "PALETTE COLOR":  # (pydicom's decoders already give YBR data as RGB)
        try:
            arr = apply_color_lut(arr, ds)
        except Exception as exc:
            raise ImageReadError(f"{path}: cannot apply the palette of a PALETTE COLOR image ({exc})") from exc
    if arr.ndim != 3 or arr.shape[-1] < 3:
        raise ImageReadError(f"{path}: expected one {photometric} image, got pixel data of shape {arr.shape}")
    rgb = arr[..., :3].astype(np.float64)
    bits = int(ds.get("BitsStored", 8) or 8) if photometric != "PALETTE COLOR" else (16 if rgb.max() > 255 else 8)
    top = float(2 ** bits - 1)
    gray = rgb @ np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma, as PIL's "L"
    return np.clip(gray / top, 0.0, 1.0).astype(np.float32)


def read_raw_pixels(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """The stored pixel values with nothing applied (``pixel_array``), within the budget: what
    the release's RSNA script reads."""
    path = Path(path)
    ds = read_dicom_dataset(path, max_pixels)
    return decode_pixels(ds, path)
