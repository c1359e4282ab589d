"""Shared fixtures: the test fixtures in ``tests/fixtures`` (no ``../shared`` needed), a private
embedding cache, the packaged MiniLM and a tiny model."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


HEADLINE = "headline"
"""``record_property`` name of a line that the terminal summary prints (the quick demo's numbers)."""


def pytest_terminal_summary(terminalreporter) -> None:
    """Print the ``headline`` properties of passed tests after pytest's summary (make test shows
    the quick demo's numbers this way)."""
    for report in terminalreporter.stats.get("passed", []):
        for name, value in getattr(report, "user_properties", []):
            if name == HEADLINE:
                terminalreporter.write_line(f"{report.nodeid}: {value}")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


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


RESPONSIVE_GAIN = 1.5
"""Weight scale of the fixture model's patch MLP, queries, decoder and heads (std gain / sqrt(fan-in))."""


def make_tiny_model(encoder, seed: int = 0, backbone: str = "resnet18"):
    """A small random MedKLIP (ResNet-18 trunk, 64 px, one decoder layer) over the knowledge base,
    made to respond to its input: the release's N(0, 0.02) init leaves every probability within
    ~1e-4 of 0.5 whatever the image, so equality tests against it could not fail; here the 2-D
    weights after the trunk are redrawn at std ``RESPONSIVE_GAIN / sqrt(fan_in)``, and the
    probabilities of two different images differ by 0.1 or more
    (``test_the_fixture_model_responds_to_its_input``)."""
    import torch

    from medklip import MedKLIP, MedKLIPConfig
    from medklip.knowledge import KnowledgeBase

    torch.manual_seed(seed)
    config = MedKLIPConfig(backbone=backbone, image_size=64, d_model=64, num_layers=1, dim_feedforward=64)
    model = MedKLIP.from_knowledge_base(config, KnowledgeBase.default(), encoder)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2 and not name.startswith("image_encoder.backbone"):
                p.copy_(torch.randn(p.shape, generator=g) * RESPONSIVE_GAIN / p.shape[1] ** 0.5)
    return model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, minilm) -> Path:
    """:func:`make_tiny_model` saved with ``save_pretrained`` (shared by the predict / evaluate /
    web tests, which do not modify it)."""
    return make_tiny_model(minilm).save_pretrained(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def official_fixture(tmp_path_factory):
    """The official release's weights and inputs drawn by the reference procedure, written as a
    checkpoint in the release's format, with the official code's stored outputs."""
    from tests.official_regen import regenerate

    return regenerate(tmp_path_factory.mktemp("official"))
