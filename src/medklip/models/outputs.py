"""Typed results of :class:`~medklip.models.MedKLIP`."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class MedKLIPOutput:
    """What one forward pass computes for ``B`` images and ``Q`` entity queries.

    Attributes:
        logits: existence logits ``[B,Q,2]`` (class 1 = present).
        probs: existence probability ``[B,Q]`` = ``softmax(logits)[..., 1]``.
        position_features: position-head output ``[B,Q,text_dim]`` (scored against position
            embeddings by inner product).
        position_logits: scores against every position of the model ``[B,Q,num_positions]``.
        attentions: one cross-attention map ``[B,Q,h*w]`` per decoder layer (mean over heads);
            empty when the forward pass skipped them.
        heatmaps: grounding maps ``[B,Q,h,w]`` = mean of ``attentions`` on the patch grid, or None.
        patch_grid: ``(h, w)``.
    """

    logits: torch.Tensor
    probs: torch.Tensor
    position_features: torch.Tensor
    position_logits: torch.Tensor
    attentions: list[torch.Tensor]
    heatmaps: torch.Tensor | None
    patch_grid: tuple[int, int]


@dataclass
class MedKLIPLoss:
    """The paper's training loss: ``total = existence + position`` (weights 1.0 by default).

    ``num_existence`` / ``num_position`` count the (image, entity) pairs of this batch that
    enter each term; each term is its sum over those pairs divided by the normaliser it was given
    (the local counts by default, the global ones under DDP).
    """

    total: torch.Tensor
    existence: torch.Tensor
    position: torch.Tensor
    num_existence: int
    num_position: int
