from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from medklip.data.image_io import load_pil
from medklip.data.manifest import read_manifest
from medklip.data.pretrain import PretrainDataset, collate_pretrain
from medklip.data.transforms import eval_transform, train_transform
from medklip.knowledge import KnowledgeBase


def _world(tmp_path):
    img = Image.fromarray((np.random.default_rng(0).random((80, 80)) * 255).astype(np.uint8))
    img.save(tmp_path / "a.png")
    rows = [
        {"image": "a.png", "study_id": "1", "split": "train", "report": "FINDINGS: Small left pleural effusion."},
        {"image": "a.png", "study_id": "2", "split": "val",
         "triplets": [{"entity": "edema", "position": "unspecified", "exist": 1}]},
        {"image": "a.png", "split": "train", "report": "x"},
        {"image": "a.png", "study_id": "4", "split": "holdout", "report": "x"},
        {"image": "a.png", "study_id": "5", "split": "test"},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
    return path


def test_manifest_rows_and_errors(tmp_path) -> None:
    rows, errors = read_manifest(_world(tmp_path))
    assert [r.study_id for r in rows] == ["1", "2"]
    assert rows[1].split == "validation" and rows[0].image == tmp_path / "a.png"
    reasons = {e.where.rsplit(":", 1)[1]: e.error for e in errors}
    assert "study_id" in reasons["3"] and "split" in reasons["4"] and "report" in reasons["5"]
    assert "malformed JSON" in reasons["6"]


def test_dataset_labels_from_the_filter_and_seeded_samples(tmp_path) -> None:
    rows, _ = read_manifest(_world(tmp_path))
    kb = KnowledgeBase.default()
    names = [e.name for e in kb.pretraining_entities]
    ds = PretrainDataset(rows, names, kb.positions, train_transform(64, hflip=True), seed=3)
    a, b = ds[0], ds[0]
    assert a["image"].shape == (3, 64, 64)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["position_index"], b["position_index"])
    assert a["exist"][names.index("effusion")] == 1 and a["exist"][names.index("edema")] == 2
    assert a["position_index"][names.index("effusion"), 0] == kb.position_index("left_pleural")
    assert ds[1]["exist"][names.index("edema")] == 1
    # the augmentation is drawn as torch.manual_seed(hash((seed, epoch, index))) would draw it (the
    # trained models of docs/demo_matrix.md depend on that stream), and the caller's stream is left alone
    state = torch.get_rng_state()
    torch.manual_seed(hash((3, 0, 1)) & 0x7FFF_FFFF)  # seed 3, epoch 0, sample 1
    expected = train_transform(64, hflip=True)(load_pil(rows[1].image))
    torch.set_rng_state(state)
    assert torch.equal(ds[1]["image"], expected)
    assert torch.equal(torch.get_rng_state(), state)
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["image"], a["image"])  # a new epoch draws new augmentation


def test_unreadable_image_is_recorded_and_skipped(tmp_path) -> None:
    rows, _ = read_manifest(_world(tmp_path))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    rows[0].image = tmp_path / "bad.png"
    kb = KnowledgeBase.default()
    ds = PretrainDataset(rows, [e.name for e in kb.pretraining_entities], kb.positions, eval_transform(32))
    assert "bad.png" in ds[0]["failed"][0]  # not swapped for another sample
    batch = collate_pretrain([ds[0], ds[1]])
    assert batch["index"].tolist() == [1] and batch["image"].shape[0] == 1
    assert len(batch["failures"]) == 1 and "cannot decode" in batch["failures"][0][1]


def test_rows_with_missing_images_are_errors_up_front(tmp_path) -> None:
    manifest = _world(tmp_path)
    rows, errors = read_manifest(manifest)
    first = rows[0].image
    first.unlink()
    rows2, errors2 = read_manifest(manifest)
    assert rows2 == [] and len(errors2) == len(errors) + len(rows)  # both rows point at the deleted file
    missing = [e for e in errors2 if "image not found" in e.error]
    assert len(missing) == 2 and str(first) in missing[0].error
