"""On-disk cache of text embeddings, keyed by encoder identity and text."""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medklip.io_utils import atomic_path

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$MEDKLIP_CACHE_DIR`` if set, else the user cache dir (e.g. ``~/.cache/medklip``)."""
    env = os.environ.get("MEDKLIP_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("medklip", appauthor=False))


@dataclass
class CacheStats:
    """How many texts were served from the cache and how many were encoded."""

    hits: int = 0
    misses: int = 0


class EmbeddingCache:
    """One ``.npy`` file per (encoder identity, text); writes are atomic (write, then rename)."""

    def __init__(self, root: str | Path, identity: str) -> None:
        self.root = Path(root)
        self.identity = identity
        self.folder = self.root / "text-embeddings" / hashlib.sha256(identity.encode()).hexdigest()[:24]

    def _path(self, text: str) -> Path:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return self.folder / digest[:2] / f"{digest}.npy"

    def get(self, text: str) -> np.ndarray | None:
        path = self._path(text)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:  # a damaged entry is re-encoded, not fatal
            logger.warning("ignoring unreadable cache entry %s (%s)", path, exc)
            return None

    def put(self, text: str, vector: np.ndarray) -> None:
        path = self._path(text)
        try:
            with atomic_path(path) as tmp, tmp.open("wb") as f:
                np.save(f, np.asarray(vector, dtype=np.float32), allow_pickle=False)
        except OSError as exc:  # a read-only cache must not stop the run
            logger.warning("cannot write embedding cache under %s (%s)", self.folder, exc)
