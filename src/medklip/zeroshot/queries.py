"""The queries of one prediction job: the model's own entity queries plus added ones, and which
query rows make up each requested finding (several rows: an ensemble of descriptions whose
probabilities and heatmaps are averaged)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

ENSEMBLES = ("embedding", "probability")
"""How several descriptions of one finding are combined: one query from the mean of their
embeddings (default: the better of the two on the demo world, README), or the mean of the
probabilities (and heatmaps) of one query per description."""


@dataclass
class QuerySet:
    names: list[str]
    """One per query row (the model's entities first; an ensemble member is ``NAME #k``)."""
    embeddings: torch.Tensor
    """``[Q, text_dim]``, the rows fed to the model."""
    groups: list[list[int]]
    """Per requested finding, its query rows."""

    @property
    def rows(self) -> list[int]:
        """The first row of each finding (its only one unless it is a probability ensemble)."""
        return [g[0] for g in self.groups]

    @property
    def has_ensembles(self) -> bool:
        return any(len(g) > 1 for g in self.groups)

    def reduce(self, probs: np.ndarray, maps: np.ndarray | None, groups: Sequence[Sequence[int]] | None = None
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(probs [B, F], maps [B, F, h, w] or None)`` per finding of ``groups`` (default: the
        requested findings) from the per-row outputs: a single row is taken as it is, several
        are averaged."""
        groups = self.groups if groups is None else groups
        if all(len(g) == 1 for g in groups):
            cols = [g[0] for g in groups]
            return probs[:, cols], None if maps is None else maps[:, cols]
        p = np.stack([probs[:, list(g)].mean(axis=1) if len(g) > 1 else probs[:, g[0]] for g in groups], axis=1)
        m = None if maps is None else np.stack(
            [maps[:, list(g)].mean(axis=1) if len(g) > 1 else maps[:, g[0]] for g in groups], axis=1)
        return p, m
