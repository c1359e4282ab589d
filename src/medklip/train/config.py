"""Pre-training configuration. Defaults are the paper's; ``configs/`` holds ready-made ones."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medklip.data.synthetic import WorldConfig
from medklip.models.config import MedKLIPConfig


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
    amp: str = "auto"
    """"auto": bf16 autocast on a GPU that supports it, fp32 otherwise; "bf16"; "none"."""


@dataclass
class TextConfig:
    encoder: str | None = None
    """Hub name or local folder; None = the packaged offline MiniLM."""
    pooling: str = "cls"
    max_length: int = 64
    cache_dir: str | None = None


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
