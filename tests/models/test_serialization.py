from __future__ import annotations

import json

import pytest
import torch

from medklip import MedKLIP
from medklip.errors import CheckpointError
from tests.models.test_medklip import small_model


@pytest.fixture()
def saved(tmp_path):
    model = small_model().eval()
    model.entity_names = [f"e{i}" for i in range(5)]
    model.entity_texts = [f"description {i}" for i in range(5)]
    model.text_encoder_info = {"name": "test", "dim": 24}
    return model, model.save_pretrained(tmp_path / "model")


def test_round_trip_gives_identical_outputs(saved) -> None:
    model, folder = saved
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "embeddings.safetensors", "texts.json",
                                                  "README.md"}
    loaded = MedKLIP.from_pretrained(folder)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = model(images), loaded(images)
    assert torch.equal(a.logits, b.logits)
    assert all(torch.equal(x, y) for x, y in zip(a.attentions, b.attentions))
    assert loaded.entity_names == model.entity_names and loaded.entity_texts == model.entity_texts
    assert loaded.position_names == model.position_names
    assert loaded.text_encoder_info == {"name": "test", "dim": 24}
    assert loaded.config == model.config and not loaded.training


def test_truncated_weights_are_reported(saved) -> None:
    _, folder = saved
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="model.safetensors: checksum mismatch"):
        MedKLIP.from_pretrained(folder)


def test_tampered_weights_are_reported(saved) -> None:
    _, folder = saved
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        MedKLIP.from_pretrained(folder)


def test_truncated_file_without_checksum_still_fails_clearly(saved) -> None:
    _, folder = saved
    config = json.loads((folder / "config.json").read_text())
    config.pop("sha256")
    (folder / "config.json").write_text(json.dumps(config))
    path = folder / "embeddings.safetensors"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="cannot read the model files"):
        MedKLIP.from_pretrained(folder)


def test_missing_pieces(saved, tmp_path) -> None:
    _, folder = saved
    with pytest.raises(CheckpointError, match="not a folder"):
        MedKLIP.from_pretrained(tmp_path / "nothing")
    (folder / "texts.json").unlink()
    with pytest.raises(CheckpointError, match="texts.json: missing"):
        MedKLIP.from_pretrained(folder)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        MedKLIP.from_pretrained(folder)


def test_the_folder_records_the_text_limits_of_the_release(tmp_path, minilm) -> None:
    """Pre-training tokenises with max_length 128 (the release's train_MedKLIP.py), zero-shot
    queries with 64 (its test scripts); the model folder records both."""
    from medklip.config_utils import load_config
    from medklip.train.config import PretrainConfig, builtin_config
    from tests.conftest import make_tiny_model

    assert load_config(PretrainConfig, builtin_config("paper")).text.max_length == 128
    model = make_tiny_model(minilm)
    info = MedKLIP.from_pretrained(model.save_pretrained(tmp_path / "m")).text_encoder_info
    assert info["max_length"] == minilm.max_length and info["query_max_length"] == 64
