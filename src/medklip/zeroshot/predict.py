"""Zero-shot prediction on user images: probabilities for any finding (seen or described) and
grounding heatmaps. ``Predictor`` is the Python API behind ``medklip predict``."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from medklip.data.image_io import IMAGE_SUFFIXES, ImageReadError, read_image, to_pil
from medklip.data.transforms import eval_transform
from medklip.errors import MedKLIPError
from medklip.knowledge import KnowledgeBase, normalize_name
from medklip.models import MedKLIP

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
    pixels: np.ndarray | None = None  # the image as read, [0, 1], for overlays
    error: str | None = None


def requested_names(findings: Sequence[str], describe: Mapping[str, str] | None = None) -> list[str]:
    """The findings asked for, in order: ``findings``, then described names not among them."""
    return list(findings) + [n for n in (describe or {}) if n not in findings]


def collect_images(inputs: Iterable[str | Path]) -> tuple[list[Path], list[Prediction]]:
    """Files to predict on (folders walked for image files) and the inputs that are not usable."""
    files: list[Path] = []
    missing: list[Prediction] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                missing.append(Prediction(str(path), error="folder holds no PNG / JPG / DICOM files"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            missing.append(Prediction(str(path), error="no such file or folder"))
    return files, missing


class Predictor:
    """Load a model once, then predict on many images.

    Args:
        model: a :class:`MedKLIP`, a ``save_pretrained`` folder, or an official ``.pth``.
        text_encoder: hub name / folder for encoding new descriptions (and for an official
            checkpoint's embeddings); default: the one recorded in the model folder.
        device: ``"cpu"``, ``"cuda"``...; default: a GPU when there is one.
    """

    def __init__(self, model: MedKLIP | str | Path, text_encoder: str | None = None,
                 device: str | torch.device | None = None, knowledge: KnowledgeBase | None = None) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.knowledge = knowledge or KnowledgeBase.default()
        self._encoder = None
        self._encoder_name = text_encoder
        if isinstance(model, MedKLIP):
            self.model = model
        else:
            path = Path(model)
            if path.is_dir():
                self.model = MedKLIP.from_pretrained(path)
            elif path.suffix in (".pth", ".pt"):
                from medklip.text import PAPER_TEXT_ENCODER

                self._encoder_name = text_encoder or PAPER_TEXT_ENCODER
                self.model = MedKLIP.from_official_checkpoint(path, text_encoder=self.encoder,
                                                              knowledge=self.knowledge)
            else:
                raise MedKLIPError(f"{path}: not a model folder (save_pretrained) nor an official .pth")
        self.model = self.model.to(self.device).eval()
        self.transform = eval_transform(self.model.config.image_size)

    @property
    def encoder(self):
        """The text encoder for new descriptions (loaded on first use)."""
        if self._encoder is None:
            from medklip.text import TextEncoder

            info = getattr(getattr(self, "model", None), "text_encoder_info", None) or {}
            name = self._encoder_name or info.get("name")
            self._encoder = TextEncoder(None if name in (None, "packaged:all-MiniLM-L6-v2") else name,
                                        pooling=info.get("pooling", "cls"), max_length=info.get("max_length", 64))
        return self._encoder

    def queries(self, findings: Sequence[str], describe: Mapping[str, str] | None = None
                ) -> tuple[list[str], torch.Tensor, list[int]]:
        """The model's queries plus added ones; returns (names, embeddings, rows of ``findings``).

        A finding the model was trained on uses its own query; a described one, or one of the
        knowledge base the model lacks (e.g. covid-19), becomes an added query.
        """
        describe = dict(describe or {})
        names, emb = list(self.model.entity_names), [self.model.entity_embeddings.cpu()]
        known = {normalize_name(n): i for i, n in enumerate(names)}
        extra_texts: list[str] = []
        rows: list[int] = []
        for name in requested_names(findings, describe):
            if name in describe:
                extra_texts.append(describe[name])
            elif normalize_name(name) not in known:
                extra_texts.append(self.knowledge.description(name))  # unknown -> error with close names
            else:
                rows.append(known[normalize_name(name)])
                continue
            names.append(name)
            rows.append(len(names) - 1)
        if extra_texts:
            emb.append(self.encoder.encode(extra_texts))
        return names, torch.cat(emb), rows

    @torch.no_grad()
    def predict(self, images: Sequence[str | Path], findings: Sequence[str] = DEFAULT_FINDINGS,
                describe: Mapping[str, str] | None = None, batch_size: int = 16,
                heatmaps: bool = True) -> list[Prediction]:
        """Predictions in input order; an unreadable image gets ``error`` and the rest go on."""
        _names, queries, rows = self.queries(findings, describe)
        asked = requested_names(findings, describe)
        queries = queries.to(self.device)
        results: list[Prediction] = []
        for start in range(0, len(images), batch_size):
            chunk = [Prediction(str(p)) for p in images[start:start + batch_size]]
            tensors = []
            for pred in chunk:
                try:
                    pred.pixels = read_image(pred.image)
                    tensors.append(self.transform(to_pil(pred.pixels)))
                except ImageReadError as exc:
                    pred.error = str(exc)
                    logger.warning("%s", exc)
            good = [p for p in chunk if p.error is None]
            if good:
                out = self.model(torch.stack(tensors).to(self.device), queries, need_attentions=heatmaps)
                for i, pred in enumerate(good):
                    for name, row in zip(asked, rows):
                        pred.probabilities[name] = float(out.probs[i, row])
                        if heatmaps:
                            pred.heatmaps[name] = out.heatmaps[i, row].cpu().numpy()
            results.extend(chunk)
        return results
