"""Fine-tuning configuration (YAML + ``--set`` overrides, as for pre-training); each section
validates itself when built."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medklip.config_utils import require
from medklip.data.profiles import PROFILES
from medklip.models.config import BACKBONE_CHANNELS
from medklip.train.engine import check_amp, check_device

TASKS = ("classify", "segment", "grade")


@dataclass
class FinetuneData:
    dataset: str = "synthetic"
    """A benchmark name (``medklip evaluate --list``) or ``synthetic``."""
    root: str = "runs/finetune-world"
    """The dataset folder; for ``synthetic`` it is written there first when missing."""
    synthetic_images: int = 1000
    synthetic_seed: int = 1
    """A different seed from pre-training's world, so fine-tuning images are new."""
    fraction: float = 1.0
    """Share of the training split used (the paper: 0.01, 0.1, 1.0), stratified and seeded."""
    split_file: str | None = None
    classes: list[str] | None = None
    """Classes to classify (default: all of the dataset)."""
    labels: str | None = None
    """edema-severity: the label CSV."""
    image_cache: str | None = None
    """Folder for resized copies of the images (worth it for full-size DICOMs)."""
    workers: int = 2

    def __post_init__(self) -> None:
        require(0 < self.fraction <= 1, "data.fraction must be in (0, 1]")
        require(self.workers >= 0, "data.workers must be >= 0")
        require(self.synthetic_images >= 10, "data.synthetic_images must be >= 10")


@dataclass
class FinetuneModel:
    backbone: str = "resnet50"
    """Used for ``init: scratch``; an initialising model brings its own."""
    image_size: int = 224
    preprocess: str | None = None
    """How image files are decoded: a preprocessing profile (``medklip``, ``release-cxr14``,
    ``release-rsna``); default: the initialising model's own (an official checkpoint's is the
    release's), ``medklip`` from scratch."""

    def __post_init__(self) -> None:
        require(self.backbone in BACKBONE_CHANNELS, f"model.backbone must be one of {', '.join(BACKBONE_CHANNELS)}")
        require(self.image_size >= 32, "model.image_size must be >= 32")
        require(self.preprocess is None or self.preprocess in PROFILES,
                f"model.preprocess must be one of {', '.join(PROFILES)} (or null)")


@dataclass
class FinetuneOptim:
    lr: float = 1e-4
    weight_decay: float = 1e-4
    epochs: int = 50
    warmup_epochs: float = 1
    batch_size: int = 32
    patience: int = 10
    """Stop when the validation metric has not improved for this many epochs."""
    amp: str = "auto"

    def __post_init__(self) -> None:
        require(self.lr > 0 and self.weight_decay >= 0, "optim.lr must be > 0 and optim.weight_decay >= 0")
        require(self.epochs >= 1 and self.batch_size >= 1 and self.patience >= 1,
                "optim.epochs, optim.batch_size and optim.patience must be >= 1")
        require(self.warmup_epochs >= 0, "optim.warmup_epochs must be >= 0")
        check_amp(self.amp)


@dataclass
class FinetuneRun:
    output: str = "runs/finetune"
    seed: int = 0
    device: str = "auto"
    max_steps: int | None = None
    """Stop after this many optimiser steps (smoke tests)."""
    log_every_steps: int = 10
    save_every_steps: int | None = 500
    """Also checkpoint inside an epoch every this many optimiser steps (a long epoch killed midway
    resumes at its last such step, not at its start); null: at the end of each epoch only."""

    def __post_init__(self) -> None:
        check_device(self.device)
        require(self.max_steps is None or self.max_steps >= 1, "run.max_steps must be >= 1 (or null)")
        require(self.save_every_steps is None or self.save_every_steps >= 1,
                "run.save_every_steps must be >= 1 (or null)")


@dataclass
class FinetuneConfig:
    task: str = "classify"
    init: str = "scratch"
    """``scratch``, a ``save_pretrained`` folder, or an official ``.pth``: conv1..layer3 come from it."""
    data: FinetuneData = field(default_factory=FinetuneData)
    model: FinetuneModel = field(default_factory=FinetuneModel)
    optim: FinetuneOptim = field(default_factory=FinetuneOptim)
    run: FinetuneRun = field(default_factory=FinetuneRun)

    def __post_init__(self) -> None:
        require(self.task in TASKS, f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        require(bool(self.init), "init must be scratch, a model folder or an official .pth")


def builtin_finetune_config(name: str) -> Path:
    """A config shipped with medklip: ``paper`` or ``synthetic-small``."""
    from medklip.config_utils import packaged_config

    return packaged_config("medklip.finetune", name)
