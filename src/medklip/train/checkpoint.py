"""Training checkpoints: everything needed to continue exactly, written atomically."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medklip.errors import CheckpointError
from medklip.io_utils import atomic_path
from medklip.models.loading import load_tensors_only


def rng_state() -> dict[str, Any]:
    """All RNG states, as tensors and plain numbers (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {"torch": torch.get_rng_state(),
             "numpy": [kind, torch.from_numpy(np.asarray(keys).astype(np.int64)), int(pos), int(has_gauss),
                       float(cached)],
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename (never half-written)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from")
    return load_tensors_only(path, "a medklip training checkpoint")
