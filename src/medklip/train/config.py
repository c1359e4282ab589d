"""Pre-training configuration. Defaults are the paper's; ``configs/`` holds ready-made ones.
Each section validates itself when built (a bad value is a :class:`ConfigError` naming it)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medklip.config_utils import require
from medklip.data.synthetic import WorldConfig
from medklip.models.config import MedKLIPConfig
from medklip.text.constants import POOLINGS, SPECIAL_TOKENS
from medklip.train.engine import check_amp, check_device


@dataclass
class DataConfig:
    manifest: str | None = None
    """A manifest (see ``medklip.data.manifest``); None = the embedded synthetic world."""
    world_dir: str = "runs/synthetic-world"
    world: WorldConfig = field(default_factory=WorldConfig)
    hflip: bool = True
    randaugment: bool = True
    crop_scale_min: float = 0.2
    workers: int = 4
    image_cache: str | None = None
    """Folder for resized copies of the images (worth it for full-size DICOM / JPG)."""
    cache_short_side: int = 256

    def __post_init__(self) -> None:
        require(self.workers >= 0, "data.workers must be >= 0")
        require(0 < self.crop_scale_min <= 1, "data.crop_scale_min must be in (0, 1]")
        require(self.cache_short_side >= 32, "data.cache_short_side must be >= 32")


@dataclass
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.02
    warmup_lr: float = 1e-5
    min_lr: float = 1e-5
    warmup_epochs: float = 5
    epochs: int = 60
    batch_size: int = 32
    """Global batch (summed over processes, before gradient accumulation)."""
    grad_accum: int = 1
    clip_grad: float | None = None
    position_loss_weight: float = 1.0
    """Weight of the position contrastive loss (the paper: 1; 0 is its ablation)."""
    amp: str = "auto"
    """"auto": bf16 autocast on a GPU that supports it, fp32 otherwise; "bf16"; "none"."""

    def __post_init__(self) -> None:
        require(self.lr > 0 and self.warmup_lr >= 0 and self.min_lr >= 0, "optim learning rates must be positive")
        require(self.weight_decay >= 0, "optim.weight_decay must be >= 0")
        require(self.epochs >= 1 and self.batch_size >= 1 and self.grad_accum >= 1,
                "optim.epochs, optim.batch_size and optim.grad_accum must be >= 1")
        require(self.warmup_epochs >= 0, "optim.warmup_epochs must be >= 0")
        require(self.clip_grad is None or self.clip_grad > 0, "optim.clip_grad must be positive (or null)")
        require(self.position_loss_weight >= 0, "optim.position_loss_weight must be >= 0")
        check_amp(self.amp)


ENTITY_SETS = ("all", "reported")
MODEL_SELECTIONS = ("validation-loss", "final")


@dataclass
class TextConfig:
    encoder: str | None = None
    """Hub name or local folder; None = the packaged offline MiniLM."""
    pooling: str = "cls"
    max_length: int = 64
    cache_dir: str | None = None
    knowledge: str | None = None
    """Descriptions replacing or adding to the packaged knowledge base's (a file, or a packaged
    name: ``synthetic-world``); those of entities outside the queries are saved with the model."""
    special_tokens: str = "cls-sep"
    """``cls-sep`` ([CLS] X [SEP]) or ``cls-only`` (the release's [CLS] X, padded to max_length; the
    ``paper`` config); recorded with the model, and added queries are encoded the same way."""
    description_variants: bool = False
    """Where the descriptions file lists several descriptions of an entity, draw one per entity
    and step (the first is the saved query); ``text.knowledge`` must be set."""
    entities: str = "all"
    """The model's queries: ``all`` pre-training entities of the knowledge base (the release's 75),
    or only those the training reports mention (``reported``: present, absent or uncertain in at
    least one report). A query no report mentions never enters the loss but costs decoder time
    (the demo world's reports mention 33 of the 75: the quick profile's model step is about 1.2x
    faster); the others stay queryable by description."""

    def __post_init__(self) -> None:
        require(self.pooling in POOLINGS, f"text.pooling must be one of {', '.join(POOLINGS)}")
        require(self.special_tokens in SPECIAL_TOKENS, f"text.special_tokens must be one of {', '.join(SPECIAL_TOKENS)}")
        require(not self.description_variants or bool(self.knowledge),
                "text.description_variants needs text.knowledge (a file with several descriptions per entity)")
        require(self.max_length >= 8, "text.max_length must be >= 8")
        require(self.entities in ENTITY_SETS, f"text.entities must be one of {', '.join(ENTITY_SETS)}")


@dataclass
class RunConfig:
    output: str = "runs/pretrain"
    seed: int = 0
    device: str = "auto"
    save_every_steps: int = 500
    log_every_steps: int = 10
    sync_bn: bool = True
    """SyncBatchNorm under DDP, so N processes compute what one process would."""
    max_steps: int | None = None
    """Stop after this many optimiser steps (smoke tests)."""
    select_model: str = "validation-loss"
    """What ``best/`` holds: the model of the epoch with the lowest validation loss
    (``validation-loss``) or the final model (``final``; what the release ships, its
    ``checkpoint_final.pth``: its pre-training logs the validation loss and keeps the last
    epoch). With a validation split too small to rank epochs, the lowest loss picks by noise."""
    dropout_per_sample: bool = False
    """Draw each image's dropout masks from its own seed (run seed, epoch, dataset index) instead of
    the process's random stream: the same run on N processes (DDP) then trains what it trains on
    one, with dropout on. Costs one decoder call per image instead of one per batch."""

    def __post_init__(self) -> None:
        check_device(self.device)
        require(self.save_every_steps >= 1 and self.log_every_steps >= 1,
                "run.save_every_steps and run.log_every_steps must be >= 1")
        require(self.max_steps is None or self.max_steps >= 1, "run.max_steps must be >= 1 (or null)")
        require(self.select_model in MODEL_SELECTIONS,
                f"run.select_model must be one of {', '.join(MODEL_SELECTIONS)}, got {self.select_model!r}")


@dataclass
class PretrainConfig:
    model: MedKLIPConfig = field(default_factory=MedKLIPConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    text: TextConfig = field(default_factory=TextConfig)
    run: RunConfig = field(default_factory=RunConfig)


def builtin_config(name: str) -> Path:
    """Path of a config shipped with medklip (``paper``, ``cpu-small``, ``demo``, ``demo-quick``)."""
    from medklip.config_utils import packaged_config

    return packaged_config("medklip.train", name)
