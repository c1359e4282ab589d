"""Model configuration (a dataclass, saved as ``config.json`` next to every model)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

BACKBONE_CHANNELS = {"resnet18": 256, "resnet34": 256, "resnet50": 1024, "resnet101": 1024, "local": 256}
"""Channels of each supported trunk's patch features (after ``layer3`` of a torchvision ResNet;
``local``: the small bounded-field CNN of :class:`medklip.models.image_encoder.LocalTrunk`)."""
INITS = ("release", "scaled-attention")
QUERY_INITS = ("release", "span")
FEATURE_STRIDES = (16, 8)


@dataclass
class MedKLIPConfig:
    """Architecture of a MedKLIP model; the defaults are the paper's / release's."""

    backbone: str = "resnet50"
    """``resnet50`` (the release), ``resnet18`` / ``resnet34`` / ``resnet101``, or ``local``: a
    small CNN whose patch features see 35 px, for training from scratch on small images (the demo)."""
    image_size: int = 224
    d_model: int = 256
    num_layers: int = 4
    num_heads: int = 4
    dim_feedforward: int = 1024
    dropout: float = 0.1
    text_dim: int = 768
    num_exist_classes: int = 2
    backbone_weights: str | None = None
    """Optional path to torchvision ResNet weights (``.pth``) to start the backbone from."""
    init: str = "release"
    """Initial weights. ``release``: Linear and attention weights N(0, 0.02), as the official code.
    ``scaled-attention``: the same, except the attention query / key projections N(0, 0.1) and the
    patch MLP PyTorch's default (Kaiming-uniform), so that the cross-attention logits start large
    enough for each entity to pool its own patches; a short CPU run learns much faster (README)."""
    query_init: str = "release"
    """Initial weights of the query projection (text embedding -> query). ``release``: as ``init``.
    ``span``: the same weights, projected onto the span of the model's queries at construction
    (the training descriptions): zero on every text direction outside it. Training never moves
    those directions far from their start (the gradient lies in the span; only AdamW's per-weight
    scaling leaks into them), so with the release's init an unseen disease's description is read
    partly through random weights, a different reading for each seed; with ``span`` it is read
    through its components along the descriptions the model trained on. The training queries' own
    projections start the same under both (with ``text.description_variants`` the variants'
    directions outside the first descriptions' span start at zero and are learned from there)."""
    feature_stride: int = 16
    """Pixels per patch. 16: the release (the trunk's ``layer3`` downsamples, 14 x 14 patches at
    224 px). 8: ``layer3`` keeps the resolution of ``layer2`` (same weights, a grid twice as fine:
    12 x 12 at 96 px), for small images where 16-pixel patches are too coarse to ground."""

    null_key: bool = False
    """Give the cross-attention one learned key / value besides the patches (False: the release).
    A query with nothing to find in the image can attend there instead of to an arbitrary patch,
    which otherwise becomes a sink that many queries' heatmaps peak on; heatmaps show the patches'
    share only."""

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONE_CHANNELS:
            raise ValueError(
                f"backbone must be one of {sorted(BACKBONE_CHANNELS)}, got {self.backbone!r}"
            )
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.query_init not in QUERY_INITS:
            raise ValueError(f"query_init must be one of {', '.join(QUERY_INITS)}, got {self.query_init!r}")
        if self.feature_stride not in FEATURE_STRIDES:
            raise ValueError(f"feature_stride must be one of {FEATURE_STRIDES}, got {self.feature_stride}")
        if self.backbone == "local" and self.backbone_weights:
            raise ValueError("backbone_weights takes torchvision ResNet weights; the local trunk has none")
        if self.image_size < 32:
            raise ValueError(f"image_size must be at least 32, got {self.image_size}")

    @property
    def backbone_channels(self) -> int:
        return BACKBONE_CHANNELS[self.backbone]

    @property
    def patch_grid(self) -> tuple[int, int]:
        """Patch grid for a square ``image_size`` input (stride 16 after ``layer3``, or 8)."""
        n = self.image_size
        if self.backbone == "local":  # three 3x3 convs with stride 2 and padding 1 (, one 2x2 with stride 2)
            for _ in range(3):
                n = (n - 1) // 2 + 1
            return (n // 2, n // 2) if self.feature_stride == 16 else (n, n)
        n = (n + 2 * 3 - 7) // 2 + 1  # conv1, stride 2
        n = (n + 2 * 1 - 3) // 2 + 1  # max-pool, stride 2
        for _ in range(2 if self.feature_stride == 16 else 1):  # layer2 (, layer3): 3x3 conv, stride 2, padding 1
            n = (n + 2 * 1 - 3) // 2 + 1
        return n, n

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MedKLIPConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**dict(data))
