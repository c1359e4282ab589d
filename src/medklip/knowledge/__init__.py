"""Knowledge base: entity descriptions and the position vocabulary."""
from medklip.knowledge.base import (
    DEFAULT_POSITION_PROMPT,
    DescriptionTexts,
    Entity,
    KnowledgeBase,
    as_texts,
    close_names_hint,
    normalize_name,
    parse_describe_args,
    read_description_variants,
    read_descriptions,
    resolve_descriptions,
)

__all__ = [
    "DEFAULT_POSITION_PROMPT",
    "DescriptionTexts",
    "Entity",
    "KnowledgeBase",
    "as_texts",
    "close_names_hint",
    "normalize_name",
    "parse_describe_args",
    "read_description_variants",
    "read_descriptions",
    "resolve_descriptions",
]
