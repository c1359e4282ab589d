"""Hugging Face Hub: models and text encoders resolved from a local hub cache (offline), pinned by
revision; a clear error when a model is neither cached nor reachable; push_to_hub uploads the folder
with its model card."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from medklip import MedKLIP, create_model
from medklip.errors import CheckpointError
from medklip.text import TextEncoder, packaged_minilm_path
from tests.conftest import make_tiny_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def put_in_cache(cache: Path, repo_id: str, files_from: Path, commit: str = COMMIT, ref: str = "main") -> Path:
    """Lay out ``files_from`` as the hub cache does: models--org--name/{refs,snapshots/<commit>}."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(files_from, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture()
def hub_cache(tmp_path, monkeypatch) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_a_model_loads_from_the_local_hub_cache_by_id_and_revision(hub_cache, tmp_path, minilm) -> None:
    model = make_tiny_model(minilm)
    put_in_cache(hub_cache, "medklip/tiny-demo", model.save_pretrained(tmp_path / "m"))
    loaded = MedKLIP.from_pretrained("medklip/tiny-demo")
    pinned = MedKLIP.from_pretrained("medklip/tiny-demo", revision=COMMIT)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(images).logits, model.eval()(images).logits)
        assert torch.equal(pinned(images).logits, loaded(images).logits)
    via_factory, preprocess = create_model("medklip/tiny-demo", device="cpu")
    assert via_factory.entity_names == model.entity_names and preprocess.config.image_size == 64


def test_two_revisions_in_the_cache_load_their_own_weights(hub_cache, tmp_path, minilm) -> None:
    """The cache holds two commits with different weights ('main' points at the newer): a pinned
    revision loads its own, the default loads main's; a loader that ignored ``revision=`` fails."""
    old, new = make_tiny_model(minilm, seed=0).eval(), make_tiny_model(minilm, seed=1).eval()
    newer = "fedcba9876543210fedcba9876543210fedcba98"
    put_in_cache(hub_cache, "medklip/tiny-demo", old.save_pretrained(tmp_path / "old"), commit=COMMIT, ref="v1")
    put_in_cache(hub_cache, "medklip/tiny-demo", new.save_pretrained(tmp_path / "new"), commit=newer, ref="main")
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want_old, want_new = old(images).probs, new(images).probs
        assert (want_old - want_new).abs().max() > 1e-2  # the two revisions are told apart
        for revision, want in ((COMMIT, want_old), ("v1", want_old), (newer, want_new), (None, want_new)):
            got = MedKLIP.from_pretrained("medklip/tiny-demo", revision=revision)(images).probs
            assert torch.equal(got, want), revision
        via_factory, _ = create_model("medklip/tiny-demo", revision="v1", device="cpu")
        assert (via_factory(images).probs - want_old).abs().max() < 1e-5  # channels-last rounding only


def test_an_uncached_model_offline_is_a_clear_error(hub_cache, tmp_path, minilm) -> None:
    put_in_cache(hub_cache, "medklip/tiny-demo", make_tiny_model(minilm).save_pretrained(tmp_path / "m"))
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache and HF_HUB_OFFLINE is set.*"
                                              "huggingface-cli download medklip/other"):
        MedKLIP.from_pretrained("medklip/other")
    with pytest.raises(CheckpointError, match="at v2"):
        create_model("medklip/tiny-demo", revision="v2")


def test_a_hub_text_encoder_is_pinned_and_recorded(hub_cache) -> None:
    put_in_cache(hub_cache, "sentence-transformers/all-MiniLM-L6-v2", packaged_minilm_path())
    encoder = TextEncoder("sentence-transformers/all-MiniLM-L6-v2", use_cache=False)
    assert encoder.revision == COMMIT and encoder.info()["revision"] == COMMIT
    pinned = TextEncoder("sentence-transformers/all-MiniLM-L6-v2", revision=COMMIT, use_cache=False)
    assert torch.allclose(pinned.encode(["pleural effusion"]), encoder.encode(["pleural effusion"]))


def test_push_to_hub_uploads_the_folder_with_its_card(monkeypatch, minilm) -> None:
    import huggingface_hub

    uploaded: dict = {}

    class FakeApi:
        def __init__(self, token=None) -> None:
            uploaded["token"] = token

        def create_repo(self, repo_id, private, exist_ok):
            uploaded["repo"] = (repo_id, private)

        def upload_folder(self, folder_path, repo_id, revision, commit_message):
            uploaded["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            uploaded["card"] = (Path(folder_path) / "README.md").read_text()
            return type("Info", (), {"oid": "f" * 40})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    model = make_tiny_model(minilm)
    model.training_info = {"data": "synthetic", "description": "the synthetic world"}
    commit = model.push_to_hub("me/medklip-demo", token="t")
    assert commit == "f" * 40 and uploaded["repo"] == ("me/medklip-demo", True)
    assert uploaded["files"] == ["README.md", "config.json", "embeddings.safetensors", "model.safetensors",
                                 "texts.json"]
    card = uploaded["card"]
    for part in ("## Architecture", "resnet18", "## Text encoder", "## Training", "the synthetic world",
                 "Research use only; not for clinical decisions", "not meaningful on real radiographs"):
        assert part in card, part
