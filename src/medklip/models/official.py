"""Loading the official MedKLIP release's checkpoint, and embedding the knowledge base.

The release saves ``{"model": state_dict}`` from ``nn.DataParallel`` (keys prefixed
``module.``) with its own module names; :data:`OFFICIAL_KEY_RULES` maps them onto ours.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import torch

from medklip.errors import CheckpointError
from medklip.models.config import MedKLIPConfig

if TYPE_CHECKING:  # pragma: no cover
    from medklip.knowledge import KnowledgeBase
    from medklip.models.medklip import MedKLIP
    from medklip.text import TextEncoder

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


def official_to_medklip_key(key: str) -> str:
    """Map one official state-dict key (``module.`` prefix allowed) to medklip's name."""
    key = key[len("module."):] if key.startswith("module.") else key
    for pattern, repl in OFFICIAL_KEY_RULES:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    raise CheckpointError(f"unexpected key in official checkpoint: {key!r} (no mapping for it)")


def medklip_to_official_key(key: str) -> str:
    """The inverse of :func:`official_to_medklip_key` (with the ``module.`` prefix)."""
    inverse = (
        (r"^image_encoder\.backbone\.conv1\.", "res_features.0."),
        (r"^image_encoder\.backbone\.bn1\.", "res_features.1."),
        (r"^image_encoder\.backbone\.layer([123])\.", None),
        (r"^image_encoder\.patch_fc1\.", "res_l1."),
        (r"^image_encoder\.patch_fc2\.", "res_l2."),
        (r"^query_projection\.", "disease_embedding_layer."),
        (r"^fusion\.layers\.(\d+)\.cross_attn\.", r"decoder.layers.\1.multihead_attn."),
        (r"^fusion\.layers\.(\d+)\.", r"decoder.layers.\1."),
        (r"^fusion\.norm\.", "decoder.norm."),
        (r"^existence_head\.", "classifier."),
        (r"^position_head\.", "cl_fc."),
    )
    for pattern, repl in inverse:
        m = re.match(pattern, key)
        if m:
            if repl is None:  # layer1..3 -> res_features.4..6
                return f"module.res_features.{int(m.group(1)) + 3}." + key[m.end():]
            return "module." + re.sub(pattern, repl, key)
    raise CheckpointError(f"no official name for {key!r}")


def read_official_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the release's ``.pth`` safely (``weights_only=True``) and map its key names."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, ...
        raise CheckpointError(
            f"{path}: cannot be read as an official MedKLIP checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
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


def load_state_dict_strict(
    model: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    rename: Callable[[str], str] | None = None,
) -> None:
    """``load_state_dict(strict=True)`` with an error that names every bad key.

    ``rename`` gives a key's name in the checkpoint's own terms, shown beside ours.
    """

    def show(key: str) -> str:
        if rename is None:
            return key
        try:
            return f"{key} (in the checkpoint: {rename(key)})"
        except CheckpointError:
            return key

    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(map(show, missing[:10]))}" + (" ..." if len(missing) > 10 else ""))
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(map(show, unexpected[:10]))}" + (" ..." if len(unexpected) > 10 else ""))
    for k in wrong[:10]:
        problems.append(f"{show(k)}: checkpoint shape {tuple(state[k].shape)}, model shape {tuple(own[k].shape)}")
    if problems:
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def embed_knowledge(
    knowledge: "KnowledgeBase | None" = None,
    text_encoder: "TextEncoder | str | None" = None,
    entities: Sequence[str] | None = None,
) -> tuple[list[str], list[str], torch.Tensor, list[str], list[str], torch.Tensor, "TextEncoder"]:
    """Embed entity descriptions and position prompts the release's way.

    Returns entity names, texts, embeddings, position names, texts, embeddings, the encoder.
    """
    from medklip.knowledge import KnowledgeBase
    from medklip.text import TextEncoder

    kb = knowledge or KnowledgeBase.default()
    encoder = text_encoder if isinstance(text_encoder, TextEncoder) else TextEncoder(text_encoder)
    chosen = kb.select(entities) if entities is not None else list(kb.pretraining_entities)
    e_names = [e.name for e in chosen]
    e_texts = [e.description for e in chosen]
    p_names = list(kb.positions)
    p_texts = kb.position_texts()
    embeddings = encoder.encode(e_texts + p_texts)
    return e_names, e_texts, embeddings[: len(e_texts)], p_names, p_texts, embeddings[len(e_texts):], encoder


def load_official_checkpoint(
    cls: type["MedKLIP"],
    path: str | Path,
    entity_embeddings: torch.Tensor | None,
    position_embeddings: torch.Tensor | None,
    text_encoder: "TextEncoder | str | None",
    *,
    num_heads: int = 4,
    knowledge: "KnowledgeBase | None" = None,
) -> "MedKLIP":
    """Build a :class:`MedKLIP` from the release's ``.pth``, in eval mode.

    Without explicit embeddings they are computed from the knowledge base with
    ``text_encoder`` (default: the paper's Bio_ClinicalBERT, by name or local path).
    """
    state = read_official_state_dict(path)
    config = infer_config(state, num_heads=num_heads)
    e_names = p_names = e_texts = p_texts = None
    if entity_embeddings is None or position_embeddings is None:
        from medklip.text import PAPER_TEXT_ENCODER

        names, texts, e_emb, pnames, ptexts, p_emb, encoder = embed_knowledge(
            knowledge, text_encoder or PAPER_TEXT_ENCODER
        )
        if encoder.dim != config.text_dim:
            raise CheckpointError(
                f"{path} expects {config.text_dim}-d text embeddings but {encoder.name} gives "
                f"{encoder.dim}-d; use the encoder it was trained with (the release: "
                f"{PAPER_TEXT_ENCODER}, by name or local folder)"
            )
        if entity_embeddings is None:
            entity_embeddings, e_names, e_texts = e_emb, names, texts
        if position_embeddings is None:
            position_embeddings, p_names, p_texts = p_emb, pnames, ptexts
    from medklip.knowledge import KnowledgeBase

    kb = knowledge or KnowledgeBase.default()
    if e_names is None and entity_embeddings.shape[0] == len(kb.pretraining_entities):
        e_names = [e.name for e in kb.pretraining_entities]
        e_texts = [e.description for e in kb.pretraining_entities]
    if p_names is None and position_embeddings.shape[0] == len(kb.positions):
        p_names, p_texts = list(kb.positions), kb.position_texts()
    model = cls(config, entity_embeddings, position_embeddings, entity_names=e_names,
                position_names=p_names, entity_texts=e_texts, position_texts=p_texts)
    load_state_dict_strict(model, state, str(path), rename=medklip_to_official_key)
    logger.info("loaded official checkpoint %s (%s, %d queries)", path, config.backbone, len(model.entity_names))
    return model.eval()
