"""Strict state-dict loading with an error that names every bad key."""
from __future__ import annotations

from typing import Callable, Mapping

import torch

from medklip.errors import CheckpointError


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
