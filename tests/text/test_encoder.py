from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from medklip.errors import TextEncoderNotFoundError
from medklip.text import TextEncoder, packaged_minilm_path


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the text encoder tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_offline_default_encoder_and_cache(tmp_path, no_network) -> None:
    texts = ["Pleural effusion is fluid in the pleural space.", "It is located at left_hilar"]
    first = TextEncoder(cache_dir=tmp_path)
    assert first.folder == packaged_minilm_path()
    a = first.encode(texts)
    assert a.shape == (2, 384) and a.dtype == torch.float32
    assert (first.stats.hits, first.stats.misses) == (0, 2)
    assert torch.isfinite(a).all() and not torch.allclose(a[0], a[1])

    second = TextEncoder(cache_dir=tmp_path)
    b = second.encode(texts + texts[:1])
    assert (second.stats.hits, second.stats.misses) == (3, 0)
    assert second._model is None  # everything came from the cache: the model was never loaded
    assert torch.equal(b[:2], a) and torch.equal(b[2], a[0])


def test_cls_vector_of_last_hidden_state(tmp_path) -> None:
    from transformers import AutoModel, AutoTokenizer

    folder = packaged_minilm_path()
    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder)).eval()
    text = "Cardiomegaly is an enlarged heart."
    with torch.no_grad():
        expected = model(**tok([text], return_tensors="pt")).last_hidden_state[0, 0]
    got = TextEncoder(cache_dir=tmp_path, use_cache=False).encode([text])[0]
    assert torch.allclose(got, expected, atol=1e-5)


def test_padding_and_batching_do_not_change_embeddings(tmp_path) -> None:
    texts = ["short", "a much longer description of a finding " * 3, "medium length text here"]
    one_by_one = TextEncoder(batch_size=1, use_cache=False).encode(texts)
    batched = TextEncoder(batch_size=8, use_cache=False).encode(texts)
    assert torch.allclose(one_by_one, batched, atol=1e-5)


def test_mean_pooling_is_a_different_cache_key(tmp_path) -> None:
    cls_enc = TextEncoder(cache_dir=tmp_path)
    mean_enc = TextEncoder(cache_dir=tmp_path, pooling="mean")
    assert cls_enc.identity != mean_enc.identity
    a, b = cls_enc.encode(["edema"]), mean_enc.encode(["edema"])
    assert mean_enc.stats.misses == 1
    assert not torch.allclose(a, b)


def test_hub_name_offline_gives_instructions(no_network) -> None:
    with pytest.raises(TextEncoderNotFoundError) as err:
        TextEncoder("emilyalsentzer/Bio_ClinicalBERT")
    message = str(err.value)
    assert "local" in message and "--text-encoder DIR" in message


def test_folder_without_config(tmp_path) -> None:
    with pytest.raises(TextEncoderNotFoundError, match="config.json"):
        TextEncoder(str(tmp_path))


def test_damaged_cache_entry_is_re_encoded(tmp_path) -> None:
    enc = TextEncoder(cache_dir=tmp_path)
    ref = enc.encode(["nodule"])
    path = enc.cache._path("nodule")
    path.write_bytes(b"garbage")
    again = TextEncoder(cache_dir=tmp_path)
    assert torch.allclose(again.encode(["nodule"]), ref)
    assert again.stats.misses == 1
    assert np.load(path).shape == (384,)
