"""Query and position embeddings from the knowledge base, as the release builds them."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from medklip.knowledge import KnowledgeBase
from medklip.text import TextEncoder

ZERO_SHOT_MAX_LENGTH = 64
"""Token limit the release's test scripts encode queries with (pre-training uses 128)."""


@dataclass
class KnowledgeEmbeddings:
    """Entity names / texts / embeddings and position names / texts / embeddings."""

    entity_names: list[str]
    entity_texts: list[str]
    entity_embeddings: torch.Tensor
    position_names: list[str]
    position_texts: list[str]
    position_embeddings: torch.Tensor
    encoder: TextEncoder


def embed_knowledge(
    knowledge: KnowledgeBase | None = None,
    text_encoder: TextEncoder | str | None = None,
    entities: Sequence[str] | None = None,
) -> KnowledgeEmbeddings:
    """Embed the entity descriptions and the position prompts ("It is located at {position}")
    with one frozen text encoder; ``entities`` defaults to the 75 pre-training entities."""
    kb = knowledge or KnowledgeBase.default()
    encoder = text_encoder if isinstance(text_encoder, TextEncoder) else TextEncoder(text_encoder)
    chosen = kb.select(entities) if entities is not None else list(kb.pretraining_entities)
    e_names = [e.name for e in chosen]
    e_texts = [e.description for e in chosen]
    p_texts = kb.position_texts()
    embeddings = encoder.encode(e_texts + p_texts)
    return KnowledgeEmbeddings(e_names, e_texts, embeddings[: len(e_texts)], list(kb.positions), p_texts,
                               embeddings[len(e_texts):], encoder)


def encoder_record(encoder: TextEncoder, query_max_length: int = ZERO_SHOT_MAX_LENGTH) -> dict:
    """What a model folder records about the encoder behind its embeddings: the encoder's own
    record (name, identity, pooling, ``max_length`` used for the stored embeddings) and the
    token limit for queries added at zero-shot time (the release: 64)."""
    return {**encoder.info(), "query_max_length": int(query_max_length)}
