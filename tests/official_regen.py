"""Rebuild the official release's weights and inputs by the written procedure of the reference
material (one ``torch.Generator().manual_seed(1234)``, values drawn in a fixed order), so the
suite proves official equivalence without the 58 MB checkpoint: only the official code's
outputs are stored (``tests/fixtures/official``)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "official"


@dataclass
class OfficialFixture:
    checkpoint: Path  # {"model": {"module." + name: tensor}}, as the release saves it
    state: dict[str, torch.Tensor]  # names without "module."
    entity_embeddings: torch.Tensor  # [75, 768]
    position_embeddings: torch.Tensor  # [51, 768]
    images: torch.Tensor  # [2, 3, 224, 224], normalised
    labels: torch.Tensor  # [2, 75] in {-1, 0, 1, 2}
    position_index: torch.Tensor  # [2, 75, 8]
    outputs: dict[str, torch.Tensor]  # logits, attentions, loss, loss_ce, loss_cl


def _draw(name: str, shape: list[int], dtype: str, g: torch.Generator) -> torch.Tensor:
    if "int" in dtype:  # num_batches_tracked
        return torch.zeros(shape, dtype=getattr(torch, dtype.removeprefix("torch.")))
    if name.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if name.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=g)
    if len(shape) == 1:
        return 0.1 * torch.randn(shape, generator=g) + (1.0 if name.endswith(".weight") else 0.0)
    return torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))


def regenerate(folder: Path) -> OfficialFixture:
    layout = json.loads((FIXTURE / "official_state_dict_layout.json").read_text())
    g = torch.Generator().manual_seed(int(layout["seed"]))
    state = {name: _draw(name, shape, dtype, g) for name, shape, dtype in layout["keys"]}
    entity = torch.randn(75, 768, generator=g)
    position = torch.randn(51, 768, generator=g)
    images = torch.randn(2, 3, 224, 224, generator=g)
    labels = torch.randint(-1, 3, (2, 75), generator=g)
    index = torch.randint(0, 51, (2, 75, 8), generator=g)
    checkpoint = folder / "checkpoint_final.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, checkpoint)
    return OfficialFixture(checkpoint, state, entity, position, images, labels, index,
                           load_file(str(FIXTURE / "official_outputs.safetensors")))
