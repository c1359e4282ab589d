"""Where the model runs for inference: PyTorch (default; channels_last, inference_mode) or ONNX
Runtime (the same graph exported with the query embeddings as an input; on CPUs it runs ResNet-50
about 1.5x faster than eager PyTorch, probabilities within 1e-5)."""
from __future__ import annotations

import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medklip.errors import MedKLIPError
from medklip.models import MedKLIP

BACKENDS = ("torch", "onnxruntime")


class TorchBackend:
    """The model itself."""

    def __init__(self, model: MedKLIP) -> None:
        self.model = model
        self.device = next(model.parameters()).device

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, queries: torch.Tensor,
                 heatmaps: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """``(probs [B,Q], heatmaps [B,Q,h,w] or None)`` as float32 numpy arrays."""
        pixels = images.to(self.device).contiguous(memory_format=torch.channels_last)
        out = self.model(pixels, queries.to(self.device), need_attentions=heatmaps)
        maps = out.heatmaps.float().cpu().numpy() if heatmaps and out.heatmaps is not None else None
        return out.probs.float().cpu().numpy(), maps


class OnnxBackend:
    """The model exported to ONNX with the query embeddings as an input and run by ONNX Runtime
    on the CPU. The graph fixes the number of queries, so one graph is exported (a few seconds)
    per query count a job uses; the query values are free."""

    def __init__(self, model: MedKLIP, threads: int | None = None) -> None:
        if next(model.parameters()).device.type != "cpu":
            raise MedKLIPError("the onnxruntime backend runs on the CPU; use the torch backend on a GPU")
        self.model, self.threads = model, threads
        self._folder = tempfile.TemporaryDirectory(prefix="medklip-onnx-")
        weakref.finalize(self, self._folder.cleanup)
        self._sessions: dict[int, Any] = {}

    def session(self, queries: torch.Tensor) -> Any:
        from medklip.models.export import export_onnx, onnx_session

        count = int(queries.shape[0])
        if count not in self._sessions:
            path = Path(self._folder.name) / f"model-{count}.onnx"
            export_onnx(self.model, path, [f"query_{i}" for i in range(count)], queries, query_input=True)
            self._sessions[count] = onnx_session(path, self.threads)
        return self._sessions[count]

    def __call__(self, images: torch.Tensor, queries: torch.Tensor,
                 heatmaps: bool) -> tuple[np.ndarray, np.ndarray | None]:
        probs, maps = self.session(queries).run(None, {
            "images": images.cpu().numpy().astype(np.float32, copy=False),
            "queries": queries.cpu().numpy().astype(np.float32, copy=False)})
        return probs, maps if heatmaps else None


def make_backend(name: str, model: MedKLIP) -> TorchBackend | OnnxBackend:
    if name == "torch":
        return TorchBackend(model)
    if name == "onnxruntime":
        return OnnxBackend(model)
    raise MedKLIPError(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}")
