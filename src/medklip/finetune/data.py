"""Fine-tuning data: the benchmark's splits, a stratified seeded fraction of the training split,
and a dataset yielding ``(image, target)`` for classification, grading or segmentation."""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T

from medklip.data.benchmarks import Benchmark, Sample, load_benchmark
from medklip.data.image_io import ImageCache, decode_gray, image_shape
from medklip.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from medklip.errors import BenchmarkError

logger = logging.getLogger(__name__)


def load_finetune_benchmark(dataset: str, root: str | Path, labels: str | None = None, synthetic_images: int = 1000,
                            synthetic_seed: int = 1, image_size: int = 224) -> Benchmark:
    """The dataset; for ``synthetic`` the world is written at ``root`` first if it is not there."""
    if dataset == "synthetic" and not (Path(root) / "test_labels.jsonl").is_file():
        from medklip.data.synthetic import WorldConfig, generate_world

        logger.info("writing a synthetic fine-tuning world (%d images) to %s", synthetic_images, root)
        generate_world(root, WorldConfig(train=0, validation=0, test=synthetic_images, image_size=image_size,
                                         seed=synthetic_seed))
    return load_benchmark(dataset, root, labels=labels)


def task_classes(bench: Benchmark, task: str, classes: Sequence[str] | None) -> list[str]:
    """The outputs: classes for classify, the grades for grade, the segmented class for segment."""
    if task == "grade":
        if not bench.grades:
            raise BenchmarkError(f"{bench.name} has no grades; grading needs edema-severity or synthetic")
        return [str(g) for g in bench.grades]
    if task == "segment":
        name = classes[0] if classes else bench.segment_class
        if not name or not any(name in s.regions for s in bench.samples):
            raise BenchmarkError(f"{bench.name} has no masks for {name or 'any class'}; segmentation needs "
                                 "rsna-pneumonia, siim-acr, covid-rural or synthetic")
        return [name]
    chosen = list(classes) if classes else list(bench.classes)
    unknown = [c for c in chosen if c not in bench.classes]
    if unknown:
        raise BenchmarkError(f"{bench.name} has no class {unknown}; its classes: {', '.join(bench.classes)}")
    return chosen


def stratum(sample: Sample, task: str, classes: list[str], bench: Benchmark, prevalence: dict[str, float]) -> str:
    """Multi-label: the rarest positive class (or none); binary / segment: the label; grade: the grade."""
    if task == "grade":
        return str(sample.labels.get(bench.grade_class or "", 0))
    positives = [c for c in classes if sample.labels.get(c, 0) > 0]
    return min(positives, key=lambda c: prevalence[c]) if positives else "none"


def sample_fraction(samples: list[Sample], fraction: float, seed: int, task: str, classes: list[str],
                    bench: Benchmark) -> list[Sample]:
    """A seeded, stratified ``fraction`` of ``samples`` (at least one per non-empty stratum)."""
    if not 0 < fraction <= 1:
        raise BenchmarkError(f"data.fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return list(samples)
    prevalence = {c: float(np.mean([s.labels.get(c, 0) > 0 for s in samples])) for c in classes}
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[stratum(s, task, classes, bench, prevalence)].append(s)
    rng = np.random.default_rng(seed)
    chosen: list[Sample] = []
    for key in sorted(groups):
        members = groups[key]
        k = max(1, int(round(fraction * len(members))))
        chosen += [members[i] for i in sorted(rng.choice(len(members), size=k, replace=False))]
    order = {s.id: i for i, s in enumerate(samples)}
    return sorted(chosen, key=lambda s: order[s.id])


class FinetuneDataset(Dataset):
    """``(image [3,S,S], target)``: multi-hot floats (classify), a grade index (grade), or a mask
    ``[1,S,S]`` (segment). Training adds a random horizontal flip (image and mask together)."""

    def __init__(self, samples: list[Sample], task: str, classes: list[str], bench: Benchmark, size: int,
                 train: bool, cache: ImageCache | None = None, seed: int = 0,
                 decode: Callable[[Path], Image.Image] = decode_gray) -> None:
        self.samples, self.task, self.classes, self.bench = samples, task, classes, bench
        self.size, self.train, self.cache, self.seed = size, train, cache, seed
        self.decode = decode
        self.epoch = 0
        self.normalize = T.Compose([T.Grayscale(3), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def __len__(self) -> int:
        return len(self.samples)

    def target(self, sample: Sample) -> torch.Tensor:
        if self.task == "grade":
            return torch.tensor(int(sample.labels.get(self.bench.grade_class or "", 0)))
        return torch.tensor([float(sample.labels.get(c, 0) > 0) for c in self.classes])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.samples[index]
        image = (self.cache.load(sample.image) if self.cache is not None else self.decode(sample.image)).convert("L")
        flip = self.train and np.random.default_rng((self.seed, self.epoch, index)).random() < 0.5
        resized = image.resize((self.size, self.size), Image.Resampling.BICUBIC)
        if flip:
            resized = resized.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = self.normalize(resized)
        if self.task != "segment":
            return x, self.target(sample)
        region = sample.regions.get(self.classes[0])
        if region is None or sample.labels.get(self.classes[0], 0) <= 0:
            return x, torch.zeros(1, self.size, self.size)
        mask = region.mask(image_shape(sample.image))
        m = Image.fromarray(mask.astype(np.uint8) * 255).resize((self.size, self.size), Image.Resampling.NEAREST)
        if flip:
            m = m.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return x, torch.from_numpy(np.asarray(m) > 0).float()[None]
