"""Shared fixtures: the reference material in ../shared and a private embedding cache."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``../shared`` next to the repository (present for every developer and in CI)."""
    path = Path(os.environ.get("MEDKLIP_SHARED_DIR", REPO_ROOT.parent / "shared"))
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path} is missing: the tests need the project's shared/ folder beside the repo "
            "(or MEDKLIP_SHARED_DIR pointing at it)"
        )
    return path


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return shared_dir() / "reference" / "official_medklip"


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep test runs out of the user's embedding cache, and offline."""
    os.environ["MEDKLIP_CACHE_DIR"] = str(tmp_path_factory.mktemp("medklip-cache"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def minilm():
    """The packaged offline MiniLM encoder (loaded once per session)."""
    from medklip.text import TextEncoder

    return TextEncoder()
