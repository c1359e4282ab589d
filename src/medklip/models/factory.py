"""One entry point for every kind of model a user has (cf. open_clip's ``create_model_and_transforms``).

``create_model(name_or_path)`` takes a :class:`MedKLIP`, a ``save_pretrained`` folder, the official
release's ``.pth``, or a Hugging Face Hub repo id, and returns the model in eval mode together with
its :class:`~medklip.data.preprocess.Preprocess` (the profile recorded with the model, or the one
asked for).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from medklip.data.preprocess import Preprocess
from medklip.errors import CheckpointError
from medklip.knowledge import KnowledgeBase
from medklip.models.hub import is_hub_id, resolve_hub_folder
from medklip.models.medklip import MedKLIP
from medklip.text import TextEncoder

logger = logging.getLogger(__name__)

OFFICIAL_SUFFIXES = (".pth", ".pt")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` / ``"auto"``: the GPU when there is one, else the CPU. Under torchrun a CUDA device
    without an index is this process's GPU (``LOCAL_RANK``)."""
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return resolved


def load_model(name_or_path: MedKLIP | str | Path, *, text_encoder: TextEncoder | str | None = None,
               knowledge: KnowledgeBase | None = None, revision: str | None = None) -> MedKLIP:
    """The model behind ``name_or_path`` (see :func:`create_model`), on the CPU."""
    if isinstance(name_or_path, MedKLIP):
        return name_or_path
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return MedKLIP.from_pretrained(path)
    if path.is_file() and path.suffix in OFFICIAL_SUFFIXES:
        return MedKLIP.from_official_checkpoint(path, text_encoder=text_encoder, knowledge=knowledge)
    if path.exists():
        raise CheckpointError(f"{path}: not a model folder (save_pretrained) nor an official .pth checkpoint")
    if is_hub_id(str(name_or_path)):
        return MedKLIP.from_pretrained(resolve_hub_folder(str(name_or_path), revision))
    raise CheckpointError(f"{name_or_path}: no such model folder or checkpoint file (a Hub model is "
                          "named org/name)")


def create_model(name_or_path: MedKLIP | str | Path, *, text_encoder: TextEncoder | str | None = None,
                 device: str | torch.device | None = None, preprocess: str | None = None,
                 max_pixels: int | None | str = "model", knowledge: KnowledgeBase | None = None,
                 revision: str | None = None) -> tuple[MedKLIP, Preprocess]:
    """A ready model and its preprocessing.

    Args:
        name_or_path: a :class:`MedKLIP`, a ``save_pretrained`` folder, an official ``.pth``, or a
            Hub repo id (``org/name``, optionally at ``revision``).
        text_encoder: the encoder for an official checkpoint's embeddings (default: the paper's
            Bio_ClinicalBERT, by hub name or local folder).
        device: ``"cpu"``, ``"cuda"``...; default: a GPU when there is one.
        preprocess: a profile name (``release-cxr14``, ``release-rsna``, ``medklip``) overriding
            the model's own.
        max_pixels: the pixel budget of image decoding; ``"model"`` keeps the model's.
    """
    model = load_model(name_or_path, text_encoder=text_encoder, knowledge=knowledge, revision=revision)
    cfg = model.preprocess_cfg
    if preprocess is not None and preprocess != cfg.profile:
        logger.info("preprocessing: %s instead of the model's %s", preprocess, cfg.profile)
        cfg = cfg.replace(profile=preprocess)
    if max_pixels != "model":
        cfg = cfg.replace(max_pixels=max_pixels)
    model.preprocess_cfg = cfg
    # channels_last: the convolutions' fast layout on CPUs and GPUs (probabilities within 1e-5)
    model = model.to(resolve_device(device)).to(memory_format=torch.channels_last).eval()
    return model, Preprocess(cfg)
