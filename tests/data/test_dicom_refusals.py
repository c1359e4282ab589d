"""Every DICOM refusal names the file first and says what is wrong (and, where a user can act,
what to do), to the last word; and the header-level facts the refusals are decided from
(shape, samples, the size a deflated data set may inflate to) checked by hand."""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, JPEG2000Lossless

from medklip.data.dicom import decode_pixels, deflated_size_limit, dicom_shape, header, window
from medklip.data.image_io import read_image
from medklip.errors import ImageReadError, ImageTooLargeError
from tests.data.test_dicom import BT601, ROW, make, rgb_dataset, save

MiB = 1 << 20


def cut(folder: Path, length: int) -> Path:
    """A file cut short after ``length`` bytes (a broken copy or download)."""
    path = folder / f"cut{length}.dcm"
    path.write_bytes(Path(save(make(np.zeros((4, 4))), folder / "whole.dcm")).read_bytes()[:length])
    return path


def deflated(ds: Dataset, path: Path) -> Path:
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return Path(save(ds, path))


def not_deflate(folder: Path) -> Path:
    """A deflated file whose body is not a deflate stream (block type 3 is reserved): the file meta
    up to the transfer syntax's value (22 characters, no padding), then 0xff bytes."""
    path = deflated(make(ROW), folder / "not-deflate.dcm")
    raw = path.read_bytes()
    meta = raw.index(DeflatedExplicitVRLittleEndian.encode()) + len(DeflatedExplicitVRLittleEndian)
    path.write_bytes(raw[:meta] + b"\xff" * 64)
    return path


def lying_header(folder: Path) -> Path:
    """One 16-bit pixel announced, 20 MiB of pixel data deflated to a few KB."""
    ds = make(np.zeros((1, 1)))
    ds.PixelData = bytes(20 * MiB)
    return deflated(ds, folder / "lying.dcm")


def without(ds: Dataset, *keywords: str) -> Dataset:
    for keyword in keywords:
        delattr(ds, keyword)
    return ds


def compressed_garbage(folder: Path) -> Path:
    ds = make(np.zeros((8, 8)))
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51 not a codestream"])
    return Path(save(ds, folder / "garbage.dcm"))


def multi_frame(folder: Path) -> Path:
    ds = make(np.zeros((8, 4)))
    ds.Rows, ds.NumberOfFrames = 4, 2
    return Path(save(ds, folder / "frames.dcm"))


def monochrome_with_three_samples(folder: Path) -> Path:
    ds = rgb_dataset(np.zeros((2, 4, 3)), 8)
    ds.PhotometricInterpretation = "MONOCHROME2"
    return Path(save(ds, folder / "mono3.dcm"))


def palette_without_its_tables(folder: Path) -> Path:
    ds = make(ROW, bits_stored=16, PhotometricInterpretation="PALETTE COLOR")
    return Path(save(ds, folder / "palette.dcm"))


def rgb_with_one_sample(folder: Path) -> Path:
    return Path(save(make(ROW, PhotometricInterpretation="RGB"), folder / "rgb1.dcm"))


REFUSALS: dict[str, tuple[Callable[[Path], Path], dict, type, str]] = {
    # name: (file builder, read_image kwargs, error, the message after "<path>: ")
    "cut in the preamble": (lambda f: cut(f, 100), {}, ImageReadError, r"not a readable DICOM file \(\w+: .+\)"),
    "cut in the header": (lambda f: cut(f, 200), {}, ImageReadError,
                          r"DICOM file has no image: no pixel data or no Rows in its header \(a report, a "
                          r"presentation state, or a file cut short\?\)"),
    "not deflate": (not_deflate, {}, ImageReadError,
                    r"the deflated data set cannot be inflated \(Error -3 while decompressing data: .+\)"),
    "lying header": (lying_header, {}, ImageTooLargeError,
                     r"the deflated data set inflates beyond the 16,777,218 bytes its header announces"),
    "no columns": (lambda f: Path(save(without(make(ROW), "Columns"), f / "columnless.dcm")), {}, ImageReadError,
                   r"the DICOM header has no usable Rows / Columns \(.+\)"),
    "over the budget": (lambda f: Path(save(make(np.zeros((40, 30))), f / "big.dcm")), {"max_pixels": 1000},
                        ImageTooLargeError,
                        r"30 x 40 = 1,200 pixels is over the limit of 1,000 \(real chest radiographs are at most "
                        r"about 4,300 x 4,300\); raise --max-pixels if this image is genuine"),
    "a report": (lambda f: Path(save(without(make(ROW), "PixelData", "Rows"), f / "report.dcm")), {}, ImageReadError,
                 r"DICOM file has no image: no pixel data or no Rows in its header \(a report, a "
                 r"presentation state, or a file cut short\?\)"),
    "rows but no pixels": (lambda f: Path(save(without(make(ROW), "PixelData"), f / "pixelless.dcm")), {},
                           ImageReadError,
                           r"DICOM file has no pixel data \(a report, a presentation state, or a file cut short\?\)"),
    "multi-frame": (multi_frame, {}, ImageReadError,
                    r"a multi-frame DICOM \(2 frames\); medklip reads one 2-D radiograph per file: export the frame "
                    r"you want as its own file"),
    "undecodable, uncompressed": (
        lambda f: Path(save(without(make(ROW), "PhotometricInterpretation"), f / "no-photometric.dcm")), {},
        ImageReadError,
        r"cannot decode the DICOM pixel data \(Explicit VR Little Endian: [^;]*'Photometric Interpretation'[^;]*\)"),
    "undecodable, compressed": (
        compressed_garbage, {}, ImageReadError,
        r"cannot decode the DICOM pixel data \(JPEG 2000 Image Compression \(Lossless Only\): .+\); install "
        r"pylibjpeg, pylibjpeg-libjpeg and pylibjpeg-openjpeg for compressed files"),
    "window width 0": (lambda f: Path(save(make(ROW, WindowCenter=600, WindowWidth=0), f / "w0.dcm")), {},
                       ImageReadError, r"unusable Window Center / Width \(Window Width must be >= 1 for LINEAR, "
                                       r"got 0.0\)"),
    "monochrome, three samples": (monochrome_with_three_samples, {}, ImageReadError,
                                  r"expected one 2-D image, got pixel data of shape \(2, 4, 3\)"),
    "palette without tables": (palette_without_its_tables, {}, ImageReadError,
                               r"cannot apply the palette of a PALETTE COLOR image \(.+\)"),
    "rgb, one sample": (rgb_with_one_sample, {}, ImageReadError,
                        r"expected one RGB image, got pixel data of shape \(1, 7\)"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_every_refusal_names_the_file_first_and_says_what_is_wrong(case: str, tmp_path) -> None:
    build, kwargs, error, message = REFUSALS[case]
    path = build(tmp_path)
    with pytest.raises(error) as caught:
        read_image(path, **kwargs)
    assert re.fullmatch(re.escape(f"{path}: ") + message, str(caught.value), re.DOTALL), str(caught.value)


def test_window_widths_the_standard_forbids_are_refused_in_full() -> None:
    x = np.arange(3, dtype=np.float32)
    with pytest.raises(ValueError) as caught:
        window(x, 1, 0, "LINEAR_EXACT")
    assert str(caught.value) == "Window Width must be > 0 for LINEAR_EXACT, got 0"
    with pytest.raises(ValueError) as caught:
        window(x, 1, 0.5)
    assert str(caught.value) == "Window Width must be >= 1 for LINEAR, got 0.5"
    assert window(x, 1, 1e-3, "linear_exact").tolist() == [0.0, 0.5, 1.0]  # any width > 0 is allowed
    assert window(x, 1, 2).tolist() == window(x, 1, 2, "LINEAR").tolist()  # LINEAR is the default


def test_pixels_without_a_transfer_syntax_give_no_codec_hint(tmp_path) -> None:
    ds = Dataset()  # no file meta at all, and nothing to decode
    with pytest.raises(ImageReadError) as caught:
        decode_pixels(ds, tmp_path / "bare.dcm")
    assert re.fullmatch(re.escape(f"{tmp_path / 'bare.dcm'}: cannot decode the DICOM pixel data (None: ") + r"[^;]+\)",
                        str(caught.value)), str(caught.value)


def test_the_header_stops_before_the_pixels_and_keeps_the_files_syntax(tmp_path) -> None:
    plain = save(make(ROW), tmp_path / "plain.dcm")
    packed = deflated(make(ROW), tmp_path / "packed.dcm")
    for path in (Path(plain), packed):
        ds = header(path)
        assert "PixelData" not in ds and int(ds.Rows) == 1 and int(ds.Columns) == 7
    bare = tmp_path / "meta-no-preamble.dcm"
    pydicom.dcmwrite(bare, make(ROW), enforce_file_format=False)
    assert bare.read_bytes()[:2] == b"\x02\x00"
    assert header(bare).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


def test_shape_and_the_size_a_deflated_set_may_inflate_to() -> None:
    ds = rgb_dataset(np.zeros((2, 5, 3)), 8)
    assert dicom_shape(ds, Path("x.dcm")) == (1, 2, 5, 3)
    del ds.SamplesPerPixel
    assert dicom_shape(ds, Path("x.dcm")) == (1, 2, 5, 1)  # absent: one sample
    ds.SamplesPerPixel, ds.NumberOfFrames = None, None
    assert dicom_shape(ds, Path("x.dcm")) == (1, 2, 5, 1)  # empty: one sample, one frame
    grey = Dataset()
    for bits, per_sample in ((8, 1), (16, 2), (32, 4), (1, 1), (None, 2)):
        grey.BitsAllocated = bits
        assert deflated_size_limit(grey, 3, 5, 3) == 3 * 5 * 3 * per_sample + 16 * MiB, bits
    del grey.BitsAllocated
    assert deflated_size_limit(grey, 3, 5, 1) == 3 * 5 * 2 + 16 * MiB  # absent: 16 bits


def test_narrow_colour_images_and_palettes_at_the_8_bit_edge(tmp_path) -> None:
    """An RGB image two pixels wide is still an image; a palette whose largest entry is 255 is
    8-bit, one whose largest entry is 256 is 16-bit (the luma is scaled by that range)."""
    rgb = np.array([[[255, 0, 0], [10, 20, 30]]], np.uint8)
    out = read_image(save(rgb_dataset(rgb, 8), tmp_path / "narrow.dcm"))[0]
    np.testing.assert_allclose(out, (rgb[0] @ BT601) / 255, atol=1e-6)
    index = np.array([[0, 1, 2, 3]])
    for top, scale in ((255, 255.0), (256, 65535.0)):
        ds = make(index, bits_stored=16, PhotometricInterpretation="PALETTE COLOR")
        lut = np.array([0, 100, 200, top], "<u2")
        for colour in ("Red", "Green", "Blue"):
            setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [4, 0, 16])
            setattr(ds, f"{colour}PaletteColorLookupTableData", lut.tobytes())
        out = read_image(save(ds, tmp_path / f"palette{top}.dcm"))[0]
        np.testing.assert_allclose(out, lut / scale, atol=1e-6)
