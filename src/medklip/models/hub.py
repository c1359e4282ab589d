"""Model folders on the Hugging Face Hub: resolve ``org/name`` (at a pinned revision) to a local
snapshot, and push a folder with its model card. The folder format is the same as on disk
(``config.json`` with sha256 checksums, ``model.safetensors``, ``embeddings.safetensors``,
``texts.json``, ``README.md``), so a snapshot is loaded and verified like any local folder."""
from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from medklip.errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    from medklip.models.medklip import MedKLIP

logger = logging.getLogger(__name__)

HUB_FILES = ["config.json", "model.safetensors", "embeddings.safetensors", "texts.json", "README.md"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def is_hub_id(name: str) -> bool:
    """``org/name`` as the Hub spells repo ids (and not a path that exists)."""
    return bool(_HUB_ID.match(name)) and not Path(name).exists()


def hub_offline() -> bool:
    return any(os.environ.get(v, "").lower() in {"1", "true", "yes"} for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def resolve_hub_folder(repo_id: str, revision: str | None = None) -> Path:
    """The local snapshot of ``repo_id`` at ``revision`` (a branch, tag or commit): the local
    Hugging Face cache first, the Hub only when online.

    Raises:
        CheckpointError: not cached and offline (or the Hub cannot be reached / has no such repo).
    """
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=HUB_FILES, local_files_only=True))
    except Exception as exc:  # not (completely) in the local cache
        cached_error = exc
    if hub_offline():
        raise CheckpointError(
            f"model {repo_id!r}{f' at {revision}' if revision else ''} is not in the local Hugging Face cache "
            "and HF_HUB_OFFLINE is set. On a machine with internet run `huggingface-cli download "
            f"{repo_id}{f' --revision {revision}' if revision else ''} --local-dir DIR`, copy DIR here and pass "
            f"its path instead (--model DIR). ({type(cached_error).__name__})")
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=HUB_FILES))
    except Exception as exc:
        raise CheckpointError(f"model {repo_id!r}{f' at {revision}' if revision else ''} cannot be fetched from "
                              f"the Hugging Face Hub ({type(exc).__name__}: {exc}); pass a local model folder "
                              "instead") from exc


def push_to_hub(model: MedKLIP, repo_id: str, *, private: bool = True, revision: str | None = None,
                commit_message: str = "Upload MedKLIP model", token: str | None = None) -> str:
    """Save ``model`` (with its model card) and upload the folder to ``repo_id``; returns the
    commit id, which pins exactly this upload (``from_pretrained(repo_id, revision=commit)``)."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="medklip-push-") as tmp:
        model.save_pretrained(tmp)
        info = api.upload_folder(folder_path=tmp, repo_id=repo_id, revision=revision, commit_message=commit_message)
    commit = getattr(info, "oid", None) or str(info)
    logger.info("pushed %s at %s", repo_id, commit)
    return commit
