"""Text encoders (frozen, batched) and their on-disk embedding cache.

Heavy parts (torch, transformers) are imported on first use, so the constants are cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

from medklip.text.constants import DEFAULT_TEXT_ENCODER, PAPER_TEXT_ENCODER

_LAZY = {
    "CacheStats": "medklip.text.cache",
    "EmbeddingCache": "medklip.text.cache",
    "default_cache_dir": "medklip.text.cache",
    "TextEncoder": "medklip.text.encoder",
    "packaged_minilm_path": "medklip.text.encoder",
    "resolve_encoder_folder": "medklip.text.encoder",
}

__all__ = ["DEFAULT_TEXT_ENCODER", "PAPER_TEXT_ENCODER", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medklip.text' has no attribute {name!r}")
