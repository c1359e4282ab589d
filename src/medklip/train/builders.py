"""Building what a pre-training run needs from its config: data, model, optimiser."""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from medklip.config_utils import to_dict
from medklip.data.image_io import ImageCache
from medklip.data.manifest import ManifestRow, read_manifest
from medklip.data.pretrain import PretrainDataset
from medklip.data.synthetic.world import WORLD_VERSION
from medklip.data.transforms import eval_transform, train_transform
from medklip.errors import ConfigError
from medklip.knowledge import KnowledgeBase, read_description_variants, resolve_descriptions
from medklip.labels import UNMENTIONED
from medklip.models import MedKLIP
from medklip.reports import ReportFilter
from medklip.reports.targets import report_targets
from medklip.train.config import PretrainConfig

if TYPE_CHECKING:  # pragma: no cover
    from medklip.text import TextEncoder

logger = logging.getLogger(__name__)


MANIFEST_ERRORS = "manifest_errors.jsonl"
"""In a run folder: the manifest rows left out (bad rows, missing images found before training,
images that failed to decode during training), one JSON object per line."""


def record_manifest_errors(output: Path, errors: list[dict], fresh: bool = False) -> None:
    """Write (``fresh``) or append rows to the run's :data:`MANIFEST_ERRORS` file."""
    with (output / MANIFEST_ERRORS).open("w" if fresh else "a", encoding="utf-8") as f:
        for e in errors:
            f.write(json.dumps(e, ensure_ascii=False) + "\n")


def manifest_rows(config: PretrainConfig, output: Path, is_main: bool,
                  progress: bool) -> tuple[dict[str, list[ManifestRow]], int]:
    """Rows per split and the number of rows left out (listed in the run's manifest_errors.jsonl);
    the synthetic world is generated first when no manifest is given."""
    manifest = config.data.manifest
    if manifest is None:
        from medklip.data.synthetic import generate_world

        root = Path(config.data.world_dir)
        if is_main:
            generate_world(root, config.data.world, workers=max(1, config.data.workers), progress=progress)
        _barrier()
        manifest = str(root / "manifest.jsonl")
    rows, errors = read_manifest(manifest)
    if is_main:
        record_manifest_errors(output, [{"where": e.where, "error": e.error} for e in errors], fresh=True)
    if errors and is_main:
        logger.warning("%d manifest rows cannot be used and are left out (first: %s: %s); see %s", len(errors),
                       errors[0].where, errors[0].error, output / MANIFEST_ERRORS)
    by_split: dict[str, list[ManifestRow]] = {"train": [], "validation": [], "test": []}
    for r in rows:
        by_split[r.split].append(r)
    if not by_split["train"]:
        raise ConfigError(f"{manifest}: no usable training rows ({len(errors)} rows left out; see "
                          f"{output / MANIFEST_ERRORS})")
    return by_split, len(errors)


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def reported_entities(rows: Sequence[ManifestRow], kb: KnowledgeBase, report_filter: ReportFilter) -> list[str]:
    """The pre-training entities of ``kb`` that at least one of ``rows``' reports mentions
    (present, absent or uncertain), in query order: ``text.entities: reported``."""
    names = [e.name for e in kb.pretraining_entities]
    mentioned = np.zeros(len(names), dtype=bool)
    for r in rows:
        triplets = r.triplets if r.triplets is not None else report_filter.extract(r.report or "")
        mentioned |= report_targets(triplets, names, kb.positions).exist != UNMENTIONED
    return [n for n, m in zip(names, mentioned) if m]


def query_knowledge_base(config: PretrainConfig, kb: KnowledgeBase, rows: Sequence[ManifestRow],
                         report_filter: ReportFilter) -> KnowledgeBase:
    """``kb`` with the query set ``text.entities`` asks for."""
    if config.text.entities == "all":
        return kb
    names = reported_entities(rows, kb, report_filter)
    if not names:
        raise ConfigError("text.entities: reported, but no training report mentions any entity of the knowledge base")
    logger.info("queries: the %d of %d pre-training entities the training reports mention", len(names),
                len(kb.pretraining_entities))
    return kb.with_queries(names)


def build_datasets(config: PretrainConfig, rows: dict[str, list[ManifestRow]], kb: KnowledgeBase,
                   entity_names: list[str], report_filter: ReportFilter | None = None
                   ) -> tuple[PretrainDataset, PretrainDataset | None]:
    size = config.model.image_size
    cache = ImageCache(config.data.image_cache, config.data.cache_short_side) if config.data.image_cache else None
    rf = report_filter or ReportFilter()
    train = PretrainDataset(
        rows["train"], entity_names, kb.positions,
        train_transform(size, (config.data.crop_scale_min, 1.0), config.data.hflip, config.data.randaugment),
        seed=config.run.seed, report_filter=rf, image_cache=cache)
    val = None
    if rows["validation"]:
        val = PretrainDataset(rows["validation"], entity_names, kb.positions, eval_transform(size),
                              seed=config.run.seed + 1, report_filter=rf, image_cache=cache)
    return train, val


def knowledge_base(config: PretrainConfig) -> KnowledgeBase:
    """The packaged knowledge base, with ``text.knowledge``'s descriptions (the first of each
    entity is its query; the others are its variants)."""
    return KnowledgeBase.load(resolve_descriptions(config.text.knowledge)) if config.text.knowledge else \
        KnowledgeBase.default()


def description_variants(config: PretrainConfig) -> dict[str, list[str]]:
    """Every description ``text.knowledge`` gives, by entity ({} without it)."""
    return read_description_variants(resolve_descriptions(config.text.knowledge)) if config.text.knowledge else {}


def model_descriptions(variants: dict[str, list[str]], kb: KnowledgeBase) -> dict[str, str | list[str]]:
    """The descriptions of ``text.knowledge`` (``variants``) for entities outside the queries
    (saved with the model; several for one entity are queried as an ensemble)."""
    return {e.name: e.texts if e.variants else e.description for e in kb.entities
            if not e.pretraining and e.name in variants}


def variant_bank(config: PretrainConfig, model: MedKLIP,
                 variants: dict[str, list[str]]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(bank [E, K, text_dim], counts [E])``: every description of each query entity (the first
    is its query), for drawing one per step; None without ``text.description_variants``."""
    if not config.text.description_variants:
        return None
    texts = [variants.get(name, [text]) for name, text in zip(model.entity_names, model.entity_texts)]
    encoder = text_encoder(config)
    flat = encoder.encode([t for group in texts for t in group]).float()
    width = max(len(group) for group in texts)
    bank = torch.empty(len(texts), width, flat.shape[1])
    start = 0
    for i, group in enumerate(texts):
        rows = flat[start:start + len(group)]
        bank[i] = torch.cat([rows, rows[:1].expand(width - len(group), -1)])
        start += len(group)
    logger.info("description variants: %d entities with several descriptions (up to %d)",
                sum(len(g) > 1 for g in texts), width)
    return bank, torch.tensor([len(g) for g in texts])


def text_encoder(config: PretrainConfig) -> TextEncoder:
    """The frozen text encoder of ``config.text`` (model, pooling, token limit, special tokens, cache)."""
    from medklip.text import TextEncoder

    return TextEncoder(config.text.encoder, pooling=config.text.pooling, max_length=config.text.max_length,
                       cache_dir=config.text.cache_dir, special_tokens=config.text.special_tokens)


def build_model(config: PretrainConfig, kb: KnowledgeBase) -> MedKLIP:
    encoder = text_encoder(config)
    # encode first: loading the encoder draws from torch's RNG only when the cache is cold,
    # so the model's initialisation is seeded after it and does not depend on the cache
    encoder.encode([e.description for e in kb.pretraining_entities] + kb.position_texts())
    torch.manual_seed(config.run.seed)
    return MedKLIP.from_knowledge_base(config.model, kb, encoder)  # records the encoder, query max_length 64


def training_record(config: PretrainConfig) -> dict:
    """What a saved model records about its training (shown in its model card and the web page)."""
    if config.data.manifest is None:
        world = config.data.world
        data, text = "synthetic", (f"medklip's embedded synthetic chest X-ray world, version {WORLD_VERSION} "
                                   f"({world.train} training studies, {world.image_size} px, seed {world.seed})")
    else:
        data, text = f"manifest:{Path(config.data.manifest).name}", f"images and reports of {config.data.manifest}"
    return {"data": data, "description": text, "config": to_dict(config)}


def build_optimizer(model: torch.nn.Module, config: PretrainConfig,
                    device: torch.device | None = None) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and normalisation weights; PyTorch's fused kernel."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": config.optim.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return adamw(groups, config.optim.lr, device or torch.device("cpu"))


def adamw(params, lr: float, device: torch.device, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """AdamW with PyTorch's fused kernel, on a GPU and on a CPU (one kernel per parameter instead
    of a chain of multi-tensor ops: the ResNet-50 pre-training step 2.5% faster on a 2-core CPU than
    with ``foreach``, benchmarks/training_levers.py); another device gets the multi-tensor one."""
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused, foreach=None if fused else True)
