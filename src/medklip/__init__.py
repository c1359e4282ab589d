"""medklip: MedKLIP (knowledge-enhanced language-image pre-training) for chest X-rays."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["MedKLIP", "MedKLIPConfig", "KnowledgeBase", "Predictor", "TextEncoder", "__version__", "create_model"]

if TYPE_CHECKING:  # pragma: no cover
    from medklip.knowledge import KnowledgeBase
    from medklip.models import MedKLIP, MedKLIPConfig
    from medklip.models.factory import create_model
    from medklip.text import TextEncoder
    from medklip.zeroshot.predict import Predictor

_LAZY = {
    "MedKLIP": "medklip.models",
    "MedKLIPConfig": "medklip.models",
    "KnowledgeBase": "medklip.knowledge",
    "TextEncoder": "medklip.text",
    "create_model": "medklip.models.factory",
    "Predictor": "medklip.zeroshot.predict",
}


def __getattr__(name: str) -> Any:
    """Import the heavy parts (torch, transformers) only when they are used."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medklip' has no attribute {name!r}")
