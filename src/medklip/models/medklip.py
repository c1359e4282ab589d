"""The MedKLIP model: image patches + entity-description queries -> existence, position, grounding."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from medklip.data.preprocess import PreprocessConfig
from medklip.errors import UnknownEntityError
from medklip.knowledge import KnowledgeBase, close_names_hint, normalize_name
from medklip.labels import PRESENT
from medklip.models import hub, official, serialization
from medklip.models.config import MedKLIPConfig
from medklip.models.embedding import embed_knowledge, encoder_record
from medklip.models.fusion import FusionDecoder, fuse_per_sample
from medklip.models.image_encoder import ImageEncoder
from medklip.models.outputs import MedKLIPOutput
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
def scale_attention_init(model: MedKLIP, qk_std: float = 0.1) -> None:
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


@torch.no_grad()
def restrict_to_query_span(projection: nn.Linear, queries: torch.Tensor) -> None:
    """The ``span`` query init: ``projection``'s weight ``W`` becomes ``W P``, ``P`` the orthogonal
    projector onto the row span of ``queries`` ``[Q, text_dim]`` (unchanged on every query, zero on
    every direction orthogonal to all of them). No queries: left as is."""
    if queries.shape[0] == 0:
        return
    _, singular, vh = torch.linalg.svd(queries.double(), full_matrices=False)
    basis = vh[singular > singular[0] * 1e-6]  # [rank, text_dim]
    weight = projection.weight.double()
    projection.weight.copy_((weight @ basis.T) @ basis)


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
            config.d_model, config.num_heads, config.dim_feedforward, config.dropout, config.num_layers,
            null_key=config.null_key,
        )
        self.feature_dropout = nn.Dropout(config.dropout)
        self.existence_head = nn.Linear(config.d_model, config.num_exist_classes)
        self.position_head = nn.Linear(config.d_model, config.text_dim)
        self.register_buffer("entity_embeddings", torch.empty(0, config.text_dim), persistent=False)
        self.register_buffer("position_embeddings", torch.empty(0, config.text_dim), persistent=False)
        self.set_queries(entity_embeddings, entity_names, entity_texts)
        self.set_positions(position_embeddings, position_names, position_texts)
        self.text_encoder_info: dict | None = None
        """Which text encoder made the embeddings (name, identity, pooling, max_length), when known."""
        self.preprocess_cfg = PreprocessConfig("medklip", config.image_size)
        """How an image file becomes this model's input (saved in ``config.json``)."""
        self.training_info: dict | None = None
        """What the model was trained on: ``data``, ``description``, ``config``, ``metrics``."""
        self.calibration: dict | None = None
        """Post-hoc calibration of the entity queries' probabilities (``medklip calibrate``):
        ``method``, ``parameters`` {entity: {...}}, ``data``, ``fitted``, scores; None: uncalibrated."""
        self.descriptions: dict[str, str | list[str]] = {}
        """Descriptions of findings outside the queries that come with the model (those of the
        knowledge base it was trained with, e.g. the synthetic world's covid-19); zero-shot
        prediction prefers them to the packaged knowledge base's."""
        self.apply(init_weights)
        if config.init == "scaled-attention":
            scale_attention_init(self)
        if config.query_init == "span":
            restrict_to_query_span(self.query_projection, self.entity_embeddings)

    # ------------------------------------------------------------------ queries
    def _check_embeddings(self, emb: torch.Tensor, what: str, per_image: bool = False) -> torch.Tensor:
        emb = torch.as_tensor(emb, dtype=torch.float32)
        ranks = (2, 3) if per_image else (2,)
        if emb.ndim not in ranks or emb.shape[-1] != self.config.text_dim:
            raise ValueError(
                f"{what} must be [N, {self.config.text_dim}]{' or [B, N, ...]' if per_image else ''} "
                "(the model's text_dim), got "
                f"{tuple(emb.shape)}; use the text encoder the model was built with"
            )
        return emb.to(self.entity_embeddings.device)

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
        keys = [normalize_name(n) for n in self.entity_names]
        key = normalize_name(name)
        if key not in keys:
            raise UnknownEntityError(f"the model has no query {name!r}.{close_names_hint(name, keys)}")
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
        dropout_seeds: Sequence[int] | None = None,
    ) -> MedKLIPOutput:
        """Run the model.

        Args:
            images: normalised images ``[B,3,H,W]``.
            queries: optional entity embeddings ``[Q, text_dim]`` to use instead of the stored ones,
                or ``[B, Q, text_dim]``: a query set per image (phrase grounding).
            need_attentions: return per-layer cross-attention and heatmaps; False uses the fused
                attention kernel (faster, for training) and gives the same logits.
            dropout_seeds: in training, one seed per image: each image's dropout masks are drawn
                from its own seed (see :func:`~medklip.models.fusion.fuse_per_sample`).
        """
        patches, grid = self.image_encoder(images)
        return self.decode(patches, grid, queries, need_attentions=need_attentions, dropout_seeds=dropout_seeds)

    def decode(
        self,
        patches: torch.Tensor,
        grid: tuple[int, int],
        queries: torch.Tensor | None = None,
        *,
        need_attentions: bool = True,
        dropout_seeds: Sequence[int] | None = None,
    ) -> MedKLIPOutput:
        """Fuse precomputed patch features (:meth:`encode_image`) with a query set; several
        query sets can reuse one image encoding. ``dropout_seeds``: as in :meth:`forward`."""
        query_emb = self.entity_embeddings if queries is None else self._check_embeddings(queries, "queries", True)
        batch = patches.shape[0]
        if query_emb.ndim == 3 and query_emb.shape[0] != batch:
            raise ValueError(f"{query_emb.shape[0]} per-image query sets for {batch} images")
        q = self.query_projection(query_emb)
        q = q if q.ndim == 3 else q.unsqueeze(0).expand(batch, -1, -1)
        if dropout_seeds is not None and self.training:
            fused, attentions = fuse_per_sample(self.fusion, self.feature_dropout, q, patches, dropout_seeds,
                                                need_attentions)
        else:
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

    # --------------------------------------------------------------- building
    @classmethod
    def from_knowledge_base(
        cls,
        config: MedKLIPConfig | None = None,
        knowledge: KnowledgeBase | None = None,
        text_encoder: TextEncoder | None = None,
        entities: Sequence[str] | None = None,
    ) -> MedKLIP:
        """A freshly initialised model whose queries are the knowledge base's descriptions.

        ``entities`` defaults to the pre-training entities (the paper's 75);
        ``config.text_dim`` is set from the text encoder.
        """
        emb = embed_knowledge(knowledge, text_encoder, entities)
        config = config or MedKLIPConfig()
        if config.text_dim != emb.encoder.dim:
            config = MedKLIPConfig.from_dict({**config.to_dict(), "text_dim": emb.encoder.dim})
        model = cls(config, emb.entity_embeddings, emb.position_embeddings, entity_names=emb.entity_names,
                    position_names=emb.position_names, entity_texts=emb.entity_texts,
                    position_texts=emb.position_texts)
        model.text_encoder_info = encoder_record(emb.encoder)
        return model

    @classmethod
    def from_official_checkpoint(
        cls,
        path: str | Path,
        entity_embeddings: torch.Tensor | None = None,
        position_embeddings: torch.Tensor | None = None,
        text_encoder: TextEncoder | str | None = None,
        *,
        num_heads: int = 4,
        knowledge: KnowledgeBase | None = None,
    ) -> MedKLIP:
        """Load the official release's ``.pth`` (see :mod:`medklip.models.official`)."""
        return official.load_official_checkpoint(
            cls, path, entity_embeddings, position_embeddings, text_encoder,
            num_heads=num_heads, knowledge=knowledge,
        )

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json``, ``model.safetensors``, the texts and their embeddings."""
        return serialization.save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu",
                        revision: str | None = None) -> MedKLIP:
        """Load a folder written by :meth:`save_pretrained`, or a Hugging Face Hub repo id
        (``org/name`` at ``revision``; the local cache is used offline). No text encoder needed."""
        return serialization.load_pretrained(cls, directory, map_location, revision)

    def push_to_hub(self, repo_id: str, *, private: bool = True, revision: str | None = None,
                    commit_message: str = "Upload MedKLIP model", token: str | None = None) -> str:
        """Upload this model's folder (with its model card) to the Hub; returns the commit id."""
        return hub.push_to_hub(self, repo_id, private=private, revision=revision,
                               commit_message=commit_message, token=token)
