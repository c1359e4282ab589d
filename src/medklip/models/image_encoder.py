"""Image encoder: a torchvision ResNet cut after ``layer3`` and a per-patch MLP."""
from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn import functional as F
from torchvision import models

from medklip.errors import CheckpointError
from medklip.models.config import MedKLIPConfig

logger = logging.getLogger(__name__)


class ResNetTrunk(nn.Module):
    """``conv1 .. layer3`` of a torchvision ResNet (stride 16; with ``stride=8`` the first block of
    ``layer3`` convolves with stride 1, the same weights on a grid twice as fine)."""

    def __init__(self, name: str, weights_path: str | None = None, stride: int = 16) -> None:
        super().__init__()
        resnet = getattr(models, name)(weights=None)
        if weights_path:
            try:
                state = torch.load(weights_path, map_location="cpu", weights_only=True)
            except (OSError, RuntimeError) as exc:
                raise CheckpointError(f"{weights_path}: cannot read ResNet weights ({exc})") from exc
            resnet.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
            logger.info("backbone %s initialised from %s", name, weights_path)
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3 = resnet.layer1, resnet.layer2, resnet.layer3
        if stride == 8:
            first = self.layer3[0]
            for conv in (first.conv2 if hasattr(first, "conv3") else first.conv1, first.downsample[0]):
                conv.stride = (1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))


def _conv_bn(cin: int, cout: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2 if kernel % 2 else 0, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class LocalTrunk(nn.Module):
    """A small CNN with a bounded receptive field (35 px), stride 16 and 256 channels: each patch
    feature sees its own patch and about half a patch of context on every side, so a query can only
    find a finding by attending to where it is. Not the release's trunk: the release starts its
    ResNet-50 from ImageNet, whose ``layer3`` features are local; a ResNet trained from scratch on
    a small world is not, and its heatmaps collapse onto one patch that holds the whole image."""

    STAGE_CHANNELS = (48, 96, 192, 256)
    """Channels at the end of each stage (strides 2, 4, 8, 16)."""

    def __init__(self, stride: int = 16) -> None:
        super().__init__()
        def pointwise(c: int) -> nn.Module:  # a per-position MLP: capacity without widening the field
            return _Residual(nn.Sequential(_conv_bn(c, c, 1, 1), _conv_bn(c, c, 1, 1)))

        c2, c4, c8, c16 = self.STAGE_CHANNELS
        self.stages = nn.Sequential(
            nn.Sequential(_conv_bn(3, c2, 3, 2), _conv_bn(c2, c2, 3, 1)),                        # field 7 px
            nn.Sequential(_conv_bn(c2, c4, 3, 2), _Residual(_conv_bn(c4, c4, 3, 1)), pointwise(c4)),  # 19 px
            nn.Sequential(_conv_bn(c4, c8, 3, 2), pointwise(c8)),                                # 27 px
            nn.Sequential(_conv_bn(c8, c16, 2, 2) if stride == 16 else _conv_bn(c8, c16, 1, 1),  # 35 px
                          pointwise(c16)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature map at the end of each stage (strides 2, 4, 8, 16; fine-tuning's U-Net)."""
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs


class ImageEncoder(nn.Module):
    """Images ``[B,3,H,W]`` -> patch features ``[B, h*w, d_model]`` and the grid ``(h, w)``."""

    def __init__(self, config: MedKLIPConfig) -> None:
        super().__init__()
        channels = config.backbone_channels
        self.backbone: nn.Module = LocalTrunk(config.feature_stride) if config.backbone == "local" else \
            ResNetTrunk(config.backbone, config.backbone_weights, config.feature_stride)
        self.patch_fc1 = nn.Linear(channels, channels)
        self.patch_fc2 = nn.Linear(channels, config.d_model)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B,3,H,W], got {tuple(images.shape)}")
        fmap = self.backbone(images)  # [B, C, h, w]
        h, w = fmap.shape[-2:]
        patches = fmap.flatten(2).transpose(1, 2)  # [B, h*w, C]
        return self.patch_fc2(F.relu(self.patch_fc1(patches))), (int(h), int(w))
