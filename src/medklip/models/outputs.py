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

    def upsampled_heatmaps(self, size: tuple[int, int]) -> torch.Tensor:
        """Heatmaps resized to an image size ``(H, W)`` (bilinear), ``[B,Q,H,W]``."""
        if self.heatmaps is None:
            raise ValueError("this output has no heatmaps: run the model with need_attentions=True")
        return torch.nn.functional.interpolate(self.heatmaps, size=size, mode="bilinear", align_corners=False)


@dataclass
class MedKLIPLoss:
    """The paper's training loss: ``total = existence + position`` (weights 1.0 by default).

    ``num_existence`` / ``num_position`` count the (image, entity) pairs each term averaged over.
    """

    total: torch.Tensor
    existence: torch.Tensor
    position: torch.Tensor
    num_existence: int
    num_position: int
