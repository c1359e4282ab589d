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
PRECISIONS = ("fp32", "bf16", "auto")


def native_bf16_cpu(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bf16 natively (AMX-BF16 or AVX512-BF16 in its flags; Linux)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, device: torch.device, cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[str, str]:
    """``(fp32 | bf16, why)``: ``auto`` picks bf16 only where the hardware computes it natively."""
    if precision not in PRECISIONS:
        raise MedKLIPError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision, "asked for"
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ("bf16", "the GPU computes bf16 natively") if ok else ("fp32", "the GPU has no native bf16")
    if device.type == "cpu" and native_bf16_cpu(cpuinfo):
        return "bf16", "the CPU has native bf16 (AMX-BF16 / AVX512-BF16)"
    return "fp32", f"no native bf16 on {device.type}: bf16 would be emulated and slower"


class TorchBackend:
    """The model itself, in fp32 (exact) or under bf16 autocast (opt-in; faster where the hardware
    computes bf16 natively, probabilities change slightly: ``benchmarks/speed.py`` reports how much)."""

    def __init__(self, model: MedKLIP, precision: str = "fp32") -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.precision = precision

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, queries: torch.Tensor,
                 heatmaps: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """``(probs [B,Q], heatmaps [B,Q,h,w] or None)`` as float32 numpy arrays."""
        pixels = images.to(self.device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
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


def make_backend(name: str, model: MedKLIP, precision: str = "fp32") -> TorchBackend | OnnxBackend:
    if name == "torch":
        return TorchBackend(model, precision)
    if name == "onnxruntime":
        if precision != "fp32":
            raise MedKLIPError("the onnxruntime backend runs in fp32; use --backend torch for --precision bf16")
        return OnnxBackend(model)
    raise MedKLIPError(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}")
