"""Preprocessing belongs to the model: the release profiles give exactly the tensors of the
release's test scripts (built here the way the release builds them), and the profile travels with
the model folder."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from skimage import exposure
from torchvision import transforms

from medklip import create_model
from medklip.data.preprocess import Preprocess, PreprocessConfig
from medklip.errors import MedKLIPError
from tests.conftest import make_tiny_model
from tests.data.test_image_io import rg1_path

NORMALIZE = transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
RELEASE_TRANSFORM = transforms.Compose([transforms.Resize([224, 224]), transforms.ToTensor(), NORMALIZE])


def _png(tmp_path, mode: str) -> str:
    rng = np.random.default_rng(0)
    base = (np.add.outer(np.arange(2500), np.arange(2048)) % 251 + rng.integers(0, 4, (2500, 2048)))
    if mode == "I;16":
        img = Image.fromarray((base * 200).astype(np.uint16))
    elif mode == "RGBA":
        img = Image.fromarray(np.stack([base.astype(np.uint8)] * 3 + [np.full_like(base, 255, np.uint8)], -1))
    else:
        img = Image.fromarray(base.astype(np.uint8))
    path = tmp_path / f"cxr_{mode.replace(';', '')}.png"
    img.save(path)
    return str(path)


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_release_cxr14_equals_the_release_pipeline(tmp_path, mode: str) -> None:
    path = _png(tmp_path, mode)
    release = RELEASE_TRANSFORM(Image.open(path).convert("RGB"))  # the release's ChestX-ray14 dataset
    ours = Preprocess(PreprocessConfig("release-cxr14"))(path)
    assert ours.shape == (3, 224, 224)
    assert torch.equal(ours, release), (ours - release).abs().max().item()  # README: bit-identical


def test_release_rsna_equals_the_release_pipeline_on_a_real_dicom() -> None:
    path = rg1_path()
    img = pydicom.dcmread(path).pixel_array.astype(float) / 255.0  # the release's RSNA read_dcm
    img = exposure.equalize_hist(img)
    img = Image.fromarray((255 * img).astype(np.uint8)).convert("RGB")
    release = RELEASE_TRANSFORM(img)
    ours = Preprocess(PreprocessConfig("release-rsna"))(path)
    assert torch.equal(ours, release), (ours - release).abs().max().item()  # README: bit-identical


def test_the_profiles_differ_where_the_scripts_differ(tmp_path) -> None:
    """The medklip profile resizes bicubic; the release bilinear; a DICOM under release-cxr14 is
    windowed by the standard, under release-rsna equalised like the release."""
    path = _png(tmp_path, "L")
    a = Preprocess(PreprocessConfig("medklip"))(path)
    b = Preprocess(PreprocessConfig("release-cxr14"))(path)
    assert a.shape == b.shape and (a - b).abs().max() > 1e-3
    c = Preprocess(PreprocessConfig("release-cxr14"))(rg1_path())
    d = Preprocess(PreprocessConfig("release-rsna"))(rg1_path())
    assert (c - d).abs().max() > 0.1


def test_profile_validation() -> None:
    with pytest.raises(MedKLIPError, match="unknown preprocessing profile"):
        PreprocessConfig("bicubic-please")
    with pytest.raises(MedKLIPError, match="unknown preprocessing keys"):
        PreprocessConfig.from_dict({"profile": "medklip", "size": 3})


def test_the_profile_is_saved_with_the_model_and_create_model_uses_it(tmp_path, minilm) -> None:
    model = make_tiny_model(minilm)
    assert model.preprocess_cfg == PreprocessConfig("medklip", 64)
    model.preprocess_cfg = PreprocessConfig("release-cxr14", 64)
    folder = model.save_pretrained(tmp_path / "m")
    loaded, preprocess = create_model(folder, device="cpu")
    assert loaded.preprocess_cfg.profile == "release-cxr14" and preprocess.config.image_size == 64
    _, override = create_model(folder, device="cpu", preprocess="medklip", max_pixels=1000)
    assert override.config.profile == "medklip" and override.config.max_pixels == 1000
    tensor = preprocess(rg1_path())
    assert tensor.shape == (3, 64, 64) and torch.isfinite(tensor).all()


@pytest.mark.parametrize("case", ["RG1_UNCR.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm", "random12", "signed", "flat"])
def test_the_fast_equalisation_is_skimages_to_the_bit(case: str) -> None:
    from pydicom.data import get_testdata_file

    from medklip.data.preprocess import release_equalize

    rng = np.random.default_rng(0)
    pixels = {"random12": lambda: rng.integers(0, 4096, (600, 500)).astype(np.uint16),
              "signed": lambda: rng.integers(-1000, 3000, (300, 200)).astype(np.int16),
              "flat": lambda: np.full((5, 5), 7, np.uint8)}.get(case, lambda: pydicom.dcmread(get_testdata_file(case))
                                                                 .pixel_array)()
    expected = (255 * exposure.equalize_hist(pixels.astype(float) / 255.0)).astype(np.uint8)
    assert np.array_equal(release_equalize(pixels), expected)


def test_gray_to_tensor_equals_torchvisions_three_steps(tmp_path) -> None:
    from medklip.data.transforms import GrayToTensor

    steps = transforms.Compose([transforms.Grayscale(3), transforms.ToTensor(), NORMALIZE])
    for mode in ("L", "RGBA"):
        image = Image.open(_png(tmp_path, mode))
        assert torch.equal(GrayToTensor()(image), steps(image))


def test_config_validation_and_replace() -> None:
    import dataclasses

    from medklip.data.image_io import DEFAULT_MAX_PIXELS

    assert PreprocessConfig().to_dict() == {"profile": "medklip", "image_size": 224, "mean": (0.485, 0.456, 0.406),
                                            "std": (0.229, 0.224, 0.225), "max_pixels": DEFAULT_MAX_PIXELS,
                                            "fast": False}
    with pytest.raises(dataclasses.FrozenInstanceError):
        PreprocessConfig().image_size = 32  # type: ignore[misc]
    cfg = PreprocessConfig("medklip", 64, mean=[0, 0, 0], std=(1, 1, 1), max_pixels=10)
    assert cfg.mean == (0.0, 0.0, 0.0) and all(isinstance(v, float) for v in cfg.std)
    assert cfg.replace(image_size=32) == PreprocessConfig("medklip", 32, (0, 0, 0), (1, 1, 1), 10)
    assert PreprocessConfig("medklip", 32, max_pixels=None).max_pixels is None
    assert PreprocessConfig("medklip", 32, max_pixels=1).max_pixels == 1  # the smallest budget
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(MedKLIPError, match="^unknown preprocessing profile 'x'; use one of medklip, release-cxr14"):
        cfg.replace(profile="x")
    for bad, message in ((dict(image_size=31), "^preprocessing image_size must be at least 32, got 31$"),
                         (dict(mean=(0.5, 0.5)), "^preprocessing mean / std need three values each"),
                         (dict(std=(1, 1, 1, 1)), "three values"), (dict(std=(1, 0, 1)), "std > 0"),
                         (dict(max_pixels=0), "^max_pixels must be positive, got 0$")):
        with pytest.raises(MedKLIPError, match=message):
            cfg.replace(**bad)
    assert repr(Preprocess(cfg)) == "Preprocess('medklip', image_size=64)"


def test_release_padchest_equals_kad_and_mavls_reader(tmp_path) -> None:
    """KAD / MAVL's PadChest reader on a 16-bit PNG: np.array(Image.open(path)), img / img.max() * 255
    truncated to uint8, RGB, bicubic Resize([224, 224]), ToTensor, ImageNet normalisation; an
    all-black image stays black."""
    rng = np.random.default_rng(1)
    for name, pixels in (("padchest.png", rng.integers(0, 40_000, (300, 260)).astype(np.uint16)),
                         ("black.png", np.zeros((40, 50), np.uint16))):
        path = tmp_path / name
        Image.fromarray(pixels).save(path)
        img = np.array(Image.open(path))
        top = img.max()
        scaled = (img / top * 255).astype(np.uint8) if top else np.zeros(img.shape, np.uint8)
        release = transforms.Compose([transforms.Resize([224, 224], interpolation=transforms.InterpolationMode.BICUBIC),
                                      transforms.ToTensor(), NORMALIZE])(Image.fromarray(scaled).convert("RGB"))
        ours = Preprocess(PreprocessConfig("release-padchest"))(path)
        assert torch.equal(ours, release), (name, (ours - release).abs().max().item())


def test_colour_and_dicom_inputs_per_profile(tmp_path) -> None:
    """medklip's profile reads a colour PNG as its 8-bit luma (the same tensor as that luma saved as
    a grayscale PNG); release-cxr14 keeps the release's RGB; a DICOM under release-cxr14 is the
    standard's reading rounded to 8 bits; ``display`` is the decoded image in [0, 1]."""
    from medklip.data.image_io import read_image, to_pil

    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (90, 70, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    Image.fromarray(rgb).convert("L").save(tmp_path / "luma.png")
    medklip = Preprocess(PreprocessConfig("medklip", 64))
    assert torch.equal(medklip(tmp_path / "colour.png"), medklip(tmp_path / "luma.png"))
    release = Preprocess(PreprocessConfig("release-cxr14", 64))
    expected = transforms.Compose([transforms.Resize([64, 64]), transforms.ToTensor(), NORMALIZE])(
        Image.fromarray(rgb))
    assert torch.equal(release(tmp_path / "colour.png"), expected)
    loaded = release.load(rg1_path())
    assert loaded.mode == "L" and np.array_equal(np.asarray(loaded), np.asarray(to_pil(read_image(rg1_path()))))
    shown = Preprocess.display(loaded)
    assert shown.dtype == np.float32 and np.array_equal(shown, np.asarray(loaded, np.float32) / 255.0)


def test_equalisation_outside_the_lookup_table_and_a_bad_shape(tmp_path) -> None:
    """Float data and integer data spanning more than the table's range go through skimage itself;
    the RSNA pipeline refuses pixel data that is not one grayscale image."""
    from medklip.data.preprocess import LUT_MAX_RANGE, release_equalize, release_rsna_image
    from medklip.errors import ImageReadError
    from tests.data.test_dicom import rgb_dataset, save

    rng = np.random.default_rng(3)
    for pixels in (rng.random((40, 30)) * 900, np.array([[0, LUT_MAX_RANGE, 5, 7]], np.int64)):
        expected = (255 * exposure.equalize_hist(pixels.astype(float) / 255.0)).astype(np.uint8)
        assert np.array_equal(release_equalize(pixels), expected)
    ds = rgb_dataset(np.zeros((1, 5, 3), np.uint8), 8)
    with pytest.raises(ImageReadError, match="reads one grayscale image, got \\(1, 5, 3\\)"):
        release_rsna_image(save(ds, tmp_path / "rgb.dcm"), None)


def test_the_pixel_budget_and_the_fast_decoding_reach_the_reader(tmp_path) -> None:
    """``max_pixels`` is passed to the reader (a PNG over it is refused from its header), and only
    ``fast`` decodes a JPEG at a reduced scale (another tensor than the exact decoding)."""
    from medklip.errors import ImageTooLargeError

    rng = np.random.default_rng(4)
    gray = (np.add.outer(np.arange(900), np.arange(700)) % 200 + rng.integers(0, 40, (900, 700))).astype(np.uint8)
    Image.fromarray(gray).save(tmp_path / "big.png")
    Image.fromarray(gray).save(tmp_path / "big.jpg", quality=90)
    with pytest.raises(ImageTooLargeError, match="big.png"):
        Preprocess(PreprocessConfig("release-cxr14", 64, max_pixels=900 * 700 - 1))(tmp_path / "big.png")
    exact = Preprocess(PreprocessConfig("release-cxr14", 64))(tmp_path / "big.jpg")
    again = Preprocess(PreprocessConfig("release-cxr14", 64, max_pixels=900 * 700))(tmp_path / "big.jpg")
    fast = Preprocess(PreprocessConfig("release-cxr14", 64, fast=True))(tmp_path / "big.jpg")
    assert torch.equal(exact, again) and (fast - exact).abs().max() > 1e-3


def test_which_equalisation_path_runs_and_max_scaling_at_its_edges(monkeypatch) -> None:
    """Integer data spanning fewer than 2**20 values (every DICOM; the table's counts then take at
    most 8 MiB) takes the lookup table, the speed the docstring promises (skimage is not called);
    from that range on, skimage.
    KAD / MAVL's max scaling: an image whose maximum is 1 becomes 0 / 255; grayscale stays ``L``,
    colour becomes RGB."""
    from medklip.data import preprocess

    called: list[int] = []
    real = exposure.equalize_hist
    monkeypatch.setattr(exposure, "equalize_hist",
                        lambda image, *a, **k: called.append(image.size) or real(image, *a, **k))
    top = (1 << 20) - 1
    for low in (0, 1000):  # the range, not the largest value, decides
        wide = np.array([[low, low + top // 3, low + top]], np.int64)
        expected = (255 * real(wide.astype(float) / 255.0)).astype(np.uint8)
        assert np.array_equal(preprocess.release_equalize(wide), expected) and called == []
    widest = np.array([[0, 1, 1 << 20]], np.int64)
    preprocess.release_equalize(widest)
    assert called == [3]
    binary = preprocess.max_scaled_image(np.array([[0, 1], [1, 0]], np.uint8))
    assert binary.mode == "L" and np.asarray(binary).tolist() == [[0, 255], [255, 0]]
    colour = preprocess.max_scaled_image(np.array([[[0, 2, 4], [4, 0, 2]]], np.uint16))
    assert colour.mode == "RGB" and np.asarray(colour).tolist() == [[[0, 127, 255], [255, 0, 127]]]
