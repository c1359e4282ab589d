"""Zero-shot prediction on user images: probabilities for any finding (seen or described) and
grounding heatmaps. ``Predictor`` is the Python API behind ``medklip predict`` and the web page."""
from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from medklip.data.image_io import IMAGE_SUFFIXES
from medklip.data.preprocess import Preprocess
from medklip.data.profiles import RELEASE_PROFILES
from medklip.errors import MedKLIPError
from medklip.evaluation.calibration import apply as apply_calibration
from medklip.knowledge import DescriptionTexts, KnowledgeBase, as_texts, normalize_name
from medklip.models import MedKLIP
from medklip.models.embedding import ZERO_SHOT_MAX_LENGTH
from medklip.models.factory import create_model
from medklip.text import DEFAULT_TEXT_ENCODER, TextEncoder
from medklip.zeroshot.backends import make_backend, resolve_precision
from medklip.zeroshot.loading import iter_batches
from medklip.zeroshot.queries import ENSEMBLES, QuerySet
from medklip.zeroshot.replicas import BatchResult, ReplicaPool, model_outputs, require_cpu

logger = logging.getLogger(__name__)

DEFAULT_FINDINGS = ("atelectasis", "cardiomegaly", "effusion", "infiltrate", "mass", "nodule", "pneumonia",
                    "pneumothorax", "consolidation", "edema", "emphysema", "thicken", "hernia")
"""ChestX-ray14's findings as the release queries them (fibrosis has no entity of its own)."""


@dataclass
class Prediction:
    """One image: the probability of each requested finding and its heatmap (patch grid)."""

    image: str
    probabilities: dict[str, float] = field(default_factory=dict)
    heatmaps: dict[str, np.ndarray] = field(default_factory=dict)
    display: np.ndarray | None = None
    """The decoded image, grayscale in [0, 1], at most 1,024 px a side (only when asked for)."""
    size: tuple[int, int] = (0, 0)
    """The image's ``(height, width)`` as decoded."""
    error: str | None = None
    error_type: str | None = None
    """The kind of error: ``ImageTooLargeError`` (over the pixel budget), ``ImageReadError``..."""
    calibrated: dict[str, bool] = field(default_factory=dict)
    """Per finding: whether its probability is calibrated (see :attr:`Predictor.calibration_source`)."""


def requested_names(findings: Sequence[str], describe: Mapping[str, DescriptionTexts] | None = None) -> list[str]:
    """The findings asked for, in order: ``findings``, then described names not among them."""
    return list(findings) + [n for n in (describe or {}) if n not in findings]


def _walk(folder: Path, files: list[Path], problems: list[Prediction], seen: set[str], visited: set[str]) -> int:
    """Image files under ``folder`` (links followed, loops and dangling links reported); returns
    how many were found."""
    real = os.path.realpath(folder)
    if real in visited:
        problems.append(Prediction(str(folder), error="a symbolic-link loop (this folder contains itself); skipped"))
        return 0
    visited.add(real)
    found = 0
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        problems.append(Prediction(str(folder), error=f"cannot list the folder ({exc.strerror or exc})"))
        return 0
    for entry in entries:
        path = Path(entry.path)
        try:
            is_dir, is_file = entry.is_dir(), entry.is_file()
        except OSError as exc:  # ELOOP on a self-referencing link
            problems.append(Prediction(str(path), error=f"unreadable entry ({exc.strerror or exc})"))
            continue
        if entry.is_symlink() and not (is_dir or is_file):
            kind = "a symbolic-link loop" if _is_loop(path) else "a dangling symbolic link"
            problems.append(Prediction(str(path), error=f"{kind}; skipped"))
            continue
        if is_dir:
            found += _walk(path, files, problems, seen, visited)
        elif is_file and path.suffix.lower() in IMAGE_SUFFIXES:
            found += _add(path, files, seen)
    visited.discard(real)
    return found


def _is_loop(path: Path) -> bool:
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == 40  # ELOOP
    return False


def _add(path: Path, files: list[Path], seen: set[str]) -> int:
    real = os.path.realpath(path)
    if real in seen:
        logger.info("%s: the same file as one already listed; predicted once", path)
        return 0
    seen.add(real)
    files.append(path)
    return 1


def collect_images(inputs: Iterable[str | Path]) -> tuple[list[Path], list[Prediction]]:
    """Files to predict on (folders walked, symbolic links followed) and the inputs that are not
    usable, each with its reason: missing paths, dangling links, link loops, empty folders. A
    file reached twice (named twice, or through a link) is predicted once."""
    files: list[Path] = []
    problems: list[Prediction] = []
    seen: set[str] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            if not _walk(path, files, problems, seen, set()) and not any(p.image.startswith(str(path)) for p in problems):
                problems.append(Prediction(str(path), error="folder holds no PNG / JPG / DICOM files"))
        elif path.is_file():
            _add(path, files, seen)
        elif os.path.islink(path):
            problems.append(Prediction(str(path), error="a symbolic-link loop" if _is_loop(path)
                                       else "a dangling symbolic link (its target does not exist)"))
        else:
            problems.append(Prediction(str(path), error="no such file or folder"))
    return files, problems


def default_workers() -> int:
    """Decoding processes for a batch job: one per core beyond the first, at most four."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


class Predictor:
    """Load a model once (with its preprocessing), then predict on many images.

    Args:
        model: a :class:`MedKLIP`, a ``save_pretrained`` folder, an official ``.pth`` or a Hub id
            (see :func:`medklip.create_model`).
        text_encoder: hub name / folder for encoding new descriptions (and for an official
            checkpoint's embeddings); default: the one recorded in the model folder.
        device: ``"cpu"``, ``"cuda"``...; default: a GPU when there is one.
        preprocess: a preprocessing profile overriding the model's own.
        max_pixels: the decoding budget per image (``"model"``: the model's).
        workers: processes that decode images ahead of the model (0: none; not used with
            ``processes`` > 1, whose processes decode their own batches).
        backend: ``torch`` or ``onnxruntime`` (CPU; the model exported once, about 1.5x faster).
        fast: opt-in faster decoding that changes pixels slightly (``PreprocessConfig.fast``).
        calibrated: apply the model's calibration (``medklip calibrate``) where it has one; False
            gives the raw probabilities.
        precision: ``fp32`` (default, exact), ``bf16`` (autocast; opt-in) or ``auto`` (bf16 only
            where the hardware computes it natively; the choice and why are logged and kept in
            :attr:`precision`).
        ensemble: how several descriptions of one finding are combined (:data:`ENSEMBLES`):
            ``embedding`` (default) queries the mean of their embeddings; ``probability`` averages
            the probabilities and heatmaps of one query per description.
        variants: query a knowledge-base finding outside the model by all its shipped descriptions
            (an ensemble) instead of its main one. Default: yes (on the demo world covid-19's four
            packaged descriptions by mean embedding gave AUC 0.661, its main one 0.628, over 3
            seeds; README), except for a model that reproduces the release (its release
            preprocessing: an official checkpoint), which queries the main one as the release does.
            Several descriptions given in ``describe`` are always all used.
        processes: model processes on the CPU (opt-in throughput for batch jobs): each decodes
            its own batches and runs the model on its share of the cores
            (:class:`~medklip.zeroshot.replicas.ReplicaPool`; 2 on a 2-core CPU: full-size PNGs at
            1.8x the release's loop with ``backend="onnxruntime"``; probabilities are one thread's,
            within 3e-7). Started (from a forkserver, or spawned: a calling script needs the
            ``if __name__ == "__main__":`` guard) at the first prediction; :meth:`close` stops them.
    """

    def __init__(self, model: MedKLIP | str | Path, text_encoder: str | None = None,
                 device: str | torch.device | None = None, knowledge: KnowledgeBase | None = None,
                 preprocess: str | None = None, max_pixels: int | None | str = "model", workers: int = 0,
                 backend: str = "torch", fast: bool = False, calibrated: bool = True,
                 variants: bool | None = None, precision: str = "fp32", ensemble: str = "embedding",
                 processes: int = 1) -> None:
        self.knowledge = knowledge or KnowledgeBase.extended()
        self._encoder: TextEncoder | None = None
        self._encoder_name = text_encoder
        self.model, self.preprocess = create_model(model, text_encoder=text_encoder, device=device,
                                                   preprocess=preprocess, max_pixels=max_pixels,
                                                   knowledge=self.knowledge)
        if fast:  # opt-in: reduced JPEG decoding and fewer resampling passes (probabilities within ~1e-3)
            self.preprocess = Preprocess(self.preprocess.config.replace(fast=True))
        if knowledge is None and self.model.descriptions:  # the model's own (its training knowledge base)
            self.knowledge = self.knowledge.extend(self.model.descriptions)
        self.device = next(self.model.parameters()).device
        self.workers = workers
        self.precision, why = resolve_precision(precision, self.device)
        if precision != "fp32":
            logger.info("precision %s (%s)", self.precision, why)
        self.backend = make_backend(backend, self.model, self.precision)
        if processes < 1:
            raise MedKLIPError(f"processes must be at least 1, got {processes}")
        if processes > 1:
            require_cpu(self.device)  # now, not at the first prediction
        self.processes, self._backend_name = processes, backend
        self._pool: ReplicaPool | None = None
        self.variants = self.model.preprocess_cfg.profile not in RELEASE_PROFILES if variants is None else variants
        self._entity_rows = {normalize_name(n): i for i, n in enumerate(self.model.entity_names)}
        """Normalised entity name -> the row of the model's own query (built once: the model is fixed)."""
        if ensemble not in ENSEMBLES:
            raise MedKLIPError(f"unknown ensemble {ensemble!r}; use one of {', '.join(ENSEMBLES)}")
        self.ensemble = ensemble
        record = self.model.calibration if calibrated else None
        self.calibration: dict[str, dict[str, float]] = dict((record or {}).get("parameters", {}))
        """Entity name -> calibration parameters applied to that query's probability."""
        self.calibration_source: str | None = (record or {}).get("data") if self.calibration else None
        """What the calibration was fitted on, in words (None: no probability is calibrated)."""
        self.operating_points: dict[str, float] = dict((record or {}).get("operating_points", {}))
        """Entity name -> the decision threshold chosen with the calibration (F1-maximising there)."""

    def _own_row(self, name: str, describe: Mapping[str, DescriptionTexts] | None = None) -> int:
        """The row of the model's own entity query that a requested name uses; -1 for an added
        query (a name the model was not trained on, or one the user describes)."""
        if describe and name in describe:
            return -1
        return self._entity_rows.get(normalize_name(name), -1)

    def _entity_name(self, name: str) -> str | None:
        """The model's own entity a requested name queries (None: an added query)."""
        row = self._own_row(name)
        return self.model.entity_names[row] if row >= 0 else None

    def operating_point(self, name: str, described: bool = False) -> float | None:
        """The recorded decision threshold of a model finding (None for added queries or without one)."""
        key = None if described else self._entity_name(name)
        return self.operating_points.get(key) if key is not None else None

    def calibrated_findings(self, findings: Sequence[str], describe: Mapping[str, DescriptionTexts] | None = None
                            ) -> dict[str, bool]:
        """Per requested name (:func:`requested_names`): whether its probability is calibrated (a
        model entity asked by name whose calibration was fitted; a described or added query never)."""
        describe = describe or {}
        names = requested_names(findings, describe)
        rows = [self._own_row(name, describe) for name in names]
        return dict(zip(names, self.calibrated_rows(rows)))

    def calibrated_rows(self, rows: Sequence[int]) -> list[bool]:
        """For query rows (of :meth:`queries`; -1: a query that is not the model's own): whether
        each gets a calibrated probability (only the model's own entity queries that were
        calibrated; an added description never)."""
        names = self.model.entity_names
        return [0 <= r < len(names) and names[r] in self.calibration for r in rows]

    def calibrate(self, probs: np.ndarray, rows: Sequence[int]) -> np.ndarray:
        """``probs`` (columns: query ``rows``) with each calibrated query's map applied (float64
        where any is, so that a flat map keeps distinct scores distinct)."""
        done = self.calibrated_rows(rows)
        if not any(done):
            return probs
        out = np.array(probs, dtype=np.float64, copy=True)
        for j, (row, calibrated) in enumerate(zip(rows, done)):
            if calibrated:
                out[:, j] = apply_calibration(self.calibration[self.model.entity_names[row]], out[:, j])
        return out

    @property
    def encoder(self) -> TextEncoder:
        """The text encoder for new descriptions (loaded on first use): the model's own, at the
        zero-shot token limit it records (the release: 64)."""
        if self._encoder is None:
            info = self.model.text_encoder_info or {}
            name = self._encoder_name or info.get("name")
            self._encoder = TextEncoder(None if name in (None, DEFAULT_TEXT_ENCODER) else name,
                                        pooling=info.get("pooling", "cls"), revision=info.get("revision"),
                                        special_tokens=info.get("special_tokens", "cls-sep"),
                                        max_length=info.get("query_max_length", ZERO_SHOT_MAX_LENGTH))
        return self._encoder

    def query_set(self, findings: Sequence[str], describe: Mapping[str, DescriptionTexts] | None = None
                  ) -> QuerySet:
        """The model's queries plus added ones, and the rows of each requested finding.

        A finding the model was trained on uses its own query; a described one, or one of the
        knowledge base the model lacks (e.g. covid-19), is added. A finding with several
        descriptions is an ensemble (:attr:`ensemble`): one query per description whose
        probabilities and heatmaps are averaged, or one query from the mean of their embeddings.
        """
        describe = dict(describe or {})
        names = list(self.model.entity_names)
        pending: list[list[str]] = []
        groups: list[list[int]] = []
        for name in requested_names(findings, describe):
            row = self._own_row(name, describe)
            if row >= 0:
                groups.append([row])
                continue
            if name in describe:
                texts = as_texts(describe[name], name, "--describe")
            else:
                texts = self.knowledge.texts(name)  # unknown -> error with close names
                texts = texts if self.variants else texts[:1]
            members = [texts] if self.ensemble == "embedding" or len(texts) == 1 else [[t] for t in texts]
            rows = []
            for k, member in enumerate(members, start=1):
                names.append(name if len(members) == 1 else f"{name} #{k}")
                pending.append(member)
                rows.append(len(names) - 1)
            groups.append(rows)
        emb = [self.model.entity_embeddings.cpu()]
        if pending:
            emb.append(self.encode_ensembles(pending))
        return QuerySet(names, torch.cat(emb), groups)

    def queries(self, findings: Sequence[str], describe: Mapping[str, DescriptionTexts] | None = None
                ) -> tuple[list[str], torch.Tensor, list[int]]:
        """``(names, embeddings, rows)`` of :meth:`query_set` (the first row of each finding)."""
        qs = self.query_set(findings, describe)
        return qs.names, qs.embeddings, qs.rows

    def encode_ensembles(self, groups: Sequence[Sequence[str]]) -> torch.Tensor:
        """One query per group of descriptions: the mean of the group's text embeddings."""
        flat = self.encoder.encode([t for group in groups for t in group])
        sizes = torch.tensor([len(g) for g in groups])
        owner = torch.repeat_interleave(torch.arange(len(groups)), sizes)
        summed = torch.zeros(len(groups), flat.shape[1], dtype=flat.dtype).index_add_(0, owner, flat)
        return summed / sizes.to(flat.dtype).unsqueeze(1)

    def iter_predict(self, images: Sequence[str | Path], findings: Sequence[str] = DEFAULT_FINDINGS,
                     describe: Mapping[str, DescriptionTexts] | None = None, batch_size: int = 16, heatmaps: bool = True,
                     keep_display: bool = False) -> Iterator[Prediction]:
        """Predictions in input order, each yielded as soon as its batch is done (nothing is kept);
        an unreadable image gets ``error`` and the rest go on."""
        qs = self.query_set(findings, describe)
        asked = requested_names(findings, describe)
        flags = self.calibrated_findings(findings, describe)
        for batch, probs, maps in self._run(images, qs.embeddings, batch_size, heatmaps, keep_display):
            good = batch.good
            if probs is not None:
                probs, maps = qs.reduce(probs, maps)
                probs = self.calibrate(probs, qs.rows)
            position = {item.index: i for i, item in enumerate(good)}
            for item in batch.items:
                pred = Prediction(item.path, display=item.display, size=item.shape, error=item.error,
                                  error_type=item.error_type, calibrated=flags)
                if item.error is not None or probs is None:
                    logger.warning("%s", item.error)
                else:
                    i = position[item.index]
                    pred.probabilities = dict(zip(asked, probs[i].tolist()))
                    if maps is not None:
                        pred.heatmaps = dict(zip(asked, maps[i]))
                yield pred

    def _run(self, images: Sequence[str | Path], queries: torch.Tensor, batch_size: int, heatmaps: bool,
             keep_display: bool) -> Iterator[BatchResult]:
        """Decoded batches in input order with the backend's raw ``(probs, heatmaps)``: in this
        process (decoding in ``workers``), or in the model processes."""
        if self.processes > 1:
            if self._pool is None:
                self._pool = ReplicaPool(self.model, self._backend_name, self.precision, self.processes)
                weakref.finalize(self, self._pool.close)
            yield from self._pool.run(images, self.preprocess, queries, batch_size, heatmaps, keep_display)
            return
        for batch in iter_batches(images, self.preprocess, batch_size, self.workers, keep_display):
            yield model_outputs(self.backend, batch, queries, heatmaps)

    def close(self) -> None:
        """Stop the model processes (``processes`` > 1); a later prediction starts them again."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def predict(self, images: Sequence[str | Path], findings: Sequence[str] = DEFAULT_FINDINGS,
                describe: Mapping[str, DescriptionTexts] | None = None, batch_size: int = 16, heatmaps: bool = True,
                keep_display: bool = False) -> list[Prediction]:
        """All predictions of :meth:`iter_predict` as a list."""
        return list(self.iter_predict(images, findings, describe, batch_size, heatmaps, keep_display))
