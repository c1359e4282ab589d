"""The model computes exactly what the official release computes (reference fixture)."""
from __future__ import annotations

import pickle

import pytest
import torch

from medklip import MedKLIP
from medklip.errors import CheckpointError
from medklip.models import (
    MedKLIPCriterion,
    medklip_to_official_key,
    official_to_medklip_key,
)


@pytest.fixture(scope="module")
def ref(official_fixture) -> dict[str, torch.Tensor]:
    f = official_fixture
    return {"disease_book": f.entity_embeddings, "ana_book": f.position_embeddings, "images": f.images,
            "labels": f.labels, "sample_index": f.position_index, **f.outputs}


@pytest.fixture(scope="module")
def official(official_fixture, ref) -> MedKLIP:
    return MedKLIP.from_official_checkpoint(official_fixture.checkpoint, entity_embeddings=ref["disease_book"],
                                            position_embeddings=ref["ana_book"])


def test_outputs_match_the_release(official: MedKLIP, ref) -> None:
    """Logits and every layer's attention within 1e-5, the losses within 1e-5 relative, on weights
    and inputs rebuilt by the reference procedure."""
    assert not official.training
    with torch.no_grad():
        out = official(ref["images"])
        loss = MedKLIPCriterion()(out, ref["labels"], ref["sample_index"], official.position_embeddings)
    assert out.logits.shape == (2, 75, 2)
    torch.testing.assert_close(out.logits, ref["logits"], atol=1e-5, rtol=0)
    assert len(out.attentions) == 4
    for i, attn in enumerate(out.attentions):
        torch.testing.assert_close(attn, ref["attentions"][i], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.probs, ref["logits"].softmax(-1)[..., 1], atol=1e-5, rtol=0)
    heat = ref["attentions"].mean(0).reshape(2, 75, 14, 14)
    torch.testing.assert_close(out.heatmaps, heat, atol=1e-5, rtol=0)
    for ours, theirs in ((loss.total, "loss"), (loss.existence, "loss_ce"), (loss.position, "loss_cl")):
        torch.testing.assert_close(ours.reshape(1), ref[theirs].reshape(1), rtol=1e-5, atol=0)


def test_the_official_checkpoint_gets_the_release_preprocessing(official: MedKLIP, tmp_path) -> None:
    assert official.preprocess_cfg.profile == "release-cxr14" and official.preprocess_cfg.image_size == 224
    again = MedKLIP.from_pretrained(official.save_pretrained(tmp_path / "m"))
    assert again.preprocess_cfg == official.preprocess_cfg


def test_fused_attention_path_gives_the_same_logits(official: MedKLIP, ref) -> None:
    with torch.no_grad():
        slow = official(ref["images"], need_attentions=True)
        fast = official(ref["images"], need_attentions=False)
    assert fast.attentions == [] and fast.heatmaps is None
    torch.testing.assert_close(fast.logits, slow.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.position_features, slow.position_features, atol=1e-5, rtol=1e-5)


def test_names_come_from_the_knowledge_base(official: MedKLIP) -> None:
    assert official.entity_names[20] == "pneumonia"
    assert official.position_names[-1] == "other"
    assert official.query_index("Pneumonia") == 20
    assert official.config.backbone == "resnet50" and official.config.text_dim == 768


def test_every_official_key_maps_and_back(fixtures_dir) -> None:
    import json

    layout = json.loads((fixtures_dir / "official" / "official_state_dict_layout.json").read_text())
    keys = ["module." + name for name, _shape, _dtype in layout["keys"]]
    mapped = {official_to_medklip_key(k) for k in keys}
    assert len(mapped) == len(keys) == 342
    assert {medklip_to_official_key(k) for k in mapped} == set(keys)


def _write_checkpoint(path, state) -> None:
    torch.save({"model": state}, path)


@pytest.fixture(scope="module")
def official_state(official_fixture) -> dict[str, torch.Tensor]:
    return torch.load(official_fixture.checkpoint, weights_only=True)["model"]


def test_missing_key_is_named(tmp_path, official_state, ref) -> None:
    state = dict(official_state)
    del state["module.decoder.layers.2.norm2.bias"]
    _write_checkpoint(tmp_path / "c.pth", state)
    with pytest.raises(CheckpointError, match=r"missing keys: fusion\.layers\.2\.norm2\.bias"):
        MedKLIP.from_official_checkpoint(tmp_path / "c.pth", ref["disease_book"], ref["ana_book"])


def test_unexpected_key_is_named(tmp_path, official_state, ref) -> None:
    state = dict(official_state)
    state["module.classifier.extra"] = torch.zeros(1)
    _write_checkpoint(tmp_path / "c.pth", state)
    with pytest.raises(CheckpointError, match="classifier.extra"):
        MedKLIP.from_official_checkpoint(tmp_path / "c.pth", ref["disease_book"], ref["ana_book"])


def test_wrong_shape_is_named(tmp_path, official_state, ref) -> None:
    state = dict(official_state)
    state["module.res_l2.bias"] = torch.zeros(7)
    _write_checkpoint(tmp_path / "c.pth", state)
    expected = r"image_encoder\.patch_fc2\.bias \(in the checkpoint: module\.res_l2\.bias\): checkpoint shape \(7,\)"
    with pytest.raises(CheckpointError, match=expected):
        MedKLIP.from_official_checkpoint(tmp_path / "c.pth", ref["disease_book"], ref["ana_book"])


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_unsafe_pickle_is_refused(tmp_path, ref) -> None:
    path = tmp_path / "evil.pth"
    with path.open("wb") as f:
        pickle.dump({"model": _Evil()}, f, protocol=2)
    with pytest.raises(CheckpointError, match="refused: the file holds Python objects") as err:
        MedKLIP.from_official_checkpoint(path, ref["disease_book"], ref["ana_book"])
    assert "weights_only=False" not in str(err.value)  # never advise the unsafe way


def test_not_a_file(tmp_path, ref) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        MedKLIP.from_official_checkpoint(tmp_path / "none.pth", ref["disease_book"], ref["ana_book"])


def test_embedding_width_must_fit(official_fixture) -> None:
    with pytest.raises(ValueError, match="text_dim"):
        MedKLIP.from_official_checkpoint(official_fixture.checkpoint, torch.zeros(75, 384), torch.zeros(51, 384))


def test_official_checkpoint_with_a_384d_encoder_is_refused(official_fixture, minilm) -> None:
    with pytest.raises(CheckpointError, match="768-d text embeddings"):
        MedKLIP.from_official_checkpoint(official_fixture.checkpoint, text_encoder=minilm)
