"""Loading the official MedKLIP release's checkpoint.

The release saves ``{"model": state_dict}`` from ``nn.DataParallel`` (keys prefixed
``module.``) with its own module names; :data:`OFFICIAL_KEY_RULES` maps them onto ours.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from medklip.data.preprocess import PreprocessConfig
from medklip.errors import CheckpointError
from medklip.knowledge import KnowledgeBase
from medklip.models.config import MedKLIPConfig
from medklip.models.embedding import (
    ZERO_SHOT_MAX_LENGTH,
    embed_knowledge,
    encoder_record,
)
from medklip.models.loading import load_state_dict_strict, load_tensors_only
from medklip.text import PAPER_TEXT_ENCODER, TextEncoder
from medklip.text.constants import RELEASE_SPECIAL_TOKENS

if TYPE_CHECKING:  # pragma: no cover
    from medklip.models.medklip import MedKLIP

logger = logging.getLogger(__name__)

OFFICIAL_KEY_RULES: tuple[tuple[str, str], ...] = (
    (r"^res_features\.0\.", "image_encoder.backbone.conv1."),
    (r"^res_features\.1\.", "image_encoder.backbone.bn1."),
    (r"^res_features\.4\.", "image_encoder.backbone.layer1."),
    (r"^res_features\.5\.", "image_encoder.backbone.layer2."),
    (r"^res_features\.6\.", "image_encoder.backbone.layer3."),
    (r"^res_l1\.", "image_encoder.patch_fc1."),
    (r"^res_l2\.", "image_encoder.patch_fc2."),
    (r"^disease_embedding_layer\.", "query_projection."),
    (r"^decoder\.layers\.(\d+)\.multihead_attn\.", r"fusion.layers.\1.cross_attn."),
    (r"^decoder\.layers\.(\d+)\.", r"fusion.layers.\1."),
    (r"^decoder\.norm\.", "fusion.norm."),
    (r"^classifier\.", "existence_head."),
    (r"^cl_fc\.", "position_head."),
)
"""(official-name regex, medklip name) pairs; the first match wins."""

PAPER_TEXT_ENCODER_DIM = 768


def _inverse_rule(pattern: str, replacement: str) -> tuple[str, str]:
    """The rule mapping ``replacement`` back to ``pattern`` (literal prefixes and ``(\\d+)`` groups)."""
    back = "^" + re.escape(replacement).replace(re.escape("\\1"), r"(\d+)")
    return back, pattern.removeprefix("^").replace(r"(\d+)", "\\1").replace("\\.", ".")


MEDKLIP_KEY_RULES: tuple[tuple[str, str], ...] = tuple(_inverse_rule(p, r) for p, r in OFFICIAL_KEY_RULES)
"""The inverse of :data:`OFFICIAL_KEY_RULES`, derived from it (medklip name -> official name)."""


def _rename(key: str, rules: tuple[tuple[str, str], ...]) -> str | None:
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return None


def official_to_medklip_key(key: str) -> str:
    """Map one official state-dict key (``module.`` prefix allowed) to medklip's name."""
    new = _rename(key.removeprefix("module."), OFFICIAL_KEY_RULES)
    if new is None:
        raise CheckpointError(f"unexpected key in official checkpoint: {key!r} (no mapping for it)")
    return new


def medklip_to_official_key(key: str) -> str:
    """The inverse of :func:`official_to_medklip_key` (with the ``module.`` prefix)."""
    new = _rename(key, MEDKLIP_KEY_RULES)
    if new is None:
        raise CheckpointError(f"no official name for {key!r}")
    return "module." + new


def read_official_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the release's ``.pth`` safely (``weights_only=True``) and map its key names."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    obj = load_tensors_only(path, "an official MedKLIP checkpoint")
    state = obj.get("model", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected {{'model': state_dict}} as the release saves it")
    return {official_to_medklip_key(k): v for k, v in state.items()}


def infer_config(state: Mapping[str, torch.Tensor], num_heads: int = 4) -> MedKLIPConfig:
    """Architecture from tensor shapes (heads cannot be read off shapes: the release uses 4)."""
    try:
        d_model, text_dim = state["query_projection.weight"].shape
        num_layers = len({k.split(".")[2] for k in state if k.startswith("fusion.layers.")})
        ffn = state["fusion.layers.0.linear1.weight"].shape[0]
        channels = state["image_encoder.patch_fc1.weight"].shape[0]
        bottleneck = any(k.startswith("image_encoder.backbone.layer1.0.conv3") for k in state)
        layer3_blocks = len({k.split(".")[3] for k in state if k.startswith("image_encoder.backbone.layer3.")})
        classes = state["existence_head.weight"].shape[0]
    except KeyError as exc:
        raise CheckpointError(f"checkpoint lacks {exc.args[0]!r}; is it a MedKLIP checkpoint?") from exc
    if bottleneck:
        backbone = "resnet101" if layer3_blocks > 6 else "resnet50"
    else:
        backbone = "resnet34" if layer3_blocks > 2 else "resnet18"
    if channels != MedKLIPConfig(backbone=backbone).backbone_channels:
        raise CheckpointError(f"patch MLP width {channels} does not fit backbone {backbone}")
    return MedKLIPConfig(
        backbone=backbone, d_model=int(d_model), num_layers=num_layers, num_heads=num_heads,
        dim_feedforward=int(ffn), text_dim=int(text_dim), num_exist_classes=int(classes),
    )


def release_text_encoder(name_or_path: str | None = None, cache_dir: str | None = None) -> TextEncoder:
    """The text encoder as the release's test scripts run it: ``[CLS]`` + word pieces (no ``[SEP]``)
    padded to 64, the CLS vector; default the paper's Bio_ClinicalBERT."""
    return TextEncoder(name_or_path or PAPER_TEXT_ENCODER, pooling="cls", max_length=ZERO_SHOT_MAX_LENGTH,
                       special_tokens=RELEASE_SPECIAL_TOKENS, cache_dir=cache_dir)


def load_official_checkpoint(
    cls: type[MedKLIP],
    path: str | Path,
    entity_embeddings: torch.Tensor | None = None,
    position_embeddings: torch.Tensor | None = None,
    text_encoder: TextEncoder | str | None = None,
    *,
    num_heads: int = 4,
    knowledge: KnowledgeBase | None = None,
) -> MedKLIP:
    """Build a :class:`MedKLIP` from the release's ``.pth``, in eval mode, with the release's
    preprocessing profile (``release-cxr14``).

    Without explicit embeddings they are computed from the knowledge base with ``text_encoder``
    (default: the paper's Bio_ClinicalBERT, by name or local path) as the release's test scripts
    tokenise (``[CLS]`` + word pieces, no ``[SEP]``, padded to its ``max_length`` of 64; see
    :data:`~medklip.text.constants.SPECIAL_TOKENS`) and pool (the CLS vector). The descriptions are
    the pre-training ``observation explanation.json`` (the packaged knowledge base), which the
    checkpoint was trained with.
    """
    state = read_official_state_dict(path)
    config = infer_config(state, num_heads=num_heads)
    kb = knowledge or KnowledgeBase.default()
    e_names = p_names = e_texts = p_texts = None
    record = None
    if entity_embeddings is None or position_embeddings is None:
        encoder = text_encoder if isinstance(text_encoder, TextEncoder) else release_text_encoder(text_encoder)
        if (encoder.special_tokens, encoder.max_length, encoder.pooling) != (RELEASE_SPECIAL_TOKENS, ZERO_SHOT_MAX_LENGTH,
                                                                              "cls"):
            logger.warning("%s: the release encodes queries with special_tokens=%r, max_length %d and the CLS "
                           "vector; the given encoder uses %r, %d, %r: its probabilities will differ from the "
                           "release's", path, RELEASE_SPECIAL_TOKENS, ZERO_SHOT_MAX_LENGTH, encoder.special_tokens,
                           encoder.max_length, encoder.pooling)
        if encoder.dim != config.text_dim:
            raise CheckpointError(
                f"{path} expects {config.text_dim}-d text embeddings but {encoder.name} gives "
                f"{encoder.dim}-d; use the encoder it was trained with (the release: "
                f"{PAPER_TEXT_ENCODER}, by name or local folder)"
            )
        emb = embed_knowledge(kb, encoder)
        record = encoder_record(encoder)
        if entity_embeddings is None:
            entity_embeddings, e_names, e_texts = emb.entity_embeddings, emb.entity_names, emb.entity_texts
        if position_embeddings is None:
            position_embeddings, p_names, p_texts = emb.position_embeddings, emb.position_names, emb.position_texts
    if e_names is None and entity_embeddings.shape[0] == len(kb.pretraining_entities):
        e_names = [e.name for e in kb.pretraining_entities]
        e_texts = [e.description for e in kb.pretraining_entities]
    if p_names is None and position_embeddings.shape[0] == len(kb.positions):
        p_names, p_texts = list(kb.positions), kb.position_texts()
    model = cls(config, entity_embeddings, position_embeddings, entity_names=e_names,
                position_names=p_names, entity_texts=e_texts, position_texts=p_texts)
    model.text_encoder_info = record
    model.preprocess_cfg = PreprocessConfig("release-cxr14", config.image_size)
    load_state_dict_strict(model, state, str(path), rename=medklip_to_official_key)
    logger.info("loaded official checkpoint %s (%s, %d queries)", path, config.backbone, len(model.entity_names))
    return model.eval()
