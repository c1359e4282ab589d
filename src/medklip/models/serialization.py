"""medklip's own model format: a folder that predicts without the text encoder installed.

::

    config.json              architecture, text encoder, preprocessing, training record, checksums
    model.safetensors        weights
    embeddings.safetensors   entity_embeddings [Q,D], position_embeddings [P,D]
    texts.json               the entity / position names and the texts that were embedded
    README.md                the model card

The same folder is what the Hugging Face Hub holds (:mod:`medklip.models.hub`).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from medklip import __version__
from medklip.data.preprocess import PreprocessConfig
from medklip.errors import CheckpointError, MedKLIPError
from medklip.io_utils import atomic_path, atomic_write_text
from medklip.models.card import model_card
from medklip.models.config import MedKLIPConfig
from medklip.models.hub import is_hub_id, resolve_hub_folder
from medklip.models.loading import load_state_dict_strict

if TYPE_CHECKING:  # pragma: no cover
    from medklip.models.medklip import MedKLIP

logger = logging.getLogger(__name__)

MODEL_FORMAT = "medklip-model/1"
FILES = ("model.safetensors", "embeddings.safetensors", "texts.json")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_pretrained(model: MedKLIP, directory: str | Path) -> Path:
    """Write the model folder; each file is written to a temporary name, then renamed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for name, tensors in (
        ("model.safetensors", weights),
        ("embeddings.safetensors", {
            "entity_embeddings": model.entity_embeddings.detach().cpu().contiguous(),
            "position_embeddings": model.position_embeddings.detach().cpu().contiguous(),
        }),
    ):
        with atomic_path(directory / name) as tmp:
            save_file(tensors, str(tmp), metadata={"format": MODEL_FORMAT})
    texts = {
        "entities": [{"name": n, "text": t} for n, t in zip(model.entity_names, model.entity_texts)],
        "positions": [{"name": n, "text": t} for n, t in zip(model.position_names, model.position_texts)],
        "descriptions": dict(model.descriptions),
    }
    atomic_write_text(directory / "texts.json", json.dumps(texts, indent=1, ensure_ascii=False))
    config: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "medklip_version": __version__,
        "model": model.config.to_dict(),
        "text_encoder": model.text_encoder_info,
        "preprocess": model.preprocess_cfg.to_dict(),
        "training": model.training_info,
        "calibration": model.calibration,
        "sha256": {name: sha256_file(directory / name) for name in FILES},
    }
    atomic_write_text(directory / "README.md", model_card(model))
    atomic_write_text(directory / "config.json", json.dumps(config, indent=1))
    logger.info("saved model to %s", directory)
    return directory


def read_model_config(directory: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a model folder (with clear errors)."""
    directory = Path(directory)
    path = directory / "config.json"
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a folder; expected a folder written by save_pretrained")
    if not path.is_file():
        raise CheckpointError(f"{directory}: no config.json; is this a medklip model folder?")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except PermissionError as exc:
        raise CheckpointError(f"{path}: permission denied; make the model folder readable by this user") from exc
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    if config.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{path}: format is {config.get('format')!r}, expected {MODEL_FORMAT!r}")
    return config


def load_pretrained(cls: type[MedKLIP], directory: str | Path, map_location: str | torch.device = "cpu",
                    revision: str | None = None) -> MedKLIP:
    """Load a folder written by :func:`save_pretrained` (or a Hub repo id, at ``revision``),
    verifying file checksums."""
    if not Path(directory).is_dir() and is_hub_id(str(directory)):
        directory = resolve_hub_folder(str(directory), revision)
    directory = Path(directory)
    config = read_model_config(directory)
    for name in FILES:
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from the model folder")
        expected = config.get("sha256", {}).get(name)
        try:
            actual = sha256_file(path)
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc}); make the model folder "
                                  "readable by this user") from exc
        if expected and actual != expected:
            raise CheckpointError(
                f"{path}: checksum mismatch (file truncated, modified or from another save); "
                "re-copy the model folder"
            )
    try:
        weights = load_file(str(directory / "model.safetensors"), device=str(map_location))
        embeddings = load_file(str(directory / "embeddings.safetensors"), device=str(map_location))
        texts = json.loads((directory / "texts.json").read_text(encoding="utf-8"))
    except Exception as exc:
        raise CheckpointError(f"{directory}: cannot read the model files ({type(exc).__name__}: {exc})") from exc
    try:
        model_config = MedKLIPConfig.from_dict(config["model"])
        model = cls(
            model_config,
            embeddings["entity_embeddings"],
            embeddings["position_embeddings"],
            entity_names=[e["name"] for e in texts["entities"]],
            entity_texts=[e["text"] for e in texts["entities"]],
            position_names=[p["name"] for p in texts["positions"]],
            position_texts=[p["text"] for p in texts["positions"]],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{directory}: inconsistent model folder ({exc})") from exc
    model.descriptions = {str(k): [str(t) for t in v] if isinstance(v, list) else str(v)
                          for k, v in (texts.get("descriptions") or {}).items()}
    model.text_encoder_info = config.get("text_encoder")
    model.training_info = config.get("training")
    model.calibration = config.get("calibration")
    if config.get("preprocess") is not None:  # folders written before profiles existed: medklip's own
        try:
            model.preprocess_cfg = PreprocessConfig.from_dict(config["preprocess"])
        except (MedKLIPError, TypeError) as exc:
            raise CheckpointError(f"{directory}/config.json: bad preprocess entry ({exc})") from exc
    load_state_dict_strict(model, weights, str(directory / "model.safetensors"))
    return model.to(map_location).eval()
