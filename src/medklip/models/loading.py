"""Safe checkpoint reading and strict state-dict loading with errors that name every bad key."""
from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from medklip.errors import CheckpointError


def load_tensors_only(path: Path, what: str) -> Any:
    """``torch.load`` that only ever builds tensors and plain containers (``weights_only=True``):
    a file holding other Python objects is refused, never unpickled."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused: the file holds Python objects other than tensors (a pickle that could run code "
            f"when loaded); medklip only loads tensors, so this cannot be read as {what}. If you trust the "
            "file, re-save its state_dict with torch.save({'model': state_dict}) in a session of its own") from exc
    except PermissionError as exc:
        raise CheckpointError(f"{path}: permission denied; make the file readable by this user") from exc
    except Exception as exc:  # truncated zip, not a torch file, ...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: cannot be read as {what} ({type(exc).__name__}: {reason})") from exc


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
