"""Downstream networks whose first stages come from a MedKLIP image encoder: the paper's ResNet
classifier (classification, grading) and a ResUNet (a ResNet encoder U-Net) for segmentation; a
model trained with the ``local`` trunk (the demo's) gives the same networks on that trunk."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F
from torchvision import models

from medklip.errors import CheckpointError
from medklip.io_utils import atomic_path, atomic_write_text
from medklip.models.image_encoder import LocalTrunk
from medklip.models.loading import load_state_dict_strict
from medklip.models.official import read_official_state_dict
from medklip.models.serialization import read_model_config, sha256_file

logger = logging.getLogger(__name__)

PREFIX = "image_encoder.backbone."
INIT_STAGES = ("conv1", "bn1", "layer1", "layer2", "layer3")


@dataclass
class SegmentationOutput:
    logits: torch.Tensor  # [B, 1, H, W]


@dataclass
class ClassificationOutput:
    logits: torch.Tensor  # [B, K]


def read_medklip_trunk(init: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """conv1..layer3 weights of a MedKLIP model (``save_pretrained`` folder or official ``.pth``)
    named as in a torchvision ResNet, and the backbone's name."""
    path = Path(init)
    if path.is_dir():
        try:
            backbone = read_model_config(path)["model"]["backbone"]
            state = load_file(str(path / "model.safetensors"))
        except (OSError, KeyError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a medklip model folder ({exc})") from exc
    elif path.is_file():
        state, backbone = read_official_state_dict(path), "resnet50"
    else:
        raise CheckpointError(f"{path}: no such model folder or checkpoint (use init=scratch to train from scratch)")
    trunk = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
    if not trunk:
        raise CheckpointError(f"{path}: holds no image-encoder weights ({PREFIX}*)")
    return trunk, backbone


class ResNetEncoder(nn.Module):
    """A torchvision ResNet's stages; returns the feature maps at strides 2, 4, 8, 16 and 32."""

    def __init__(self, backbone: str) -> None:
        super().__init__()
        try:
            resnet = getattr(models, backbone)(weights=None)
        except AttributeError as exc:
            raise CheckpointError(f"unknown backbone {backbone!r} (a torchvision ResNet name)") from exc
        self.backbone = backbone
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4
        self.channels = [64] + [_out_channels(getattr(resnet, f"layer{i}")) for i in range(1, 5)]

    def load_medklip(self, trunk: dict[str, torch.Tensor], source: str) -> None:
        """Initialise conv1..layer3 from ``trunk``; every one of their weights must be there."""
        own = {k: v for k, v in self.state_dict().items() if k.split(".")[0] in INIT_STAGES}
        missing = sorted(set(own) - set(trunk))
        shapes = [k for k in own if k in trunk and trunk[k].shape != own[k].shape]
        if missing or shapes:
            raise CheckpointError(f"{source}: image encoder does not fit {self.backbone} "
                                  f"(missing {missing[:3]}, shape mismatch {shapes[:3]})")
        self.load_state_dict({k: trunk[k] for k in own}, strict=False)
        logger.info("conv1..layer3 initialised from %s (%d tensors)", source, len(own))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x0 = self.relu(self.bn1(self.conv1(x)))
        x1 = self.layer1(self.maxpool(x0))
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        return [x0, x1, x2, x3, self.layer4(x3)]


class LocalEncoder(nn.Module):
    """The ``local`` trunk's stages (strides 2, 4, 8, 16) and a fresh stride-32 stage (as a ResNet's
    ``layer4``, which MedKLIP does not train either); same outputs as :class:`ResNetEncoder`."""

    backbone = "local"

    def __init__(self) -> None:
        super().__init__()
        self.trunk = LocalTrunk(stride=16)
        top = LocalTrunk.STAGE_CHANNELS[-1]
        self.layer4 = nn.Sequential(nn.Conv2d(top, 2 * top, 3, 2, 1, bias=False), nn.BatchNorm2d(2 * top),
                                    nn.ReLU(inplace=True))
        self.channels = [*LocalTrunk.STAGE_CHANNELS, 2 * top]

    def load_medklip(self, trunk: dict[str, torch.Tensor], source: str) -> None:
        """Initialise the local trunk from ``trunk``: every weight of a stride-16 local trunk."""
        load_state_dict_strict(self.trunk, trunk, f"{source} (as a stride-16 local trunk)")
        logger.info("local trunk initialised from %s (%d tensors)", source, len(trunk))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stages = self.trunk.stage_outputs(x)
        return [*stages, self.layer4(stages[-1])]


def make_encoder(backbone: str) -> ResNetEncoder | LocalEncoder:
    """The encoder for a backbone name: a torchvision ResNet's or the local trunk's."""
    return LocalEncoder() if backbone == "local" else ResNetEncoder(backbone)


def _out_channels(layer: nn.Sequential) -> int:
    block = layer[-1]
    conv = block.conv3 if hasattr(block, "conv3") else block.conv2
    return int(conv.out_channels)  # type: ignore[union-attr, arg-type]


class ResNetClassifier(nn.Module):
    """ResNet -> global average pool -> linear: ``num_outputs`` logits (sigmoid or softmax)."""

    def __init__(self, backbone: str, num_outputs: int) -> None:
        super().__init__()
        self.encoder = make_encoder(backbone)
        self.head = nn.Linear(self.encoder.channels[-1], num_outputs)

    def forward(self, images: torch.Tensor) -> ClassificationOutput:
        feats = self.encoder(images)[-1]
        return ClassificationOutput(self.head(feats.mean((2, 3))))


class _Up(nn.Module):
    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin + skip, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                  nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        size = skip.shape[-2:] if skip is not None else tuple(2 * s for s in x.shape[-2:])
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], 1) if skip is not None else x)


class ResUNet(nn.Module):
    """U-Net with a ResNet encoder: decoder blocks upsample and join the skip at each stride."""

    def __init__(self, backbone: str, widths: tuple[int, ...] = (256, 128, 64, 32, 16)) -> None:
        super().__init__()
        self.encoder = make_encoder(backbone)
        ch = self.encoder.channels  # strides 2, 4, 8, 16, 32
        skips = [ch[3], ch[2], ch[1], ch[0], 0]
        cins = [ch[4], *widths[:-1]]
        self.decoder = nn.ModuleList(_Up(ci, s, co) for ci, s, co in zip(cins, skips, widths))
        self.head = nn.Conv2d(widths[-1], 1, 1)

    def forward(self, images: torch.Tensor) -> SegmentationOutput:
        x0, x1, x2, x3, x = self.encoder(images)
        for block, skip in zip(self.decoder, (x3, x2, x1, x0, None)):
            x = block(x, skip)
        if x.shape[-2:] != images.shape[-2:]:
            x = F.interpolate(x, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return SegmentationOutput(self.head(x))


def init_preprocess_profile(init: str) -> str:
    """The preprocessing profile of the initialising model: a folder's recorded one, the release's
    for an official checkpoint, medklip's own from scratch."""
    if init == "scratch":
        return "medklip"
    path = Path(init)
    if path.is_dir():
        return str((read_model_config(path).get("preprocess") or {}).get("profile", "medklip"))
    return "release-cxr14"


def build_model(task: str, backbone: str, num_outputs: int, init: str) -> nn.Module:
    """The task's network, with conv1..layer3 from ``init`` unless it is ``scratch``."""
    trunk = None
    if init != "scratch":
        trunk, init_backbone = read_medklip_trunk(init)
        if init_backbone != backbone:
            logger.info("using the initialising model's backbone %s (config said %s)", init_backbone, backbone)
            backbone = init_backbone
    model = ResUNet(backbone) if task == "segment" else ResNetClassifier(backbone, num_outputs)
    if trunk is not None:
        model.encoder.load_medklip(trunk, str(init))
    return model


def dice_bce_loss(logits: torch.Tensor, masks: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """BCE plus soft Dice (per image, averaged), the usual segmentation loss."""
    bce = F.binary_cross_entropy_with_logits(logits, masks)
    p = torch.sigmoid(logits).flatten(1)
    m = masks.flatten(1)
    dice = (2 * (p * m).sum(1) + smooth) / (p.sum(1) + m.sum(1) + smooth)
    return bce + (1 - dice).mean()


FINETUNED_FORMAT = "medklip-finetuned/1"


def save_finetuned(model: nn.Module, folder: str | Path, info: dict) -> Path:
    """A fine-tuned network as a folder: ``model.safetensors`` + ``config.json`` (task, classes,
    backbone, image size, preprocessing profile, where it came from, the weights' sha256)."""
    folder = Path(folder)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    config = {"format": FINETUNED_FORMAT, **info, "sha256": sha256_file(folder / "model.safetensors")}
    atomic_write_text(folder / "config.json", json.dumps(config, indent=1))
    return folder


def load_finetuned(folder: str | Path) -> tuple[nn.Module, dict]:
    """The network of a ``best/`` folder written by fine-tuning, in eval mode, and its config."""
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder}: not a fine-tuned model folder ({exc})") from exc
    if not isinstance(config, dict) or config.get("format") != FINETUNED_FORMAT:
        raise CheckpointError(f"{folder}/config.json: format is not {FINETUNED_FORMAT!r}")
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing from the fine-tuned model folder")
    if config.get("sha256") and sha256_file(weights) != config["sha256"]:
        raise CheckpointError(f"{weights}: checksum mismatch (file truncated or modified); re-copy the folder")
    try:
        outputs = len(config["classes"])
        model = ResUNet(config["backbone"]) if config["task"] == "segment" else \
            ResNetClassifier(config["backbone"], outputs)
    except (KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{folder}/config.json: incomplete ({exc})") from exc
    load_state_dict_strict(model, load_file(str(weights)), str(weights))
    return model.eval(), config
