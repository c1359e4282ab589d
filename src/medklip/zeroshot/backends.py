"""Where the model runs for inference: PyTorch (default; channels_last, inference_mode), ONNX
Runtime, or OpenVINO's CPU runtime (both on the same graph exported with the query embeddings as an
input; on CPUs they run ResNet-50 faster than eager PyTorch, probabilities within 1e-5)."""
from __future__ import annotations

import os
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medklip.errors import BackendError, MedKLIPError
from medklip.extras import require
from medklip.models import MedKLIP

BACKENDS = ("torch", "onnxruntime", "openvino")
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
            raise MedKLIPError(f"the {type(self).__name__} runs on the CPU; use the torch backend on a GPU")
        self.model, self.threads = model, threads
        self._folder = tempfile.TemporaryDirectory(prefix="medklip-onnx-")
        weakref.finalize(self, self._folder.cleanup)
        self._sessions: dict[int, Any] = {}

    def compile(self, path: Path) -> Any:
        from medklip.models.export import onnx_session

        return onnx_session(path, self.threads)

    def session(self, queries: torch.Tensor) -> Any:
        from medklip.models.export import export_onnx

        count = int(queries.shape[0])
        if count not in self._sessions:
            path = Path(self._folder.name) / f"model-{count}.onnx"
            export_onnx(self.model, path, [f"query_{i}" for i in range(count)], queries, query_input=True)
            self._sessions[count] = self.compile(path)
        return self._sessions[count]

    def __call__(self, images: torch.Tensor, queries: torch.Tensor,
                 heatmaps: bool) -> tuple[np.ndarray, np.ndarray | None]:
        probs, maps = self.session(queries).run(None, {
            "images": images.cpu().numpy().astype(np.float32, copy=False),
            "queries": queries.cpu().numpy().astype(np.float32, copy=False)})
        return probs, maps if heatmaps else None


class OpenVinoBackend(OnnxBackend):
    """The same ONNX graph compiled by OpenVINO's CPU runtime (``pip install 'medklip[openvino]'``).
    OpenVINO computes in bf16 by default on CPUs that have it; here fp32 unless bf16 is asked for."""

    def __init__(self, model: MedKLIP, precision: str = "fp32", threads: int | None = None) -> None:
        super().__init__(model, threads)
        self.precision = precision

    def compile(self, path: Path) -> Any:
        ov = require("openvino", "openvino")
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        compiled = ov.Core().compile_model(str(path), "CPU", config)
        return _OpenVinoSession(compiled)


class _OpenVinoSession:
    """ONNX Runtime's ``run(None, feeds)`` call on a compiled OpenVINO model."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()

    def run(self, _outputs: None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            result = self.request.infer(feeds)
        except RuntimeError as err:  # the plugin picks its kernels at the first inference
            raise BackendError(openvino_refusal(err, os.environ.get("ONEDNN_MAX_CPU_ISA"))) from err
        return [np.asarray(result[out]) for out in self.compiled.outputs]


def openvino_refusal(err: Exception, max_isa: str | None) -> str:
    """What to tell a user whose CPU OpenVINO's plugin cannot run the graph on (seen: its layer
    norm has no kernel when oneDNN is limited to SSE4.1: "MVN node ... bad combination")."""
    reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    limit = f" (ONEDNN_MAX_CPU_ISA={max_isa} limits its kernels)" if max_isa else ""
    return (f"OpenVINO's CPU plugin cannot run the exported graph on this CPU{limit}: {reason}. "
            "Use --backend onnxruntime or --backend torch (same probabilities within 1e-5).")


def make_backend(name: str, model: MedKLIP, precision: str = "fp32", threads: int | None = None
                 ) -> TorchBackend | OnnxBackend:
    """The named backend for ``model``; ``threads`` sets ONNX Runtime's / OpenVINO's intra-op
    threads (default: theirs; PyTorch's are the process's ``torch.set_num_threads``)."""
    if name == "torch":
        return TorchBackend(model, precision)
    if name == "openvino":
        return OpenVinoBackend(model, precision, threads)
    if name == "onnxruntime":
        if precision != "fp32":
            raise MedKLIPError("the onnxruntime backend runs in fp32; use --backend torch for --precision bf16")
        return OnnxBackend(model, threads)
    raise MedKLIPError(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}")
