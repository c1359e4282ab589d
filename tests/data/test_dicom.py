"""DICOM read per the standard, once: each case built with pydicom (or taken from pydicom's test
files) and checked against values computed here from the standard's formulas (PS3.3 C.11)."""
from __future__ import annotations

import time

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from medklip.data.dicom import is_dicom, window
from medklip.data.image_io import image_shape, read_image
from medklip.errors import ImageTooLargeError


def make(pixels: np.ndarray, bits_stored: int = 12, signed: bool = False, photometric: str = "MONOCHROME2",
         **tags) -> Dataset:
    """A single-frame grayscale data set (16 bits allocated) holding ``pixels`` as stored values."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    for key, value in tags.items():
        setattr(ds, key, value)
    raw = pixels.astype("<i2" if signed else "<u2")
    if signed and bits_stored < 16:  # two's complement in bits_stored bits
        raw = (raw.astype(np.int32) & ((1 << bits_stored) - 1)).astype("<u2")
    ds.PixelData = raw.tobytes()
    return ds


def save(ds: Dataset, path) -> str:
    ds.save_as(path, enforce_file_format=True)
    return str(path)


def with_voi_lut(ds: Dataset, lut: np.ndarray) -> Dataset:
    """``ds`` with a VOI LUT Sequence of one 16-bit LUT over the stored values 0..len(lut)-1."""
    item = Dataset()
    item.LUTDescriptor = [len(lut), 0, 16]
    item.add_new(0x00283006, "US", lut.astype("<u2").tolist())  # LUT Data
    ds.VOILUTSequence = [item]
    return ds


def rgb_dataset(values: np.ndarray, bits_stored: int) -> Dataset:
    """A single-frame RGB data set (interleaved) of ``values`` ``[H, W, 3]``: 8 bits allocated for
    8 stored, else 16."""
    ds = make(np.zeros(values.shape[:2]))
    ds.BitsAllocated = 8 if bits_stored == 8 else 16
    ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.PixelData = values.astype(np.uint8 if bits_stored == 8 else "<u2").tobytes()
    return ds


BT601 = np.array([0.299, 0.587, 0.114])
"""ITU-R BT.601 luma weights (PIL's "L")."""


def linear_window(x, c, w):
    """PS3.3 C.11.2.1.2.1, y_min 0, y_max 1."""
    x = np.asarray(x, float)
    out = ((x - (c - 0.5)) / (w - 1) + 0.5)
    return np.where(x <= c - 0.5 - (w - 1) / 2, 0.0, np.where(x > c - 0.5 + (w - 1) / 2, 1.0, out))


ROW = np.array([[0, 300, 600, 900, 1200, 2000, 4095]])


def test_window_is_applied_once(tmp_path) -> None:
    """The issue's case: 12-bit MONOCHROME2, WC 600 / WW 1200 -> 0, .25, .5, .75, 1, 1, 1."""
    out = read_image(save(make(ROW, WindowCenter=600, WindowWidth=1200), tmp_path / "w.dcm"))
    np.testing.assert_allclose(out[0], linear_window(ROW[0], 600, 1200), atol=1e-6)
    np.testing.assert_allclose(out[0], [0, 0.25, 0.5, 0.75, 1, 1, 1], atol=1e-3)


def test_rescale_then_window_on_signed_data(tmp_path) -> None:
    stored = np.array([[-2000, -1000, -500, 0, 500, 1000, 2047]])
    ds = make(stored, bits_stored=12, signed=True, RescaleSlope=2, RescaleIntercept=-1024,
              WindowCenter=-600, WindowWidth=1500)
    out = read_image(save(ds, tmp_path / "ct.dcm"))
    np.testing.assert_allclose(out[0], linear_window(stored[0] * 2 - 1024, -600, 1500), atol=1e-6)


@pytest.mark.parametrize("function", ["LINEAR_EXACT", "SIGMOID"])
def test_voi_lut_functions(tmp_path, function: str) -> None:
    ds = make(ROW, WindowCenter=600, WindowWidth=1200, VOILUTFunction=function)
    out = read_image(save(ds, tmp_path / "f.dcm"))[0]
    x = ROW[0].astype(float)
    if function == "LINEAR_EXACT":
        expected = np.clip((x - 600) / 1200 + 0.5, 0, 1)
    else:
        expected = 1 / (1 + np.exp(-4 * (x - 600) / 1200))
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert window(np.array([600.0]), 600, 1200, "linear_exact")[0] == pytest.approx(0.5)


def test_voi_lut_sequence_and_only_one_voi_step(tmp_path) -> None:
    lut = (np.sqrt(np.arange(4096) / 4095) * 65535).astype("<u2")
    ds = with_voi_lut(make(ROW), lut)
    ds.WindowCenter, ds.WindowWidth = 100, 10  # present too: the LUT is the one VOI step
    out = read_image(save(ds, tmp_path / "lut.dcm"))[0]
    np.testing.assert_allclose(out, lut[ROW[0]] / 65535, atol=1e-6)


def test_monochrome1_is_inverted_after_the_window(tmp_path) -> None:
    out = read_image(save(make(ROW, photometric="MONOCHROME1", WindowCenter=600, WindowWidth=1200),
                          tmp_path / "m1.dcm"))
    np.testing.assert_allclose(out[0], 1 - linear_window(ROW[0], 600, 1200), atol=1e-6)


def test_without_voi_the_data_range_is_used(tmp_path) -> None:
    out = read_image(save(make(ROW), tmp_path / "plain.dcm"))[0]
    np.testing.assert_allclose(out, ROW[0] / 4095, atol=1e-6)


def test_bits_stored_below_bits_allocated_ignores_the_high_bits(tmp_path) -> None:
    ds = make(ROW, WindowCenter=600, WindowWidth=1200)
    raw = np.frombuffer(ds.PixelData, "<u2") | 0xF000  # overlay bits above the 12 stored ones
    ds.PixelData = raw.astype("<u2").tobytes()
    out = read_image(save(ds, tmp_path / "hi.dcm"))[0]
    np.testing.assert_allclose(out, linear_window(ROW[0], 600, 1200), atol=1e-6)


def test_a_file_without_preamble_or_suffix_is_read(tmp_path) -> None:
    ds = make(ROW, WindowCenter=600, WindowWidth=1200)
    del ds.file_meta
    path = tmp_path / "image_without_suffix"
    pydicom.dcmwrite(path, ds, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert path.read_bytes()[128:132] != b"DICM" and is_dicom(path)
    np.testing.assert_allclose(read_image(path)[0], linear_window(ROW[0], 600, 1200), atol=1e-6)


def test_deflated_and_rle(tmp_path) -> None:
    expected = linear_window(ROW[0], 600, 1200)
    ds = make(ROW, WindowCenter=600, WindowWidth=1200)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    np.testing.assert_allclose(read_image(save(ds, tmp_path / "d.dcm"))[0], expected, atol=1e-6)
    ds = make(ROW, WindowCenter=600, WindowWidth=1200)
    ds.compress(RLELossless)
    np.testing.assert_allclose(read_image(save(ds, tmp_path / "r.dcm"))[0], expected, atol=1e-6)


@pytest.mark.parametrize("compressed,reference", [
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),  # JPEG-LS lossless
    ("MR_small_jp2klossless.dcm", "MR_small.dcm"),  # JPEG 2000 lossless
    ("MR_small_RLE.dcm", "MR_small.dcm"),  # RLE
    ("RG1_J2KR.dcm", "RG1_UNCR.dcm"),  # a real chest CR, JPEG 2000
])
def test_compressed_transfer_syntaxes_decode_to_the_uncompressed_values(compressed: str, reference: str) -> None:
    np.testing.assert_array_equal(read_image(get_testdata_file(compressed)), read_image(get_testdata_file(reference)))


def test_jpeg_lossless_process_14() -> None:
    path = get_testdata_file("JPGLosslessP14SV1_1s_1f_8b.dcm")
    ds = pydicom.dcmread(path)
    out = read_image(path)
    expected = linear_window(ds.pixel_array, float(ds.WindowCenter), float(ds.WindowWidth))
    assert out.shape == (768, 1024)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_jpeg_baseline(tmp_path) -> None:
    import io

    from PIL import Image

    gray = (np.add.outer(np.arange(64), np.arange(80)) * 2).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, format="JPEG", quality=95)
    ds = make(gray, bits_stored=8)
    ds.BitsAllocated = 8
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    out = read_image(save(ds, tmp_path / "jpeg.dcm"))
    decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())), float)
    expected = (decoded - decoded.min()) / (decoded.max() - decoded.min())  # no window: the data range
    np.testing.assert_allclose(out, expected, atol=3 / 255)  # two JPEG decoders may differ by a level


def test_a_huge_image_is_refused_from_its_header(tmp_path) -> None:
    """A 10,000 x 10,000 deflated DICOM is ~200 KB; it is refused without inflating it."""
    ds = make(np.zeros((10_000, 10_000), np.uint16))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    path = save(ds, tmp_path / "bomb.dcm")
    del ds
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="10000 x 10000 = 100,000,000 pixels is over the limit"):
        read_image(path)
    assert time.perf_counter() - start < 5  # the memory it did not take: test_bombs_in_a_fresh_process.py
    assert image_shape(path) == (10_000, 10_000)
    small = read_image(save(make(ROW), tmp_path / "ok.dcm"), max_pixels=7)
    assert small.shape == (1, 7)
    with pytest.raises(ImageTooLargeError):
        read_image(tmp_path / "ok.dcm", max_pixels=6)


def test_linear_window_at_its_edges_and_the_threshold() -> None:
    """PS3.3 C.11.2.1.2.1 at the pixels around both ends of a window (c 100, w 11: 0 up to 94.5,
    1 above 104.5), width 1 as a threshold at c - 0.5, and the widths the standard forbids."""
    x = np.arange(90, 110, dtype=np.float32)
    np.testing.assert_allclose(window(x, 100, 11), linear_window(x, 100, 11), atol=1e-6)
    assert window(np.array([94.0, 95.0, 104.0, 105.0]), 100, 11).tolist() == pytest.approx([0, 0.05, 0.95, 1])
    assert window(np.array([99.0, 99.5, 100.0]), 100, 1).tolist() == [0.0, 0.0, 1.0]
    assert window(np.array([0.0, 6.0, 20.0]), 10, 8, "LINEAR_EXACT").tolist() == pytest.approx([0, 0.0, 1])
    assert window(np.array([10.0]), 10, 8, "sigmoid")[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="must be >= 1 for LINEAR"):
        window(x, 100, 0.5)
    with pytest.raises(ValueError, match="must be > 0 for LINEAR_EXACT"):
        window(x, 100, 0, "LINEAR_EXACT")
    values = np.array([1, 2], np.uint16)
    window(values, 1, 2)
    assert values.tolist() == [1, 2]  # the caller's array is not overwritten


def test_dicom_recognised_from_its_first_bytes(tmp_path) -> None:
    """``DICM`` after the preamble, or a data set without one that starts with a group 0002 / 0008
    element (explicit VR letters, or implicit VR's 4-byte length); anything else is not DICOM."""
    from medklip.data.dicom import looks_like_dicom

    element = (0x0008).to_bytes(2, "little") + (0x0005).to_bytes(2, "little")
    assert looks_like_dicom(b"\0" * 128 + b"DICM")
    assert looks_like_dicom(element + b"CS" + b"\x0a\0")  # explicit VR
    assert looks_like_dicom(element + b"\x0a\0\0\0")  # implicit VR: a 4-byte length
    assert looks_like_dicom((0x0002).to_bytes(2, "little") + b"\0\0UL\x04\0")
    assert not looks_like_dicom(element[:4] + b"CS")  # too short to tell
    assert not looks_like_dicom((0x0010).to_bytes(2, "little") + b"\x10\0PN\x04\0")  # patient group first
    assert not looks_like_dicom((0x0008).to_bytes(2, "little") + (0x0100).to_bytes(2, "little") + b"SH\x04\0")
    assert not looks_like_dicom(element + b"\x0a\x00\x01\x00")  # neither letters nor a short length
    assert not looks_like_dicom(element + b"\x0aA\x01\x00")  # one letter is not a VR
    assert not looks_like_dicom(b"\x89PNG\r\n\x1a\n" + b"\0" * 140)
    png = tmp_path / "image"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert not is_dicom(png) and not is_dicom(tmp_path / "missing") and is_dicom(tmp_path / "missing.DCM")
    assert is_dicom(tmp_path / "missing.dicom")  # by its suffix alone


def test_header_fields_that_are_empty_missing_or_many(tmp_path) -> None:
    """An empty Number of Frames means 1; a window given twice uses the first; a flat image without
    VOI is all 0. (The refusals -- no Rows, no Columns, a file cut short, a zero window width -- are
    matched in full in test_dicom_refusals.py.)"""
    ds = make(ROW, WindowCenter=[600, 50], WindowWidth=[1200, 10])
    ds.NumberOfFrames = ""
    out = read_image(save(ds, tmp_path / "two-windows.dcm"))[0]
    np.testing.assert_allclose(out, linear_window(ROW[0], 600, 1200), atol=1e-6)
    flat = read_image(save(make(np.full((2, 3), 700)), tmp_path / "flat.dcm"))
    assert flat.shape == (2, 3) and not flat.any()


def test_colour_images_become_their_luma(tmp_path) -> None:
    """RGB (8 and 12 bits stored) -> ITU-R BT.601 luma over the stored range."""
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [10, 20, 30]]], np.uint8)
    for bits, scale in ((8, 1), (12, 16)):
        values = rgb.astype(np.uint16) * scale
        out = read_image(save(rgb_dataset(values, bits), tmp_path / f"rgb{bits}.dcm"))[0]
        expected = (values[0] @ BT601) / (2 ** bits - 1)
        np.testing.assert_allclose(out, expected, atol=1e-6)


def test_voi_branches_the_first_tests_missed(tmp_path) -> None:
    """A VOI LUT over rescaled (float) values and with entries below its depth's top; a Window
    Center without a Width (min-max then); min-max over data that does not start at 0; a
    LINEAR_EXACT window narrower than 1. (Pixel data without a Photometric Interpretation is refused
    without the codec hint: test_dicom_refusals.py.)"""
    lut = (np.arange(4096) // 4).astype("<u2")  # entries up to 1023 of a 16-bit depth
    ds = with_voi_lut(make(ROW, RescaleSlope=1, RescaleIntercept=0), lut)
    out = read_image(save(ds, tmp_path / "lut-rescaled.dcm"))[0]
    np.testing.assert_allclose(out, lut[ROW[0]] / 65535, atol=1e-7)
    stored = np.array([[100, 1100, 2100, 4100]])
    centre_only = make(stored, bits_stored=16, WindowCenter=600)
    np.testing.assert_allclose(read_image(save(centre_only, tmp_path / "centre-only.dcm"))[0],
                               (stored[0] - 100) / 4000, atol=1e-6)
    assert window(np.array([9.0, 10.0, 10.2, 11.0]), 10, 0.5, "LINEAR_EXACT").tolist() == pytest.approx(
        [0, 0.5, 0.9, 1])


def test_raw_pixels_and_files_without_a_preamble_that_keep_their_meta(tmp_path) -> None:
    """``read_raw_pixels`` gives the stored values with nothing applied (the release's RSNA read);
    a data set written without the preamble but with its file meta (explicit VR) is read by that
    meta, not as implicit VR."""
    from medklip.data.dicom import read_raw_pixels

    ds = make(ROW, WindowCenter=600, WindowWidth=1200, RescaleSlope=2)
    assert np.array_equal(read_raw_pixels(save(ds, tmp_path / "raw.dcm")), ROW)
    path = tmp_path / "meta-no-preamble.dcm"
    pydicom.dcmwrite(path, make(ROW, WindowCenter=600, WindowWidth=1200), enforce_file_format=False)
    raw = path.read_bytes()
    assert raw[128:132] != b"DICM" and raw[:2] == b"\x02\x00"  # starts with the meta group
    np.testing.assert_allclose(read_image(path)[0], linear_window(ROW[0], 600, 1200), atol=1e-6)


@pytest.mark.parametrize("name", ["examples_palette.dcm", "gdcm-US-ALOKA-16.dcm"])
def test_palette_colour_through_its_lookup_table_to_luma(name: str) -> None:
    """PALETTE COLOR: the palette applied (PS3.3 C.7.6.3.1.5), then BT.601 luma over the palette's
    entry range (8 or 16 bits); pydicom's own test files, 8- and 16-bit stored values."""
    from pydicom.pixels.processing import apply_color_lut

    path = get_testdata_file(name)
    ds = pydicom.dcmread(path)
    rgb = apply_color_lut(ds.pixel_array, ds).astype(np.float64)
    top = 65535.0 if rgb.max() > 255 else 255.0
    expected = (rgb @ BT601) / top
    out = read_image(path)
    assert out.shape == ds.pixel_array.shape and out.std() > 0.01
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_voi_lut_over_values_between_its_entries(tmp_path) -> None:
    """Rescaled values that fall between LUT entries (slope 0.5) index the LUT at the nearest entry."""
    lut = (np.arange(4096) * 16).astype("<u2")
    ds = with_voi_lut(make(ROW, RescaleSlope=0.5, RescaleIntercept=0), lut)
    out = read_image(save(ds, tmp_path / "half.dcm"))[0]
    np.testing.assert_allclose(out, lut[np.rint(ROW[0] * 0.5).astype(int)] / 65535, atol=1e-7)
