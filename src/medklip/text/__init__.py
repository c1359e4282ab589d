"""Text encoders (frozen, batched) and their on-disk embedding cache."""
from medklip.text.cache import CacheStats, EmbeddingCache, default_cache_dir
from medklip.text.encoder import (
    DEFAULT_TEXT_ENCODER,
    PAPER_TEXT_ENCODER,
    TextEncoder,
    packaged_minilm_path,
    resolve_encoder_folder,
)

__all__ = [
    "CacheStats",
    "DEFAULT_TEXT_ENCODER",
    "EmbeddingCache",
    "PAPER_TEXT_ENCODER",
    "TextEncoder",
    "default_cache_dir",
    "packaged_minilm_path",
    "resolve_encoder_folder",
]
