"""The pre-training loop: AdamW + warm-up/cosine, gradient accumulation, the paper's loss
normalised over the global batch, exact resume, best model on validation loss. Device, AMP, DDP,
loaders, checkpoints and logs come from :class:`~medklip.train.engine.Engine`."""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from medklip.config_utils import save_config, to_dict
from medklip.data.pretrain import collate_pretrain
from medklip.errors import ConfigError, ImageReadError
from medklip.models import MedKLIP, MedKLIPCriterion, pair_counts
from medklip.progress import Progress
from medklip.reports import ReportFilter
from medklip.train import builders
from medklip.train.checkpoint import rng_state, set_rng_state
from medklip.train.config import PretrainConfig
from medklip.train.distributed import ShardedSampler, all_reduce_sum
from medklip.train.engine import Engine, RunLog
from medklip.train.schedule import cosine_with_warmup

logger = logging.getLogger(__name__)
LOG_FIELDS = ["step", "epoch", "lr", "loss", "existence", "position", "images_per_s", "val_loss"]


@dataclass
class PretrainResult:
    output: Path
    best_model: Path
    """The model ``run.select_model`` keeps: lowest validation loss, or the final model."""
    last_model: Path
    steps: int
    losses: list[float]
    """The mean training loss of each logging interval (``run.log_every_steps``)."""
    best_val_loss: float | None
    rows_left_out: int = 0
    """Manifest rows left out before training (bad rows, missing or empty images)."""
    unreadable_images: int = 0
    """Images that failed to decode during training (left out of their batch)."""


def global_loss(criterion: MedKLIPCriterion, model: MedKLIP, out, batch: dict,
                world: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The loss of the whole global batch, however it is split over processes: each process sums
    its pairs and divides by the global count (x world size, as DDP averages gradients)."""
    counts = all_reduce_sum(pair_counts(batch["exist"]))
    parts = criterion(out, batch["exist"], batch["position_index"], model.position_embeddings, counts)
    return parts.total * world, parts.existence.detach(), parts.position.detach()


class Pretrainer:
    """One pre-training run; ``config`` is copied, never changed."""

    def __init__(self, config: PretrainConfig, resume: str | Path | None = None, progress: bool = True) -> None:
        self.config, self.resume, self.progress = copy.deepcopy(config), resume, progress

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        cfg = self.config
        self.engine = engine = Engine(cfg.run.device, cfg.optim.amp, cfg.run.output)
        self.env, self.device, self.out = engine.env, engine.device, engine.output
        self.kb = builders.knowledge_base(cfg)
        rows, self.rows_left_out = builders.manifest_rows(cfg, self.out, engine.is_main,
                                                          self.progress and engine.is_main)
        self.unreadable = 0
        report_filter = ReportFilter()  # one for both: its sentence cache serves the second pass
        self.kb = builders.query_knowledge_base(cfg, self.kb, rows["train"], report_filter)
        model = builders.build_model(cfg, self.kb)
        variants = builders.description_variants(cfg)
        model.descriptions = builders.model_descriptions(variants, self.kb)
        bank = builders.variant_bank(cfg, model, variants)
        self.variants = None if bank is None else (bank[0].to(self.device), bank[1].to(self.device))
        cfg.model = model.config  # text_dim comes from the text encoder (our copy of the config)
        self.criterion = MedKLIPCriterion(position_weight=cfg.optim.position_loss_weight)
        model.training_info = builders.training_record(cfg)
        if engine.is_main:
            save_config(cfg, self.out / "config.yaml")
        self.train_set, self.val_set = builders.build_datasets(cfg, rows, self.kb, model.entity_names, report_filter)
        self.medklip = model
        self.model, self.ddp = engine.prepare(model.to(memory_format=torch.channels_last), cfg.run.sync_bn)
        o = cfg.optim
        if o.batch_size % (engine.world_size * o.grad_accum):
            raise ConfigError(f"optim.batch_size {o.batch_size} must be divisible by processes x grad_accum "
                              f"({engine.world_size} x {o.grad_accum})")
        self.micro_global = o.batch_size // o.grad_accum
        self.sampler = ShardedSampler(len(self.train_set), self.micro_global, self.env.rank, self.env.world_size,
                                      seed=cfg.run.seed)
        self.micro_per_epoch = self.sampler.num_batches()
        if self.micro_per_epoch < o.grad_accum:
            raise ConfigError(f"{len(self.train_set)} training images are fewer than one batch of {o.batch_size}")
        self.steps_per_epoch = self.micro_per_epoch // o.grad_accum
        total = self.steps_per_epoch * o.epochs
        self.total_steps = min(total, cfg.run.max_steps) if cfg.run.max_steps else total
        self.optimizer = builders.build_optimizer(self.model, cfg, self.device)
        self.scheduler = cosine_with_warmup(self.optimizer, total, round(o.warmup_epochs * self.steps_per_epoch),
                                            o.warmup_lr, o.min_lr)
        self.epoch = self.micro_done = self.step = 0
        self.best_val: float | None = None
        self._resume_rng: dict | None = None
        if self.resume:
            self._load(self.resume)

    def _loader(self, dataset, sampler):
        return self.engine.loader(dataset, self.micro_global // self.env.world_size, self.config.data.workers,
                                  self.config.run.seed, sampler, collate_pretrain)

    def _dropout_seeds(self, batch: dict) -> list[int] | None:
        """One dropout seed per image from (run seed, epoch, dataset index) with
        ``run.dropout_per_sample``; the trailing 1 keeps it apart from the augmentation's seed."""
        if not self.config.run.dropout_per_sample:
            return None
        return [hash((self.config.run.seed, self.epoch, int(i), 1)) & 0x7FFF_FFFF for i in batch["index"].tolist()]

    def _batch(self, batch: dict) -> dict:
        """The batch on the device; images that failed to decode are recorded and left out."""
        failures = batch.pop("failures")
        if failures:
            self.unreadable += len(failures)
            builders.record_manifest_errors(self.out, [{"where": image, "error": f"unreadable during training: {e}"}
                                                       for image, e in failures])
            logger.warning("left out %d unreadable image(s) (first: %s); see %s", len(failures), failures[0][1],
                           self.out / builders.MANIFEST_ERRORS)
        if "image" not in batch:
            raise ImageReadError(f"no image of a batch could be read (first: {failures[0][1]}); see "
                                 f"{self.out / builders.MANIFEST_ERRORS}")
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def _queries(self) -> torch.Tensor | None:
        """One description per entity, drawn for this step (``text.description_variants``)."""
        if self.variants is None:
            return None
        bank, counts = self.variants
        pick = (torch.rand(len(counts), device=bank.device) * counts).long()
        return bank[torch.arange(len(counts), device=bank.device), pick]

    # ------------------------------------------------------------ checkpoints
    def _state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "epoch": self.epoch, "micro_done": self.micro_done,
                "step": self.step, "best_val": self.best_val, "rng": rng_state(), "config": to_dict(self.config),
                "world_size": self.env.world_size}

    def _load(self, path: str | Path) -> None:
        state = self.engine.load(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.micro_done, self.step = state["epoch"], state["micro_done"], state["step"]
        self.best_val = state["best_val"]
        self._resume_rng = state["rng"]  # applied just before the loop (setup may draw numbers)
        logger.info("resumed from %s at epoch %d, step %d", path, self.epoch, self.step)

    # ------------------------------------------------------------------- loop
    @torch.no_grad()
    def validate(self) -> float | None:
        """The validation set's loss: every (image, entity) pair weighs the same, as in training."""
        if self.val_set is None:
            return None
        self.model.eval()
        sampler = ShardedSampler(len(self.val_set), self.micro_global, self.env.rank, self.env.world_size,
                                 shuffle=False, drop_last=False)
        sums = torch.zeros(4, device=self.device)  # existence sum, position sum, their pair counts
        for batch in self._loader(self.val_set, sampler):
            batch = self._batch(batch)
            with self.engine.autocast():
                out = self.model(batch["image"], need_attentions=False)
            ce, cl, counts = self.criterion.sums(out, batch["exist"], batch["position_index"],
                                                 self.medklip.position_embeddings)
            sums += torch.stack([ce.detach().float(), cl.detach().float(), *counts.to(self.device)])
        sums = all_reduce_sum(sums)
        self.model.train()
        c = self.criterion
        return float(c.existence_weight * sums[0] / sums[2].clamp(min=1)
                     + c.position_weight * sums[1] / sums[3].clamp(min=1))

    def run(self) -> PretrainResult:
        try:
            self._setup()
            return self._train()
        finally:
            if hasattr(self, "engine"):
                self.engine.close()

    def _train(self) -> PretrainResult:
        cfg, o = self.config, self.config.optim
        logs = RunLog(self.out, LOG_FIELDS, self.step if self.resume else None, enabled=self.engine.is_main)
        losses: list[float] = []
        bar = Progress(self.total_steps, "pre-training", unit="step", enabled=self.engine.is_main and self.progress,
                       initial=self.step)
        self.model.train()
        # the training RNG (dropout) starts here, after everything that might draw numbers
        # during setup (first-time imports, an encoder loaded on a cold cache, ...)
        if self._resume_rng is not None:
            set_rng_state(self._resume_rng)
        else:
            torch.manual_seed(cfg.run.seed + 1 + self.env.rank)
        tick, seen = time.perf_counter(), 0
        running = torch.zeros(3, device=self.device)  # summed on the device: no host sync per step
        logged_steps = 0
        try:
            while self.step < self.total_steps and self.epoch < o.epochs:
                self.train_set.set_epoch(self.epoch)
                self.sampler.set_epoch(self.epoch, start_batch=self.micro_done)
                for batch in self._loader(self.train_set, self.sampler):
                    batch = self._batch(batch)
                    images = batch["image"].contiguous(memory_format=torch.channels_last)
                    with self.engine.autocast():
                        out = self.ddp(images, self._queries(), need_attentions=False,
                                       dropout_seeds=self._dropout_seeds(batch))
                    loss, ce, cl = global_loss(self.criterion, self.medklip, out, batch, self.env.world_size)
                    (loss / o.grad_accum).backward()
                    running += torch.stack([loss.detach() / self.env.world_size, ce, cl]) / o.grad_accum
                    self.micro_done += 1
                    seen += len(images) * self.env.world_size
                    if self.micro_done % o.grad_accum:
                        continue
                    if o.clip_grad:
                        torch.nn.utils.clip_grad_norm_(self.model.parameters(), o.clip_grad)
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.step += 1
                    logged_steps += 1
                    bar.update(1)
                    if self.step % cfg.run.log_every_steps == 0 or self.step == 1 or self.step >= self.total_steps:
                        values = (all_reduce_sum(running) / logged_steps).cpu()
                        running.zero_()
                        logged_steps = 0
                        losses.append(float(values[0]))
                        if not math.isfinite(losses[-1]):
                            raise FloatingPointError(f"loss became {losses[-1]} at step {self.step}; lower optim.lr")
                        rate = seen / max(time.perf_counter() - tick, 1e-9)
                        bar.set_postfix(loss=f"{losses[-1]:.3f}", img_s=f"{rate:.1f}", epoch=self.epoch)
                        row = {"step": self.step, "epoch": self.epoch, "lr": self.scheduler.get_last_lr()[0],
                               "loss": losses[-1], "existence": float(values[1]), "position": float(values[2]),
                               "images_per_s": round(rate, 2), "val_loss": ""}
                        logs.log(row, {f"train/{k}": float(row[k]) for k in ("lr", "loss", "existence", "position",
                                                                             "images_per_s")})
                    if self.step % cfg.run.save_every_steps == 0:
                        self.engine.save(self._state())
                    if self.step >= self.total_steps:
                        break
                if self.micro_done >= self.steps_per_epoch * o.grad_accum:
                    self._end_epoch(logs)
            if self.micro_done:  # stopped inside an epoch (max_steps): keep a resumable state
                self.engine.save(self._state())
        finally:
            bar.close()
            logs.close()
        best, last = self.out / "best", self.out / "last"
        if self.engine.is_main:
            self.medklip.save_pretrained(last)
            if cfg.run.select_model == "final" or not (best / "config.json").is_file():
                self.medklip.save_pretrained(best)
        return PretrainResult(self.out, best, last, self.step, losses, self.best_val, self.rows_left_out,
                              self.unreadable)

    def _end_epoch(self, logs: RunLog) -> None:
        val = self.validate()
        self.epoch += 1
        self.micro_done = 0
        if val is not None and (self.best_val is None or val < self.best_val):
            self.best_val = val
            if self.engine.is_main and self.config.run.select_model == "validation-loss":
                self.medklip.save_pretrained(self.out / "best")
        logs.log({"step": self.step, "epoch": self.epoch, "lr": "", "loss": "", "existence": "", "position": "",
                  "images_per_s": "", "val_loss": "" if val is None else val}, {} if val is None else {"val/loss": val})
        self.engine.save(self._state())
        logger.info("epoch %d done: step %d, validation loss %s", self.epoch, self.step, val)


def pretrain(config: PretrainConfig, resume: str | Path | None = None, progress: bool = True) -> PretrainResult:
    """Run pre-training as configured; returns where the best / last models are."""
    return Pretrainer(config, resume, progress).run()
