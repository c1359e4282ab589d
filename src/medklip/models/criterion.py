"""The paper's training loss, outside the model (as DETR keeps ``SetCriterion`` apart).

Existence: 2-way softmax cross-entropy over (image, entity) pairs labelled present (1) or absent
(0); uncertain (-1) and unmentioned (2) pairs are left out. Position: for each present pair, the
position head's output scored by inner product against ``K`` position embeddings (the true one
in column 0, negatives after it) and trained with cross-entropy towards column 0. Both as the
release computes them.

Each term is a *sum* over pairs divided by a normaliser: the batch's own pair count by default
(the release's mean), or the count of a larger batch (every process of a DDP step, or a whole
validation set), so one definition serves training, DDP and validation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from medklip.labels import ABSENT, PRESENT
from medklip.models.outputs import MedKLIPLoss, MedKLIPOutput


def pair_counts(exist_labels: torch.Tensor) -> torch.Tensor:
    """``[2]`` float: the (image, entity) pairs of the existence term and of the position term."""
    return torch.stack([((exist_labels == PRESENT) | (exist_labels == ABSENT)).sum(),
                        (exist_labels == PRESENT).sum()]).float()


@dataclass
class MedKLIPCriterion:
    """``total = existence_weight * existence + position_weight * position``."""

    existence_weight: float = 1.0
    position_weight: float = 1.0

    def sums(self, out: MedKLIPOutput, exist_labels: torch.Tensor, position_index: torch.Tensor | None,
             position_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Summed existence and position losses, and the pair counts ``[2]`` they summed over."""
        labels = exist_labels.to(out.logits.device).long()
        if labels.shape != out.logits.shape[:2]:
            raise ValueError(f"exist_labels must be {tuple(out.logits.shape[:2])}, got {tuple(labels.shape)}")
        zero = out.logits.sum() * 0.0  # keeps the graph connected when a term has no pairs
        known = (labels == PRESENT) | (labels == ABSENT)
        existence = F.cross_entropy(out.logits[known].float(), labels[known], reduction="sum") if known.any() else zero
        present = labels == PRESENT
        position = zero
        if position_index is not None and present.any():
            idx = position_index.to(out.logits.device).long()
            if idx.shape[:2] != labels.shape:
                raise ValueError(f"position_index must be [B,Q,K] with [B,Q]={tuple(labels.shape)}, "
                                 f"got {tuple(idx.shape)}")
            candidates = position_embeddings.to(out.position_features.device)[idx[present]]  # [N,K,D]
            scores = torch.einsum("nkd,nd->nk", candidates, out.position_features[present].float())
            target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
            position = F.cross_entropy(scores, target, reduction="sum")
        counts = pair_counts(labels)
        if position_index is None:
            counts[1] = 0
        return existence, position, counts

    def __call__(self, out: MedKLIPOutput, exist_labels: torch.Tensor, position_index: torch.Tensor | None,
                 position_embeddings: torch.Tensor, normalizers: torch.Tensor | None = None) -> MedKLIPLoss:
        """The loss of a batch. ``normalizers`` (``[2]``) divide the two sums; default: this batch's
        pair counts, which is the release's per-batch mean.

        Args:
            out: the forward output.
            exist_labels: ``[B,Q]``, 1 present, 0 absent, anything else left out.
            position_index: ``[B,Q,K]`` position indices (positive in column 0), or None to skip
                the position term.
            position_embeddings: the model's ``[P, text_dim]`` position embeddings.
        """
        existence, position, counts = self.sums(out, exist_labels, position_index, position_embeddings)
        norm = (counts if normalizers is None else normalizers.to(counts.device)).clamp(min=1)
        existence, position = existence / norm[0], position / norm[1]
        total = self.existence_weight * existence + self.position_weight * position
        return MedKLIPLoss(total, existence, position, int(counts[0]), int(counts[1]))
