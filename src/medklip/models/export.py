"""ONNX export: a model with its query set frozen in, images in, probabilities and heatmaps out
(dynamic batch), and a JSON sidecar naming the queries and the preprocessing to use."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medklip.extras import require
from medklip.io_utils import atomic_write_text
from medklip.models.medklip import MedKLIP

OPSET = 17


class _ExportedWithQueries(nn.Module):
    """``(images [B,3,S,S], queries [Q,text_dim]) -> (probs [B,Q], heatmaps [B,Q,h,w])``: any query set."""

    def __init__(self, model: MedKLIP) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(images, queries, need_attentions=True)
        assert out.heatmaps is not None
        return out.probs, out.heatmaps


class _Exported(_ExportedWithQueries):
    """``images [B,3,S,S] -> (probs, heatmaps)`` for a query set frozen into the graph."""

    queries: torch.Tensor

    def __init__(self, model: MedKLIP, queries: torch.Tensor) -> None:
        super().__init__(model)
        self.register_buffer("queries", queries.detach().clone())

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return super().forward(images, self.queries)


def export_onnx(model: MedKLIP, path: str | Path, names: list[str] | None = None,
                queries: torch.Tensor | None = None, query_input: bool = False) -> Path:
    """Write ``path`` (ONNX, opset 17, dynamic batch) and ``path.json`` (query names, image size,
    preprocessing profile, output names). ``queries`` default to the model's own; with
    ``query_input`` the query embeddings are a second input (``queries [Q, text_dim]``: the values are
    free, their number Q is the exported one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    query = model.entity_embeddings if queries is None else queries
    names = list(model.entity_names) if names is None else list(names)
    if len(names) != query.shape[0]:
        raise ValueError(f"{len(names)} query names for {query.shape[0]} queries")
    size = model.config.image_size
    example = torch.zeros(1, 3, size, size)
    axes: dict[str, dict[int, str]] = {"images": {0: "batch"}, "probs": {0: "batch"}, "heatmaps": {0: "batch"}}
    if query_input:
        wrapper: nn.Module = _ExportedWithQueries(model).eval()
        inputs: tuple = (example, query.detach().float())
        names_in = ["images", "queries"]
        # the number of queries is traced as a constant: an input of the same count, any values
    else:
        wrapper, inputs, names_in = _Exported(model, query).eval(), (example,), ["images"]
    with warnings.catch_warnings():  # the tracer's notes on shape checks that hold for any batch
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        torch.onnx.export(wrapper, inputs, str(path), input_names=names_in, output_names=["probs", "heatmaps"],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    grid = model.config.patch_grid
    sidecar: dict[str, Any] = {"queries": names, "image_size": size, "patch_grid": list(grid),
                               "preprocess": model.preprocess_cfg.to_dict(), "inputs": {"images": "[B,3,S,S] float32"},
                               "outputs": {"probs": "[B,Q] existence probability",
                                           "heatmaps": "[B,Q,h,w] grounding maps (mean of the layers' attention)"}}
    atomic_write_text(path.with_suffix(path.suffix + ".json"), json.dumps(sidecar, indent=1))
    return path


def onnx_session(path: str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for an exported model (``pip install 'medklip[export]'``)."""
    ort = require("onnxruntime", "export")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
