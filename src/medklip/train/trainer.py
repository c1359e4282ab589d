"""The pre-training loop: AdamW + warm-up/cosine, gradient accumulation, bf16 autocast on GPUs,
atomic checkpoints, exact resume, CSV + TensorBoard logs, DDP (torchrun)."""
from __future__ import annotations

import contextlib
import csv
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from medklip.config_utils import ConfigError, save_config, to_dict
from medklip.knowledge import KnowledgeBase
from medklip.models import MedKLIP, MedKLIPCriterion, pair_counts
from medklip.progress import Progress
from medklip.train import builders
from medklip.train.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from medklip.train.config import PretrainConfig
from medklip.train.distributed import (
    ShardedSampler,
    all_reduce_sum,
    cleanup_distributed,
    convert_sync_batchnorm,
    setup_distributed,
)
from medklip.train.schedule import cosine_with_warmup

logger = logging.getLogger(__name__)
LOG_FIELDS = ["step", "epoch", "lr", "loss", "existence", "position", "images_per_s"]


@dataclass
class PretrainResult:
    output: Path
    best_model: Path
    last_model: Path
    steps: int
    losses: list[float]
    best_val_loss: float | None


class _Logs:
    """CSV (always) and TensorBoard (main process)."""

    def __init__(self, folder: Path, resume: bool) -> None:
        self.csv_path = folder / "train_log.csv"
        fresh = not (resume and self.csv_path.is_file())
        self.file = self.csv_path.open("w" if fresh else "a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=LOG_FIELDS + ["val_loss"])
        if fresh:
            self.writer.writeheader()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(folder / "tensorboard"))
        except ImportError:  # pragma: no cover - tensorboard is a dependency
            self.tb = None

    def log(self, row: dict) -> None:
        self.writer.writerow(row)
        self.file.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("step", "epoch") and v is not None and v != "":
                    self.tb.add_scalar(f"train/{k}" if k != "val_loss" else "val/loss", float(v), int(row["step"]))

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def global_loss(criterion: MedKLIPCriterion, model: MedKLIP, out, batch: dict,
                world: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The loss of the whole global batch, however it is split over processes: each process sums
    its pairs and divides by the global count (x world size, as DDP averages gradients)."""
    counts = all_reduce_sum(pair_counts(batch["exist"]))
    parts = criterion(out, batch["exist"], batch["position_index"], model.position_embeddings, counts)
    return parts.total * world, parts.existence.detach(), parts.position.detach()


class Pretrainer:
    def __init__(self, config: PretrainConfig, resume: str | Path | None = None, progress: bool = True) -> None:
        self.config, self.resume, self.progress = config, resume, progress

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        cfg = self.config
        self.device = builders.resolve_device(cfg.run.device)
        self.env = setup_distributed(self.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.out = Path(cfg.run.output)
        self.out.mkdir(parents=True, exist_ok=True)
        self.kb = KnowledgeBase.default()
        rows = builders.manifest_rows(cfg, self.out, self.env.is_main, self.progress and self.env.is_main)
        model = builders.build_model(cfg, self.kb)
        cfg.model = model.config  # text_dim comes from the text encoder
        self.criterion = MedKLIPCriterion()
        model.training_info = builders.training_record(cfg)
        if self.env.is_main:
            save_config(cfg, self.out / "config.yaml")
        self.train_set, self.val_set = builders.build_datasets(cfg, rows, self.kb, model.entity_names)
        if self.env.enabled and cfg.run.sync_bn:
            model = convert_sync_batchnorm(model, self.device)
        self.model = model.to(self.device)
        self.ddp = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None) \
            if self.env.enabled else self.model
        o = cfg.optim
        if o.batch_size % (self.env.world_size * o.grad_accum):
            raise ConfigError(f"optim.batch_size {o.batch_size} must be divisible by processes x grad_accum "
                              f"({self.env.world_size} x {o.grad_accum})")
        self.micro_global = o.batch_size // o.grad_accum
        self.sampler = ShardedSampler(len(self.train_set), self.micro_global, self.env.rank, self.env.world_size,
                                      seed=cfg.run.seed)
        self.micro_per_epoch = self.sampler.num_batches()
        if self.micro_per_epoch < o.grad_accum:
            raise ConfigError(f"{len(self.train_set)} training images are fewer than one batch of {o.batch_size}")
        self.steps_per_epoch = self.micro_per_epoch // o.grad_accum
        total = self.steps_per_epoch * o.epochs
        self.total_steps = min(total, cfg.run.max_steps) if cfg.run.max_steps else total
        self.optimizer = builders.build_optimizer(self.model, cfg)
        self.scheduler = cosine_with_warmup(self.optimizer, total, round(o.warmup_epochs * self.steps_per_epoch),
                                            o.warmup_lr, o.min_lr)
        self.amp = self.device.type == "cuda" and (o.amp == "bf16" or (o.amp == "auto" and torch.cuda.is_bf16_supported()))
        self.epoch = self.micro_done = self.step = 0
        self.best_val: float | None = None
        self._resume_rng: dict | None = None
        if self.resume:
            self._load(self.resume)

    def _loader(self, dataset, sampler) -> DataLoader:
        # its own generator: a DataLoader iterator otherwise draws its seed from the global RNG,
        # which would shift dropout after a resume (samples are seeded per index anyway)
        return DataLoader(dataset, batch_size=self.micro_global // self.env.world_size, sampler=sampler,
                          num_workers=self.config.data.workers, pin_memory=self.device.type == "cuda",
                          persistent_workers=False, generator=torch.Generator().manual_seed(self.config.run.seed))

    # ------------------------------------------------------------ checkpoints
    def _state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "epoch": self.epoch, "micro_done": self.micro_done,
                "step": self.step, "best_val": self.best_val, "rng": rng_state(), "config": to_dict(self.config),
                "world_size": self.env.world_size}

    def _save(self, name: str = "checkpoint.pt") -> None:
        if self.env.is_main:
            save_checkpoint(self.out / name, self._state())

    def _load(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / "checkpoint.pt"
        state = load_checkpoint(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.micro_done, self.step = state["epoch"], state["micro_done"], state["step"]
        self.best_val = state["best_val"]
        self._resume_rng = state["rng"]  # applied just before the loop (setup may draw numbers)
        logger.info("resumed from %s at epoch %d, step %d", path, self.epoch, self.step)

    # ------------------------------------------------------------------- loop
    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()

    @torch.no_grad()
    def validate(self) -> float | None:
        if self.val_set is None:
            return None
        self.model.eval()
        sampler = ShardedSampler(len(self.val_set), self.micro_global, self.env.rank, self.env.world_size,
                                 shuffle=False, drop_last=False)
        sums = torch.zeros(4, device=self.device)  # existence sum, position sum, their pair counts
        for batch in self._loader(self.val_set, sampler):
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with self._autocast():
                out = self.model(batch["image"], need_attentions=False)
            ce, cl, counts = self.criterion.sums(out, batch["exist"], batch["position_index"],
                                                 self.model.position_embeddings)
            sums += torch.stack([ce.detach().float(), cl.detach().float(), *counts.to(self.device)])
        sums = all_reduce_sum(sums)
        self.model.train()
        c = self.criterion  # the validation set's loss: every pair weighs the same, as in training
        return float(c.existence_weight * sums[0] / sums[2].clamp(min=1) + c.position_weight * sums[1] / sums[3].clamp(min=1))

    def run(self) -> PretrainResult:
        try:
            self._setup()
            return self._train()
        finally:
            cleanup_distributed()

    def _train(self) -> PretrainResult:
        cfg, o = self.config, self.config.optim
        logs = _Logs(self.out, bool(self.resume)) if self.env.is_main else None
        losses: list[float] = []
        bar = Progress(self.total_steps, "pre-training", unit="step", enabled=self.env.is_main and self.progress,
                       initial=self.step)
        self.model.train()
        # the training RNG (dropout) starts here, after everything that might draw numbers
        # during setup (first-time imports, an encoder loaded on a cold cache, ...)
        if self._resume_rng is not None:
            set_rng_state(self._resume_rng)
        else:
            torch.manual_seed(cfg.run.seed + 1 + self.env.rank)
        tick, seen = time.perf_counter(), 0
        while self.step < self.total_steps and self.epoch < o.epochs:
            self.train_set.set_epoch(self.epoch)
            self.sampler.set_epoch(self.epoch, start_batch=self.micro_done)
            running = torch.zeros(3)
            for batch in self._loader(self.train_set, self.sampler):
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                with self._autocast():
                    out = self.ddp(batch["image"], need_attentions=False)
                loss, ce, cl = global_loss(self.criterion, self.model, out, batch, self.env.world_size)
                (loss / o.grad_accum).backward()
                running += torch.stack([loss.detach().cpu() / self.env.world_size, ce.cpu(), cl.cpu()])
                self.micro_done += 1
                seen += len(batch["image"]) * self.env.world_size
                if self.micro_done % o.grad_accum:
                    continue
                if o.clip_grad:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), o.clip_grad)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                values = all_reduce_sum(running.to(self.device)).cpu() / o.grad_accum
                running.zero_()
                losses.append(float(values[0]))
                if not math.isfinite(losses[-1]):
                    raise FloatingPointError(f"loss became {losses[-1]} at step {self.step}; lower optim.lr")
                rate = seen / max(time.perf_counter() - tick, 1e-9)
                bar.set_postfix(loss=f"{losses[-1]:.3f}", img_s=f"{rate:.1f}", epoch=self.epoch)
                bar.update(1)
                if logs and (self.step % cfg.run.log_every_steps == 0 or self.step == 1):
                    logs.log({"step": self.step, "epoch": self.epoch, "lr": self.scheduler.get_last_lr()[0],
                              "loss": losses[-1], "existence": float(values[1]), "position": float(values[2]),
                              "images_per_s": round(rate, 2), "val_loss": ""})
                if self.step % cfg.run.save_every_steps == 0:
                    self._save()
                if self.step >= self.total_steps:
                    break
            if self.micro_done >= self.steps_per_epoch * o.grad_accum:
                self._end_epoch(logs)
        if self.micro_done:  # stopped inside an epoch (max_steps): keep a resumable state
            self._save()
        bar.close()
        best, last = self.out / "best", self.out / "last"
        if self.env.is_main:
            self.model.save_pretrained(last)
            if not (best / "config.json").is_file():
                self.model.save_pretrained(best)
            logs.close()
        return PretrainResult(self.out, best, last, self.step, losses, self.best_val)

    def _end_epoch(self, logs: _Logs | None) -> None:
        val = self.validate()
        self.epoch += 1
        self.micro_done = 0
        if val is not None and (self.best_val is None or val < self.best_val):
            self.best_val = val
            if self.env.is_main:
                self.model.save_pretrained(self.out / "best")
        if logs:
            logs.log({"step": self.step, "epoch": self.epoch, "lr": "", "loss": "", "existence": "",
                      "position": "", "images_per_s": "", "val_loss": "" if val is None else val})
        self._save()
        logger.info("epoch %d done: step %d, validation loss %s", self.epoch, self.step, val)


def pretrain(config: PretrainConfig, resume: str | Path | None = None, progress: bool = True) -> PretrainResult:
    """Run pre-training as configured; returns where the best / last models are."""
    return Pretrainer(config, resume, progress).run()
