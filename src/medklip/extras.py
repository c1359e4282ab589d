"""Optional dependencies, grouped as pip extras: ``medklip[eval]`` (benchmarks, reports, overlays),
``medklip[train]`` (pre-training and fine-tuning logs, MIMIC-CXR manifests), ``medklip[app]``
(the web page), ``medklip[export]`` (ONNX). A missing one is a clear error naming the extra to install, not a traceback."""
from __future__ import annotations

import importlib
from types import ModuleType

from medklip.errors import MedKLIPError

EXTRAS = {"eval": ("pandas", "matplotlib"), "train": ("pandas", "tensorboard"),
          "app": ("fastapi", "uvicorn", "multipart", "anyio", "matplotlib"), "export": ("onnx", "onnxruntime")}


class MissingExtraError(MedKLIPError, ImportError):
    """A feature whose optional dependency is not installed."""


def require(module: str, extra: str) -> ModuleType:
    """``import module``, or a :class:`MissingExtraError` saying ``pip install 'medklip[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"this needs the optional package {module.split('.')[0]!r}: "
                                f"pip install 'medklip[{extra}]'") from exc
