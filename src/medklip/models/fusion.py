"""Fusion module: pre-norm DETR-style transformer decoder layers (entity queries attend to patches).

No positional encodings, as the release. Each layer can return its cross-attention averaged
over heads (for grounding) or skip it and use PyTorch's fused attention kernel (training).
With ``null_key`` the cross-attention has one more, learned key / value (PyTorch's
``add_bias_kv``) that a query can attend to instead of a patch; the returned attention is the
patches' part only (not the release's architecture; an option for models medklip trains).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class FusionLayer(nn.Module):
    """LayerNorm -> self-attention -> LayerNorm -> cross-attention -> LayerNorm -> FFN, residuals."""

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int, dropout: float,
                 null_key: bool = False) -> None:
        super().__init__()
        self.null_key = null_key
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True,
                                                add_bias_kv=null_key)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(
        self, queries: torch.Tensor, patches: torch.Tensor, need_weights: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """queries ``[B,Q,D]``, patches ``[B,P,D]`` -> (queries, cross-attention ``[B,Q,P]`` or None)."""
        x = self.norm1(queries)
        x, _ = self.self_attn(x, x, x, need_weights=False)
        queries = queries + self.dropout1(x)
        x = self.norm2(queries)
        x, attn = self.cross_attn(x, patches, patches, need_weights=need_weights, average_attn_weights=True)
        if attn is not None and self.null_key:
            attn = attn[..., : patches.shape[1]]  # the learned null key is appended last
        queries = queries + self.dropout2(x)
        x = self.linear2(self.dropout(F.relu(self.linear1(self.norm3(queries)))))
        return queries + self.dropout3(x), attn


class FusionDecoder(nn.Module):
    """A stack of :class:`FusionLayer` and a final LayerNorm."""

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int, dropout: float, num_layers: int,
                 null_key: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            FusionLayer(d_model, num_heads, dim_feedforward, dropout, null_key) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(
        self, queries: torch.Tensor, patches: torch.Tensor, need_weights: bool = True
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        attentions: list[torch.Tensor] = []
        for layer in self.layers:
            queries, attn = layer(queries, patches, need_weights=need_weights)
            if attn is not None:
                attentions.append(attn)
        return self.norm(queries), attentions


def fuse_per_sample(
    fusion: FusionDecoder,
    feature_dropout: nn.Module,
    queries: torch.Tensor,
    patches: torch.Tensor,
    seeds: Sequence[int],
    need_weights: bool,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The decoder and the feature dropout one image at a time, each image's dropout masks (the
    residual, feed-forward and attention dropouts) drawn from its own seed: a sample's masks do not
    depend on the other samples in its batch, nor on the process that holds it, so N processes
    train what one process trains (``run.dropout_per_sample``). The caller's random stream is left
    as it was. Slower than the batched call (one decoder call per image)."""
    if len(seeds) != queries.shape[0]:
        raise ValueError(f"{len(seeds)} dropout seeds for {queries.shape[0]} images")
    device = queries.device
    fused, attentions = [], []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for i, seed in enumerate(seeds):
            torch.default_generator.manual_seed(int(seed))
            if device.type == "cuda":
                torch.cuda.manual_seed(int(seed))
            f, a = fusion(queries[i:i + 1], patches[i:i + 1], need_weights=need_weights)
            fused.append(feature_dropout(f))
            attentions.append(a)
    layers = [torch.cat([a[k] for a in attentions]) for k in range(len(attentions[0]))] if attentions[0] else []
    return torch.cat(fused), layers
