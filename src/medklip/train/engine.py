"""What every training loop of medklip shares (pre-training and fine-tuning): the device and the
torchrun environment, one AMP policy, DDP wrapping with synchronised BatchNorm, seeded loaders,
atomic checkpoints, CSV + TensorBoard logs that a resume never duplicates, and cleanup of the
process group whatever happens. Each trainer keeps only its task."""
from __future__ import annotations

import contextlib
import csv
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler

from medklip.errors import ConfigError
from medklip.extras import require
from medklip.models.factory import resolve_device
from medklip.train.checkpoint import load_checkpoint, save_checkpoint
from medklip.train.distributed import (
    DistEnv,
    cleanup_distributed,
    convert_sync_batchnorm,
    setup_distributed,
)

logger = logging.getLogger(__name__)

AMP_SETTINGS = ("auto", "bf16", "none")
"""``auto``: bf16 autocast on a GPU that supports it, fp32 otherwise; ``bf16``: bf16 autocast on a
GPU (fp32 on a CPU, where bf16 is slower on most machines); ``none``: fp32."""


def check_amp(setting: str) -> str:
    if setting not in AMP_SETTINGS:
        raise ConfigError(f"amp must be one of {', '.join(AMP_SETTINGS)}, got {setting!r}")
    return setting


def check_device(name: str) -> str:
    """``auto`` or a device torch understands (``cpu``, ``cuda``, ``cuda:1``...)."""
    if name != "auto":
        try:
            torch.device(name)
        except (RuntimeError, TypeError) as exc:
            raise ConfigError(f"device {name!r} is not a torch device (use auto, cpu, cuda or cuda:N)") from exc
    return name


def amp_enabled(device: torch.device, setting: str) -> bool:
    """The one AMP policy: bf16 autocast only on a CUDA device that supports bf16."""
    check_amp(setting)
    return device.type == "cuda" and setting != "none" and torch.cuda.is_bf16_supported()


class RunLog:
    """``train_log.csv`` (every process may write nothing but the main one) and TensorBoard.

    On resume the CSV keeps only the rows up to the checkpoint's step, so a run killed after it
    logged more steps than it saved never shows a step twice."""

    def __init__(self, folder: Path, fields: Sequence[str], resume_step: int | None = None,
                 enabled: bool = True) -> None:
        self.enabled, self.fields = enabled, list(fields)
        self.path = folder / "train_log.csv"
        self.file: Any = None
        self.tb: Any = None
        if not enabled:
            return
        kept: list[dict] = []
        if resume_step is not None and self.path.is_file():
            with self.path.open(newline="") as f:
                kept = [r for r in csv.DictReader(f) if _step(r) <= resume_step]
        self.file = self.path.open("w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=self.fields, extrasaction="ignore")
        self.writer.writeheader()
        self.writer.writerows(kept)
        self.file.flush()
        summary_writer = require("torch.utils.tensorboard", "train").SummaryWriter
        self.tb = summary_writer(str(folder / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)

    def log(self, row: dict, scalars: dict[str, float] | None = None) -> None:
        """Append ``row`` to the CSV; ``scalars`` (name -> value) go to TensorBoard at its step."""
        if not self.enabled:
            return
        self.writer.writerow(row)
        self.file.flush()
        for name, value in (scalars or {}).items():
            if value is not None and value == value:
                self.tb.add_scalar(name, float(value), int(row["step"]))

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()
        self.enabled = False


def _step(row: dict) -> int:
    try:
        return int(float(row.get("step") or 0))
    except ValueError:
        return 0


class Engine:
    """Device, distributed environment and AMP of one training run, and its shared machinery."""

    def __init__(self, device: str, amp: str, output: str | Path) -> None:
        self.device = resolve_device(check_device(device))
        self.env: DistEnv = setup_distributed(self.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.amp = amp_enabled(self.device, amp)
        self.output = Path(output)
        self.output.mkdir(parents=True, exist_ok=True)

    @property
    def is_main(self) -> bool:
        return self.env.is_main

    @property
    def world_size(self) -> int:
        return self.env.world_size

    def prepare(self, model: nn.Module, sync_bn: bool = True) -> tuple[nn.Module, nn.Module]:
        """``(model, wrapped)``: the model on the device (SyncBatchNorm under DDP), and what the
        forward pass goes through (the DDP wrapper, or the model itself)."""
        if self.env.enabled and sync_bn:
            model = convert_sync_batchnorm(model, self.device)
        model = model.to(self.device)
        if not self.env.enabled:
            return model, model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return model, DistributedDataParallel(model, device_ids=ids)

    def autocast(self) -> AbstractContextManager:
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()

    def loader(self, dataset: Dataset, batch_size: int, workers: int, seed: int,
               sampler: Sampler | None = None, collate_fn: Callable | None = None) -> DataLoader:
        """A loader with its own seeded generator (a DataLoader otherwise draws its seed from the
        global RNG, which would shift dropout after a resume)."""
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=workers,
                          pin_memory=self.device.type == "cuda", persistent_workers=False,
                          generator=torch.Generator().manual_seed(seed), collate_fn=collate_fn)

    def save(self, state: dict, name: str = "checkpoint.pt") -> None:
        """Write a checkpoint atomically (main process only)."""
        if self.is_main:
            save_checkpoint(self.output / name, state)

    @staticmethod
    def load(path: str | Path) -> dict:
        """A checkpoint written by :meth:`save` (a run folder means its ``checkpoint.pt``)."""
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        for torn in folder.glob(".checkpoint.pt.*.tmp"):  # a write cut short by a crash; the last save is intact
            logger.info("removing %s, a checkpoint write that did not finish", torn)
            torn.unlink(missing_ok=True)
        return load_checkpoint(path / "checkpoint.pt" if path.is_dir() else path)

    def close(self) -> None:
        cleanup_distributed()
