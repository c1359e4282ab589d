"""Fine-tuning loop: seeded split and label fraction, AdamW with warm-up + cosine, checkpoints at
every epoch's end and every ``run.save_every_steps`` inside one (``--resume`` continues exactly
from the last), best-on-validation model with early stopping, test metrics written as the paper's
tables. Device, AMP, DDP, loaders, checkpoints and
logs come from :class:`~medklip.train.engine.Engine`, shared with pre-training."""
from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from medklip.config_utils import save_config, to_dict
from medklip.data.benchmarks import make_split, read_split, write_split
from medklip.data.image_io import ImageCache, decode_gray
from medklip.data.preprocess import Preprocess, PreprocessConfig
from medklip.errors import ConfigError
from medklip.finetune.config import FinetuneConfig
from medklip.finetune.data import (
    FinetuneDataset,
    load_finetune_benchmark,
    sample_fraction,
    task_classes,
)
from medklip.finetune.metrics import collect, markdown, score
from medklip.finetune.models import (
    build_model,
    dice_bce_loss,
    init_preprocess_profile,
    load_finetuned,
    save_finetuned,
)
from medklip.io_utils import atomic_write_text
from medklip.progress import Progress
from medklip.splits import TEST, TRAIN, VALIDATION
from medklip.train.builders import adamw
from medklip.train.checkpoint import rng_state, set_rng_state
from medklip.train.distributed import ShardedSampler
from medklip.train.engine import Engine, RunLog
from medklip.train.schedule import cosine_with_warmup

logger = logging.getLogger(__name__)
LOG_FIELDS = ["epoch", "step", "lr", "loss", "val_metric", "images_per_s"]


@dataclass
class FinetuneResult:
    output: Path
    best_epoch: int
    best_val: float
    test: dict
    steps: int
    losses: list[float]


class Finetuner:
    """One fine-tuning run; ``config`` is copied, never changed."""

    def __init__(self, config: FinetuneConfig, resume: str | Path | None = None, progress: bool = True) -> None:
        self.config, self.progress, self.resume = copy.deepcopy(config), progress, resume
        run = self.config.run
        self.engine = Engine(run.device, self.config.optim.amp, run.output)
        self.env, self.device, self.out = self.engine.env, self.engine.device, self.engine.output
        try:
            torch.manual_seed(run.seed)
            self._data()
            self._model()
            self.epoch, self.step, self.best_val, self.best_epoch, self.bad_epochs = 0, 0, -math.inf, -1, 0
            self.losses: list[float] = []
            self.batch_in_epoch = 0  # batches of the current epoch done (a checkpoint inside an epoch)
            self.epoch_loss = (0.0, 0)  # their summed loss and count, for the epoch's mean
            if resume:
                self._load(resume)
            elif self.env.is_main:
                save_config(self.config, self.out / "config.yaml")
        except BaseException:
            self.engine.close()
            raise

    # ------------------------------------------------------------------ setup
    def _data(self) -> None:
        c = self.config
        bench = load_finetune_benchmark(c.data.dataset, c.data.root, c.data.labels, c.data.synthetic_images,
                                        c.data.synthetic_seed, c.model.image_size)
        self.bench, self.classes = bench, task_classes(bench, c.task, c.data.classes)
        if c.data.split_file:
            assignment = read_split(c.data.split_file, bench.samples)
        else:
            assignment = make_split(bench.samples, bench.split_fractions, c.run.seed)
            if self.env.is_main:
                write_split(assignment, self.out / "split.csv")
        train_all = bench.subset(TRAIN, assignment)
        self.train_samples = sample_fraction(train_all, c.data.fraction, c.run.seed, c.task, self.classes, bench)
        if self.env.is_main:
            atomic_write_text(self.out / "train_ids.txt", "".join(s.id + "\n" for s in self.train_samples))
        self.profile = c.model.preprocess or init_preprocess_profile(c.init)
        decode = decode_gray if self.profile == "medklip" else Preprocess(PreprocessConfig(self.profile)).load
        cache = ImageCache(c.data.image_cache, max(256, c.model.image_size), decode, self.profile) \
            if c.data.image_cache else None
        make = lambda samples, train: FinetuneDataset(samples, c.task, self.classes, bench, c.model.image_size,  # noqa: E731
                                                      train, cache, c.run.seed, decode)
        self.train_set = make(self.train_samples, True)
        self.valid_set = make(bench.subset(VALIDATION, assignment), False)
        self.test_set = make(bench.subset(TEST, assignment), False)
        if not self.train_samples or not len(self.valid_set) or not len(self.test_set):
            raise ConfigError(f"{bench.name}: a split is empty (train {len(self.train_samples)}, valid "
                              f"{len(self.valid_set)}, test {len(self.test_set)}); use more images")
        logger.info("%s: %d of %d training images (fraction %g), %d valid, %d test", bench.name,
                    len(self.train_samples), len(train_all), c.data.fraction, len(self.valid_set), len(self.test_set))

    def _model(self) -> None:
        c = self.config
        model = build_model(c.task, c.model.backbone, len(self.classes), c.init)
        self.backbone: str = model.encoder.backbone  # type: ignore[union-attr, assignment]
        self.net, self.model = self.engine.prepare(model)
        self.batch = max(self.env.world_size, min(c.optim.batch_size, len(self.train_samples)))
        self.batch -= self.batch % self.env.world_size
        self.sampler = ShardedSampler(len(self.train_set), self.batch, self.env.rank, self.env.world_size,
                                      c.run.seed, shuffle=True, drop_last=False)
        self.steps_per_epoch = self.sampler.num_batches()
        total = self.steps_per_epoch * c.optim.epochs
        self.optimizer = adamw(self.net.parameters(), c.optim.lr, self.device, c.optim.weight_decay)
        self.scheduler = cosine_with_warmup(self.optimizer, total, int(c.optim.warmup_epochs * self.steps_per_epoch),
                                            c.optim.lr * 0.1, c.optim.lr * 0.01)

    def _loader(self, dataset, sampler=None):
        size = self.batch // self.env.world_size if sampler else self.batch
        return self.engine.loader(dataset, size, self.config.data.workers, self.config.run.seed, sampler)

    # ------------------------------------------------------------ checkpoints
    def _save(self) -> None:
        """Everything to continue exactly: at the end of an epoch, or inside one (``batch_in_epoch``
        batches done, their loss so far in ``epoch_loss``)."""
        self.engine.save({
            "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "epoch": self.epoch, "step": self.step,
            "batch_in_epoch": self.batch_in_epoch, "epoch_loss": list(self.epoch_loss),
            "best_val": self.best_val, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
            "losses": self.losses, "rng": rng_state(), "config": to_dict(self.config)})

    def _load(self, path: str | Path) -> None:
        state = self.engine.load(path)
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for key in ("epoch", "step", "best_val", "best_epoch", "bad_epochs", "losses"):
            setattr(self, key, state[key])
        self.batch_in_epoch = int(state.get("batch_in_epoch", 0))  # checkpoints of 0.1.0 end an epoch
        total, count = state.get("epoch_loss", (0.0, 0))
        self.epoch_loss = (float(total), int(count))
        set_rng_state(state["rng"])
        where = f"inside epoch {self.epoch + 1} ({self.batch_in_epoch} batches done" \
            if self.batch_in_epoch else f"after epoch {self.epoch} ("
        logger.info("resumed from %s %s, step %d)", path, where, self.step)

    def _save_model(self, name: str = "best") -> None:
        """The model as a folder: ``best`` (best on validation so far) or ``last`` (the run's end)."""
        if not self.env.is_main:
            return
        c = self.config
        save_finetuned(self.net, self.out / name, {
            "task": c.task, "classes": self.classes, "backbone": self.backbone, "image_size": c.model.image_size,
            "preprocess": self.profile, "init": c.init, "dataset": c.data.dataset, "fraction": c.data.fraction,
            "epoch": self.epoch})

    # ------------------------------------------------------------------- loop
    def _loss(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with self.engine.autocast():
            logits = self.model(images).logits.float()
        if self.config.task == "segment":
            return dice_bce_loss(logits, targets)
        if self.config.task == "grade":
            return torch.nn.functional.cross_entropy(logits, targets)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)

    def run(self) -> FinetuneResult:
        try:
            logs = RunLog(self.out, LOG_FIELDS, self.step if self.resume else None, enabled=self.env.is_main)
            try:
                self._epochs(logs)
            finally:
                logs.close()
            return self._finish()
        finally:
            self.engine.close()

    def _epochs(self, logs: RunLog) -> None:
        c = self.config
        loader = self._loader(self.train_set, self.sampler)
        while self.epoch < c.optim.epochs and self.bad_epochs < c.optim.patience:
            if c.run.max_steps is not None and self.step >= c.run.max_steps:
                break
            self.model.train()
            self.sampler.set_epoch(self.epoch, start_batch=self.batch_in_epoch)
            self.train_set.epoch = self.epoch
            bar = Progress(self.steps_per_epoch, f"fine-tune epoch {self.epoch + 1}/{c.optim.epochs}", unit="batch",
                           enabled=self.progress and self.env.is_main, initial=self.batch_in_epoch)
            start, seen = time.perf_counter(), 0
            running = torch.tensor(self.epoch_loss[0], dtype=torch.float32, device=self.device)
            batches = self.epoch_loss[1]
            try:
                for images, targets in loader:
                    loss = self._loss(images.to(self.device), targets.to(self.device))
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    self.optimizer.step()
                    self.scheduler.step()
                    self.step += 1
                    self.batch_in_epoch += 1
                    seen += len(images) * self.env.world_size
                    running += loss.detach()
                    batches += 1
                    bar.update(1)
                    inside = self.batch_in_epoch < self.steps_per_epoch
                    stop = c.run.max_steps is not None and self.step >= c.run.max_steps
                    if inside and (stop or (c.run.save_every_steps and self.step % c.run.save_every_steps == 0)):
                        self.epoch_loss = (float(running), batches)
                        self._save()
                    if stop:
                        break
            finally:
                bar.close()
            if self.batch_in_epoch < self.steps_per_epoch:  # max_steps inside the epoch: resumable there
                return
            self.batch_in_epoch, self.epoch_loss = 0, (0.0, 0)
            self.epoch += 1
            mean_loss = float(running) / max(1, batches)
            self.losses.append(mean_loss)
            val = score(collect(self.net, self._loader(self.valid_set), c.task, self.device), c.task,
                        self.classes)["primary"]
            improved = not math.isnan(val) and val > self.best_val
            if improved:
                self.best_val, self.best_epoch, self.bad_epochs = val, self.epoch, 0
                self._save_model()
            else:
                self.bad_epochs += 1
            speed = seen / max(1e-9, time.perf_counter() - start)
            logs.log({"epoch": self.epoch, "step": self.step, "lr": self.scheduler.get_last_lr()[0],
                      "loss": mean_loss, "val_metric": val, "images_per_s": speed},
                     {"train/loss": mean_loss, "val/primary": val})
            if self.env.is_main:
                logger.info("epoch %d: loss %.4f, validation %.4f%s, %.1f images/s", self.epoch, mean_loss, val,
                            " (best)" if improved else "", speed)
            self._save()

    def _finish(self) -> FinetuneResult:
        c = self.config
        self._save_model("last")
        if (self.out / "best" / "config.json").is_file():
            best, _info = load_finetuned(self.out / "best")
            self.net.load_state_dict(best.state_dict())
        test = score(collect(self.net, self._loader(self.test_set), c.task, self.device), c.task, self.classes)
        result = {"task": c.task, "dataset": c.data.dataset, "init": c.init, "fraction": c.data.fraction,
                  "preprocess": self.profile, "train_images": len(self.train_samples), "best_epoch": self.best_epoch,
                  "best_validation": self.best_val, "epochs_run": self.epoch, "steps": self.step, "test": test}
        if self.env.is_main:
            atomic_write_text(self.out / "metrics.json", json.dumps(result, indent=1))
            atomic_write_text(self.out / "report.md", markdown(test, c.task, self.bench.title, c.data.fraction, c.init))
        return FinetuneResult(self.out, self.best_epoch, self.best_val, test, self.step, self.losses)


def finetune(config: FinetuneConfig, resume: str | Path | None = None, progress: bool = True) -> FinetuneResult:
    """Fine-tune as ``config`` says; returns the test metrics of the best-on-validation model."""
    return Finetuner(config, resume, progress).run()
