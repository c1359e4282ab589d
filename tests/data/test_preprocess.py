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
