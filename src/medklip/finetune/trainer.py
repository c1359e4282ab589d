"""Fine-tuning loop: seeded split and label fraction, AdamW with warm-up + cosine, checkpoints
every epoch (``--resume`` continues from the last one), best-on-validation model with early
stopping, test metrics written as the paper's tables. DDP under torchrun."""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from medklip.config_utils import ConfigError, save_config, to_dict
from medklip.data.benchmarks import make_split, read_split, write_split
from medklip.data.image_io import ImageCache, decode_gray
from medklip.data.preprocess import Preprocess, PreprocessConfig
from medklip.finetune.config import TASKS, FinetuneConfig
from medklip.finetune.data import (
    FinetuneDataset,
    load_finetune_benchmark,
    sample_fraction,
    task_classes,
)
from medklip.finetune.metrics import collect, markdown, score
from medklip.finetune.models import build_model, dice_bce_loss, init_preprocess_profile
from medklip.train.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from medklip.train.distributed import (
    ShardedSampler,
    cleanup_distributed,
    convert_sync_batchnorm,
    setup_distributed,
)
from medklip.train.schedule import cosine_with_warmup

logger = logging.getLogger(__name__)


@dataclass
class FinetuneResult:
    output: Path
    best_epoch: int
    best_val: float
    test: dict
    steps: int
    losses: list[float]


class Finetuner:
    def __init__(self, config: FinetuneConfig, resume: str | Path | None = None, progress: bool = True) -> None:
        if config.task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {config.task!r}")
        self.config, self.progress = config, progress
        run = config.run
        self.device = torch.device(run.device if run.device != "auto" else ("cuda" if torch.cuda.is_available()
                                                                             else "cpu"))
        self.env = setup_distributed(self.device)
        if self.device.type == "cuda" and self.env.enabled:
            self.device = torch.device("cuda", self.env.local_rank)
        self.out = Path(run.output)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(run.seed)
        self._data()
        self._model()
        self.epoch, self.step, self.best_val, self.best_epoch, self.bad_epochs = 0, 0, -math.inf, -1, 0
        self.losses: list[float] = []
        if resume:
            self._load(resume)
        elif self.env.is_main:
            save_config(config, self.out / "config.yaml")

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
        train_all = bench.subset("train", assignment)
        self.train_samples = sample_fraction(train_all, c.data.fraction, c.run.seed, c.task, self.classes, bench)
        if self.env.is_main:
            (self.out / "train_ids.txt").write_text("".join(s.id + "\n" for s in self.train_samples))
        self.profile = c.model.preprocess or init_preprocess_profile(c.init)
        decode = decode_gray if self.profile == "medklip" else Preprocess(PreprocessConfig(self.profile)).load
        cache = ImageCache(c.data.image_cache, max(256, c.model.image_size), decode, self.profile) \
            if c.data.image_cache else None
        make = lambda samples, train: FinetuneDataset(samples, c.task, self.classes, bench, c.model.image_size,  # noqa: E731
                                                      train, cache, c.run.seed, decode)
        self.train_set = make(self.train_samples, True)
        self.valid_set, self.test_set = make(bench.subset("valid", assignment), False), make(bench.subset("test", assignment), False)
        if not self.train_samples or not len(self.valid_set) or not len(self.test_set):
            raise ConfigError(f"{bench.name}: a split is empty (train {len(self.train_samples)}, valid "
                              f"{len(self.valid_set)}, test {len(self.test_set)}); use more images")
        logger.info("%s: %d of %d training images (fraction %g), %d valid, %d test", bench.name,
                    len(self.train_samples), len(train_all), c.data.fraction, len(self.valid_set), len(self.test_set))

    def _model(self) -> None:
        c = self.config
        model = build_model(c.task, c.model.backbone, len(self.classes), c.init).to(self.device)
        self.backbone = model.encoder.backbone
        if self.env.enabled:
            model = convert_sync_batchnorm(model, self.device)
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.model = model
        self.batch = max(self.env.world_size, min(c.optim.batch_size, len(self.train_samples)))
        self.batch -= self.batch % self.env.world_size
        self.sampler = ShardedSampler(len(self.train_set), self.batch, self.env.rank, self.env.world_size,
                                      c.run.seed, shuffle=True, drop_last=False)
        self.steps_per_epoch = self.sampler.num_batches()
        total = self.steps_per_epoch * c.optim.epochs
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=c.optim.lr, weight_decay=c.optim.weight_decay)
        self.scheduler = cosine_with_warmup(self.optimizer, total, int(c.optim.warmup_epochs * self.steps_per_epoch),
                                            c.optim.lr * 0.1, c.optim.lr * 0.01)
        self.amp = c.optim.amp in ("auto", "bf16") and self.device.type == "cuda" and torch.cuda.is_bf16_supported()

    @property
    def net(self) -> torch.nn.Module:
        return self.model.module if hasattr(self.model, "module") else self.model

    def _loader(self, dataset, sampler=None) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch // self.env.world_size if sampler else self.batch,
                          sampler=sampler, shuffle=False, num_workers=self.config.data.workers,
                          generator=torch.Generator().manual_seed(self.config.run.seed))

    # ------------------------------------------------------------ checkpoints
    def _save(self) -> None:
        if self.env.is_main:
            save_checkpoint(self.out / "checkpoint.pt", {
                "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "epoch": self.epoch, "step": self.step,
                "best_val": self.best_val, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                "losses": self.losses, "rng": rng_state(), "config": to_dict(self.config)})

    def _load(self, path: str | Path) -> None:
        path = Path(path)
        state = load_checkpoint(path / "checkpoint.pt" if path.is_dir() else path)
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for key in ("epoch", "step", "best_val", "best_epoch", "bad_epochs", "losses"):
            setattr(self, key, state[key])
        set_rng_state(state["rng"])
        logger.info("resumed from %s after epoch %d (step %d)", path, self.epoch, self.step)

    def _save_best(self) -> None:
        if not self.env.is_main:
            return
        folder = self.out / "best"
        folder.mkdir(exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(folder / "model.safetensors"))
        c = self.config
        (folder / "config.json").write_text(json.dumps({
            "format": "medklip-finetuned/1", "task": c.task, "classes": self.classes, "backbone": self.backbone,
            "image_size": c.model.image_size, "preprocess": self.profile, "init": c.init, "dataset": c.data.dataset,
            "fraction": c.data.fraction, "epoch": self.epoch}, indent=1))

    # ------------------------------------------------------------------- loop
    def _loss(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()
        with ctx:
            logits = self.model(images).logits.float()
        if self.config.task == "segment":
            return dice_bce_loss(logits, targets)
        if self.config.task == "grade":
            return torch.nn.functional.cross_entropy(logits, targets)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)

    def run(self) -> FinetuneResult:
        log_path = self.out / "train_log.csv"
        fresh = self.epoch == 0 and self.step == 0
        tb = None
        if self.env.is_main:
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(str(self.out / "tensorboard"))
        with log_path.open("w" if fresh else "a", newline="") as f:
            log = csv.writer(f)
            if fresh:
                log.writerow(["epoch", "step", "lr", "loss", "val_metric", "images_per_s"])
            try:
                self._epochs(log, f, tb)
            finally:
                if tb is not None:
                    tb.close()
        return self._finish()

    def _epochs(self, log, file, tb) -> None:
        c = self.config
        loader = self._loader(self.train_set, self.sampler)
        while self.epoch < c.optim.epochs and self.bad_epochs < c.optim.patience:
            if c.run.max_steps is not None and self.step >= c.run.max_steps:
                break
            self.model.train()
            self.sampler.set_epoch(self.epoch)
            self.train_set.epoch = self.epoch
            bar = loader
            if self.progress and self.env.is_main:
                from tqdm import tqdm

                bar = tqdm(loader, desc=f"fine-tune epoch {self.epoch + 1}/{c.optim.epochs}", unit="batch")
            start, seen, running = time.perf_counter(), 0, []
            for images, targets in bar:
                loss = self._loss(images.to(self.device), targets.to(self.device))
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.scheduler.step()
                self.step += 1
                seen += len(images) * self.env.world_size
                running.append(loss.item())
                if self.progress and self.env.is_main:
                    bar.set_postfix(loss=f"{running[-1]:.4f}", img_s=f"{seen / (time.perf_counter() - start):.1f}")
                if c.run.max_steps is not None and self.step >= c.run.max_steps:
                    break
            self.epoch += 1
            mean_loss = sum(running) / max(1, len(running))
            self.losses.append(mean_loss)
            val = score(collect(self.net, self._loader(self.valid_set), c.task, self.device), c.task,
                        self.classes)["primary"]
            improved = not math.isnan(val) and val > self.best_val
            if improved:
                self.best_val, self.best_epoch, self.bad_epochs = val, self.epoch, 0
                self._save_best()
            else:
                self.bad_epochs += 1
            speed = seen / max(1e-9, time.perf_counter() - start)
            if self.env.is_main:
                log.writerow([self.epoch, self.step, self.scheduler.get_last_lr()[0], mean_loss, val, speed])
                file.flush()
                tb.add_scalar("train/loss", mean_loss, self.step)
                tb.add_scalar("val/primary", val, self.step)
                logger.info("epoch %d: loss %.4f, validation %.4f%s, %.1f images/s", self.epoch, mean_loss, val,
                            " (best)" if improved else "", speed)
            self._save()

    def _finish(self) -> FinetuneResult:
        c = self.config
        best = self.out / "best" / "model.safetensors"
        if best.is_file():
            self.net.load_state_dict(load_file(str(best)))
        test = score(collect(self.net, self._loader(self.test_set), c.task, self.device), c.task, self.classes)
        result = {"task": c.task, "dataset": c.data.dataset, "init": c.init, "fraction": c.data.fraction,
                  "train_images": len(self.train_samples), "best_epoch": self.best_epoch,
                  "best_validation": self.best_val, "epochs_run": self.epoch, "steps": self.step, "test": test}
        if self.env.is_main:
            (self.out / "metrics.json").write_text(json.dumps(result, indent=1))
            (self.out / "report.md").write_text(markdown(test, c.task, self.bench.title, c.data.fraction, c.init))
        cleanup_distributed()
        return FinetuneResult(self.out, self.best_epoch, self.best_val, test, self.step, self.losses)


def finetune(config: FinetuneConfig, resume: str | Path | None = None, progress: bool = True) -> FinetuneResult:
    """Fine-tune as ``config`` says; returns the test metrics of the best-on-validation model."""
    return Finetuner(config, resume, progress).run()
