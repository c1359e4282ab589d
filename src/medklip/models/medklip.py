"""The MedKLIP model: image patches + entity-description queries -> existence, position, grounding."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from medklip.labels import ABSENT, PRESENT
from medklip.models.config import MedKLIPConfig
from medklip.models.fusion import FusionDecoder
from medklip.models.image_encoder import ImageEncoder
from medklip.models.outputs import MedKLIPLoss, MedKLIPOutput

if TYPE_CHECKING:  # pragma: no cover
    from medklip.knowledge import KnowledgeBase
    from medklip.text import TextEncoder

logger = logging.getLogger(__name__)


def init_weights(module: nn.Module) -> None:
    """The release's init: Linear / attention weights N(0, 0.02), biases 0."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.MultiheadAttention):
        nn.init.normal_(module.in_proj_weight, mean=0.0, std=0.02)
        if module.in_proj_bias is not None:
            nn.init.zeros_(module.in_proj_bias)


@torch.no_grad()
def scale_attention_init(model: "MedKLIP", qk_std: float = 0.1) -> None:
    """The ``scaled-attention`` init (on top of :func:`init_weights`): query / key projections of
    every attention N(0, ``qk_std``), the patch MLP PyTorch's default. With the release's init the
    cross-attention logits start near 0, every entity pools the same average of the patches, and
    the shared existence head has to tell entities apart through the feed-forward layer, which is
    slow; larger logits give each entity its own pooling from the first step."""
    d = model.config.d_model
    for module in model.fusion.modules():
        if isinstance(module, nn.MultiheadAttention):
            nn.init.normal_(module.in_proj_weight[: 2 * d], mean=0.0, std=qk_std)
    model.image_encoder.patch_fc1.reset_parameters()
    model.image_encoder.patch_fc2.reset_parameters()


class MedKLIP(nn.Module):
    """MedKLIP (Wu et al., ICCV 2023).

    The query set is whatever entity embeddings the model holds (or is given at
    ``forward``): a new disease at inference is one more description embedding.

    Args:
        config: architecture.
        entity_embeddings: text embeddings of the entity descriptions ``[Q, text_dim]``.
        position_embeddings: text embeddings of the position prompts ``[P, text_dim]``.
        entity_names / position_names: names for the rows (default ``entity_0``...).
        entity_texts / position_texts: the texts that were embedded (kept for saving).
    """

    def __init__(
        self,
        config: MedKLIPConfig,
        entity_embeddings: torch.Tensor,
        position_embeddings: torch.Tensor,
        *,
        entity_names: Sequence[str] | None = None,
        position_names: Sequence[str] | None = None,
        entity_texts: Sequence[str] | None = None,
        position_texts: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = ImageEncoder(config)
        self.query_projection = nn.Linear(config.text_dim, config.d_model)
        self.fusion = FusionDecoder(
            config.d_model, config.num_heads, config.dim_feedforward, config.dropout, config.num_layers
        )
        self.feature_dropout = nn.Dropout(config.dropout)
        self.existence_head = nn.Linear(config.d_model, config.num_exist_classes)
        self.position_head = nn.Linear(config.d_model, config.text_dim)
        self.register_buffer("entity_embeddings", torch.empty(0, config.text_dim), persistent=False)
        self.register_buffer("position_embeddings", torch.empty(0, config.text_dim), persistent=False)
        self.set_queries(entity_embeddings, entity_names, entity_texts)
        self.set_positions(position_embeddings, position_names, position_texts)
        self.text_encoder_info: dict | None = None
        """Which text encoder made the embeddings (name, identity, pooling), when known."""
        self.apply(init_weights)
        if config.init == "scaled-attention":
            scale_attention_init(self)

    # ------------------------------------------------------------------ queries
    def _check_embeddings(self, emb: torch.Tensor, what: str) -> torch.Tensor:
        emb = torch.as_tensor(emb, dtype=torch.float32)
        if emb.ndim != 2 or emb.shape[1] != self.config.text_dim:
            raise ValueError(
                f"{what} must be [N, {self.config.text_dim}] (the model's text_dim), got "
                f"{tuple(emb.shape)}; use the text encoder the model was built with"
            )
        return emb.to(self.query_projection.weight.device)

    def _named(self, embeddings: torch.Tensor, names: Sequence[str] | None, texts: Sequence[str] | None,
               what: str) -> tuple[torch.Tensor, list[str], list[str]]:
        embeddings = self._check_embeddings(embeddings, f"{what}_embeddings")
        n = embeddings.shape[0]
        names = list(names) if names is not None else [f"{what}_{i}" for i in range(n)]
        texts = list(texts) if texts is not None else [""] * n
        if len(names) != n or len(texts) != n:
            raise ValueError(f"{n} {what} embeddings but {len(names)} names / {len(texts)} texts")
        return embeddings, names, texts

    def set_queries(self, embeddings: torch.Tensor, names: Sequence[str] | None = None,
                    texts: Sequence[str] | None = None) -> None:
        """Replace the entity query set (no retraining needed: queries are text embeddings)."""
        self.entity_embeddings, self.entity_names, self.entity_texts = self._named(embeddings, names, texts, "entity")

    def set_positions(self, embeddings: torch.Tensor, names: Sequence[str] | None = None,
                      texts: Sequence[str] | None = None) -> None:
        """Replace the position embeddings used by the position head and loss."""
        self.position_embeddings, self.position_names, self.position_texts = self._named(
            embeddings, names, texts, "position")

    def add_queries(self, names: Sequence[str], embeddings: torch.Tensor, texts: Sequence[str] | None = None) -> None:
        """Append entity queries (e.g. an unseen disease described in words)."""
        embeddings = self._check_embeddings(embeddings, "entity_embeddings")
        texts = list(texts) if texts is not None else [""] * len(names)
        self.set_queries(
            torch.cat([self.entity_embeddings, embeddings]),
            self.entity_names + list(names),
            self.entity_texts + texts,
        )

    def query_index(self, name: str) -> int:
        """Row of ``name`` in the query set (case-insensitive)."""
        from medklip.knowledge import normalize_name

        keys = [normalize_name(n) for n in self.entity_names]
        key = normalize_name(name)
        if key not in keys:
            import difflib

            close = difflib.get_close_matches(key, keys, n=5, cutoff=0.5)
            hint = f" Closest: {', '.join(close)}." if close else ""
            from medklip.errors import UnknownEntityError

            raise UnknownEntityError(f"the model has no query {name!r}.{hint}")
        return keys.index(key)

    # ------------------------------------------------------------------ forward
    def encode_image(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch features ``[B, h*w, d_model]`` and the patch grid."""
        return self.image_encoder(images)

    def forward(
        self,
        images: torch.Tensor,
        queries: torch.Tensor | None = None,
        *,
        need_attentions: bool = True,
    ) -> MedKLIPOutput:
        """Run the model.

        Args:
            images: normalised images ``[B,3,H,W]``.
            queries: optional entity embeddings ``[Q, text_dim]`` to use instead of the stored ones.
            need_attentions: return per-layer cross-attention and heatmaps; False uses the fused
                attention kernel (faster, for training) and gives the same logits.
        """
        patches, grid = self.image_encoder(images)
        return self.decode(patches, grid, queries, need_attentions=need_attentions)

    def decode(
        self,
        patches: torch.Tensor,
        grid: tuple[int, int],
        queries: torch.Tensor | None = None,
        *,
        need_attentions: bool = True,
    ) -> MedKLIPOutput:
        """Fuse precomputed patch features (:meth:`encode_image`) with a query set; several
        query sets can reuse one image encoding."""
        query_emb = self.entity_embeddings if queries is None else self._check_embeddings(queries, "queries")
        batch = patches.shape[0]
        q = self.query_projection(query_emb).unsqueeze(0).expand(batch, -1, -1)
        fused, attentions = self.fusion(q, patches, need_weights=need_attentions)
        fused = self.feature_dropout(fused)
        logits = self.existence_head(fused)
        position_features = self.position_head(fused)
        heatmaps = None
        if attentions:
            heatmaps = torch.stack(attentions).mean(0).reshape(batch, -1, *grid)
        return MedKLIPOutput(
            logits=logits,
            probs=logits.softmax(-1)[..., PRESENT],
            position_features=position_features,
            position_logits=position_features @ self.position_embeddings.T,
            attentions=attentions,
            heatmaps=heatmaps,
            patch_grid=grid,
        )

    def loss(
        self,
        out: MedKLIPOutput,
        exist_labels: torch.Tensor,
        position_index: torch.Tensor | None = None,
        *,
        existence_weight: float = 1.0,
        position_weight: float = 1.0,
    ) -> MedKLIPLoss:
        """The paper's loss, computed as the release computes it.

        Args:
            out: the forward output.
            exist_labels: ``[B,Q]`` with 1 present, 0 absent; any other value (-1 uncertain,
                2 unmentioned) is left out of the existence loss.
            position_index: ``[B,Q,K]`` position indices, the positive in column 0 and
                negatives after it; used only where the label is 1. None skips the term.
        """
        labels = exist_labels.to(out.logits.device).long()
        if labels.shape != out.logits.shape[:2]:
            raise ValueError(f"exist_labels must be {tuple(out.logits.shape[:2])}, got {tuple(labels.shape)}")
        zero = out.logits.sum() * 0.0  # keeps the graph connected when a term has no pairs
        known = (labels == PRESENT) | (labels == ABSENT)
        existence = F.cross_entropy(out.logits[known], labels[known]) if known.any() else zero
        present = labels == PRESENT
        position = zero
        if position_index is not None and present.any():
            idx = position_index.to(out.logits.device).long()
            if idx.shape[:2] != labels.shape:
                raise ValueError(f"position_index must be [B,Q,K] with [B,Q]={tuple(labels.shape)}, got {tuple(idx.shape)}")
            candidates = self.position_embeddings[idx[present]]  # [N,K,D]
            scores = torch.einsum("nkd,nd->nk", candidates, out.position_features[present])
            target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
            position = F.cross_entropy(scores, target)
        total = existence_weight * existence + position_weight * position
        return MedKLIPLoss(total, existence, position, int(known.sum()), int(present.sum()) if position_index is not None else 0)

    # --------------------------------------------------------------- building
    @classmethod
    def from_knowledge_base(
        cls,
        config: MedKLIPConfig | None = None,
        knowledge: "KnowledgeBase | None" = None,
        text_encoder: "TextEncoder | None" = None,
        entities: Sequence[str] | None = None,
    ) -> "MedKLIP":
        """A freshly initialised model whose queries are the knowledge base's descriptions.

        ``entities`` defaults to the pre-training entities (the paper's 75);
        ``config.text_dim`` is set from the text encoder.
        """
        from medklip.models.official import embed_knowledge

        e_names, e_texts, e_emb, p_names, p_texts, p_emb, encoder = embed_knowledge(knowledge, text_encoder, entities)
        config = config or MedKLIPConfig()
        if config.text_dim != encoder.dim:
            config = MedKLIPConfig.from_dict({**config.to_dict(), "text_dim": encoder.dim})
        model = cls(config, e_emb, p_emb, entity_names=e_names, position_names=p_names,
                    entity_texts=e_texts, position_texts=p_texts)
        model.text_encoder_info = encoder.info()
        return model

    @classmethod
    def from_official_checkpoint(
        cls,
        path: str | Path,
        entity_embeddings: torch.Tensor | None = None,
        position_embeddings: torch.Tensor | None = None,
        text_encoder: "TextEncoder | str | None" = None,
        *,
        num_heads: int = 4,
        knowledge: "KnowledgeBase | None" = None,
    ) -> "MedKLIP":
        """Load the official release's ``.pth`` (see :mod:`medklip.models.official`)."""
        from medklip.models.official import load_official_checkpoint

        return load_official_checkpoint(
            cls, path, entity_embeddings, position_embeddings, text_encoder,
            num_heads=num_heads, knowledge=knowledge,
        )

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json``, ``model.safetensors``, the texts and their embeddings."""
        from medklip.models.serialization import save_pretrained

        return save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> "MedKLIP":
        """Load a folder written by :meth:`save_pretrained` (no text encoder needed)."""
        from medklip.models.serialization import load_pretrained

        return load_pretrained(cls, directory, map_location)
