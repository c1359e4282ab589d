from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from medklip.data.image_io import ImageCache, ImageReadError, read_image


def rg1_path() -> str:
    import data_store  # the PyPI package pydicom-data

    return os.path.join(os.path.dirname(data_store.__file__), "data", "RG1_UNCR.dcm")


def test_real_monochrome1_chest_dicom_is_inverted() -> None:
    import pydicom

    ds = pydicom.dcmread(rg1_path())
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.BitsStored == 15
    img = read_image(rg1_path())
    assert img.shape == (1955, 1841) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0
    raw = ds.pixel_array.astype(np.float64)
    # MONOCHROME1: a high stored value is dark, so the output must fall where the raw value rises
    assert np.corrcoef(raw[::16, ::16].ravel(), img[::16, ::16].ravel())[0, 1] < -0.9


def test_png_8_and_16_bit(tmp_path) -> None:
    a = (np.arange(64 * 64).reshape(64, 64) % 256).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    np.testing.assert_allclose(read_image(tmp_path / "a.png"), a / 255.0, atol=1e-6)
    b = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(b).save(tmp_path / "b.png")
    out = read_image(tmp_path / "b.png")
    assert out.max() <= 1 and abs(out.max() - b.max() / 65535) < 1e-3
    Image.fromarray(np.stack([a] * 3, -1)).save(tmp_path / "c.jpg")
    assert read_image(tmp_path / "c.jpg").shape == (64, 64)


@pytest.mark.parametrize("content,match", [
    (b"", "empty"),
    (b"this is a text file, not an image", "cannot decode"),
])
def test_bad_files_name_the_file(tmp_path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=match) as err:
        read_image(path)
    assert "bad.png" in str(err.value)


def test_truncated_png_and_missing_file(tmp_path) -> None:
    Image.fromarray(np.zeros((200, 200), np.uint8) + 7).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="t.png"):
        read_image(tmp_path / "t.png")
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.png")


def test_dicom_without_pixel_data(tmp_path) -> None:
    import pydicom

    ds = pydicom.dcmread(rg1_path())
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm")
    with pytest.raises(ImageReadError, match="no pixel data"):
        read_image(tmp_path / "nopix.dcm")


def test_image_cache(tmp_path) -> None:
    cache = ImageCache(tmp_path / "cache", short_side=256)
    first = cache.load(rg1_path())
    assert min(first.size) == 256
    files = list((tmp_path / "cache").rglob("*.npy"))
    assert len(files) == 1
    second = cache.load(rg1_path())
    assert second.mode == "L" and np.array_equal(np.asarray(first), np.asarray(second))
    for damage in (b"", files[0].read_bytes()[:100], b"\x93NUMPY garbage"):  # truncated / not an array
        files[0].write_bytes(damage)
        again = cache.load(rg1_path())
        assert np.array_equal(np.asarray(again), np.asarray(first))
    np.save(files[0], np.zeros((3, 4, 2), dtype=np.float32))  # an array of the wrong kind
    assert np.array_equal(np.asarray(cache.load(rg1_path())), np.asarray(first))
    assert np.load(files[0]).dtype == np.uint8


def test_tiff_8_and_16_bit_read_like_png(tmp_path) -> None:
    """TIFF (listed in IMAGE_SUFFIXES) reads to the same array as the same pixels in a PNG."""
    rng = np.random.default_rng(3)
    for dtype, top in ((np.uint8, 255), (np.uint16, 65535)):
        pixels = (rng.random((40, 30)) * top).astype(dtype)
        Image.fromarray(pixels).save(tmp_path / "x.tif")
        Image.fromarray(pixels).save(tmp_path / "x.png")
        tif, png = read_image(tmp_path / "x.tif"), read_image(tmp_path / "x.png")
        assert tif.shape == (40, 30) and np.array_equal(tif, png)
        assert not np.array_equal(tif, read_image(tmp_path / "x.png")[::-1])  # the control: content, not shape
