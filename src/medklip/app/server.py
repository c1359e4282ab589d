"""The web page and its HTTP API: upload a chest X-ray, ask for findings or a described
disease, get probabilities and grounding heatmaps.

FastAPI rather than Gradio: the page needs a small, documented JSON API that scripts can call
(FastAPI also serves its OpenAPI description at ``/docs``), full control over where uploads go
and when they are deleted, and no front-end assets fetched from the internet.

API (all responses JSON; errors are ``{"error": message}`` with a 4xx status):

- ``GET /api/findings`` -> ``{"findings": [{"name", "description", "in_model"}], "default": [names]}``
- ``POST /api/predict`` (multipart form): ``file`` (PNG / JPG / DICOM, at most ``max_upload_mb``),
  ``findings`` (comma-separated knowledge-base names, optional), ``describe_name`` +
  ``describe_text`` (a new disease, optional; repeatable in pairs). Response:
  ``{"image": {"filename", "width", "height", "png"}, "results": [{"finding", "probability",
  "query", "heatmap_png", "heatmap": [[...]]}]}`` sorted by probability, high to low; ``png`` and
  ``heatmap_png`` are base64 PNGs (the image, and the heatmap coloured and resized to it).
- ``GET /api/health`` -> ``{"status": "ok", "model": ..., "queries": n, "max_upload_mb": ..., "model_info":
  {"name", "trained_on", "synthetic", "preprocess", "queries", "research_use", "notice"}}``; ``notice`` is
  the "trained on synthetic images" warning when the model saw only medklip's synthetic world.
- Every prediction also carries ``model`` (name, trained_on, synthetic), ``notice`` and ``research_use``.
"""
from __future__ import annotations

import base64
import ctypes
import io
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from starlette.formparsers import MultiPartException

from medklip import __version__
from medklip.errors import MedKLIPError, UnknownEntityError, UploadError
from medklip.evaluation.plots import smooth_upsample
from medklip.extras import require
from medklip.models.card import RESEARCH_USE, SYNTHETIC_NOTICE, trained_on_synthetic
from medklip.zeroshot.predict import DEFAULT_FINDINGS, Predictor

logger = logging.getLogger(__name__)

MAX_UPLOAD_MB = 50
MAX_SIDE = 1024  # images sent back are at most this big
PNG_MAGIC, JPEG_MAGIC = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"
FORM_OVERHEAD = 1 << 20
"""Bytes a multipart form may add to the file itself (boundaries, headers, the other fields)."""
STALL_SECONDS = 15.0
"""An upload that sends nothing for this long is answered 408 and dropped."""
UPLOAD_SECONDS = 300.0
"""The longest an upload may take in all."""
STALE_UPLOAD_SECONDS = 3600
"""Upload folders older than this (left by a crashed server) are removed at start-up."""


def release_memory() -> None:
    """Give freed heap back to the OS (glibc keeps it per thread arena otherwise, so a server that
    decodes large images in worker threads would keep growing); a no-op where there is no glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def upload_root() -> Path:
    """The parent of the per-request upload folders (private to this user)."""
    root = Path(tempfile.gettempdir()) / f"medklip-uploads-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    root.mkdir(mode=0o700, exist_ok=True)
    return root


def clean_stale_uploads(root: Path, older_than: float = STALE_UPLOAD_SECONDS) -> int:
    """Remove upload folders a crashed server left behind; returns how many."""
    removed, now = 0, time.time()
    for folder in root.iterdir():
        try:
            if folder.is_dir() and now - folder.stat().st_mtime > older_than:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        except OSError:
            continue
    return removed


def sniff_suffix(head: bytes, filename: str) -> str:
    """The file type from its first bytes (never from the name alone): .png, .jpg or .dcm."""
    if head.startswith(PNG_MAGIC):
        return ".png"
    if head.startswith(JPEG_MAGIC):
        return ".jpg"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return ".dcm"
    raise UploadError(f"{filename or 'the upload'} is not a PNG, JPG or DICOM file; "
                      "upload a chest radiograph in one of those formats", 415)


def _png(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=False)
    return base64.b64encode(buf.getvalue()).decode()


def colour_heatmap(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Min-max normalised, bilinearly resized to ``shape``, jet-coloured RGB uint8."""
    colormaps = require("matplotlib", "app").colormaps

    h = smooth_upsample(heatmap, shape)
    lo, hi = float(h.min()), float(h.max())
    h = (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)
    return (colormaps["jet"](h)[..., :3] * 255).astype(np.uint8)


class PredictionService:
    """The model (loaded once) behind the page; safe to call from several request threads."""

    def __init__(self, predictor: Predictor, max_upload_mb: float = MAX_UPLOAD_MB, model_name: str = "",
                 upload_dir: str | Path | None = None) -> None:
        self.predictor = predictor
        self.max_bytes = int(max_upload_mb * 1024 * 1024)
        self.model_name = model_name
        self._lock = threading.Lock()
        self.uploads = Path(upload_dir) if upload_dir is not None else upload_root()
        """Parent of the per-request upload folders (default: :func:`upload_root`)."""
        self.uploads.mkdir(parents=True, exist_ok=True, mode=0o700)
        stale = clean_stale_uploads(self.uploads)
        if stale:
            logger.info("removed %d stale upload folders from %s", stale, self.uploads)

    def limit_text(self) -> str:
        mb = self.max_bytes / 2**20
        return f"{mb:.0f} MB" if mb >= 1 else f"{self.max_bytes:,} bytes"

    def model_info(self) -> dict:
        """Which model is served, what it was trained on, and the notices every page shows."""
        model = self.predictor.model
        training = model.training_info or {}
        synthetic = trained_on_synthetic(model.training_info)
        return {"name": self.model_name, "trained_on": training.get("description") or training.get("data")
                or "not recorded in the model folder", "synthetic": synthetic,
                "preprocess": self.predictor.preprocess.config.profile, "queries": len(model.entity_names),
                "research_use": RESEARCH_USE, "notice": SYNTHETIC_NOTICE if synthetic else None}

    def findings(self) -> dict:
        in_model = set(self.predictor.model.entity_names)
        return {"findings": [{"name": e.name, "description": e.description, "in_model": e.name in in_model}
                             for e in self.predictor.knowledge.entities],
                "default": [f for f in DEFAULT_FINDINGS if f in self.predictor.knowledge]}

    def predict(self, data: bytes, filename: str, findings: list[str],
                described: Mapping[str, str | list[str]]) -> dict:
        """Run one upload; the file lives in a private temporary folder removed on return."""
        if not data:
            raise UploadError(f"{filename or 'the upload'} is empty")
        if len(data) > self.max_bytes:
            raise UploadError(f"{filename} is {len(data) / 2**20:.1f} MB; the limit is {self.limit_text()}", 413)
        for name, value in described.items():
            if not name.strip():
                raise UploadError("a described disease needs a name")
            if not all(t.strip() for t in ([value] if isinstance(value, str) else value)):
                raise UploadError(f"the description of {name!r} is empty; describe how it looks on a radiograph")
        if not findings and not described:
            raise UploadError("choose at least one finding or describe a disease")
        suffix = sniff_suffix(data[:132], filename)
        with tempfile.TemporaryDirectory(prefix="upload-", dir=self.uploads) as tmp:
            path = Path(tmp) / f"upload{suffix}"  # the user's filename never becomes a path
            path.write_bytes(data)
            with self._lock:  # the Predictor decodes the file and keeps its pixels for the response
                try:
                    [result] = self.predictor.predict([path], findings, described, batch_size=1, keep_display=True)
                except UnknownEntityError as exc:
                    raise UploadError(str(exc).split(" To use")[0] + " To ask for a new finding, type its name "
                                      "and description under 'A new disease'.") from exc
                finally:
                    release_memory()
        if result.error:
            status = 413 if result.error_type == "ImageTooLargeError" else 422
            raise UploadError(result.error.replace(str(path), filename or "the upload"), status)
        return self._response(filename, result, described)

    def _response(self, filename: str, result, described: Mapping) -> dict:
        shape = result.display.shape  # the decoded image, at most 1,024 px a side
        gray = Image.fromarray((result.display * 255).round().astype(np.uint8))
        in_model = set(self.predictor.model.entity_names)
        rows = []
        for name, p in sorted(result.probabilities.items(), key=lambda kv: -kv[1]):
            heat = result.heatmaps[name]
            query = "description" if name in described else ("model" if name in in_model else "knowledge base")
            threshold = self.predictor.operating_point(name, described=name in described)
            rows.append({"finding": name, "probability": round(p, 6), "query": query,
                         "calibrated": bool(result.calibrated.get(name)),
                         "calibration": self.predictor.calibration_source if result.calibrated.get(name) else None,
                         "operating_point": threshold,
                         "above_operating_point": None if threshold is None else bool(p >= threshold),
                         "heatmap": np.round(heat, 6).tolist(), "heatmap_png": _png(colour_heatmap(heat, shape))})
        info = self.model_info()
        return {"model": {k: info[k] for k in ("name", "trained_on", "synthetic")}, "notice": info["notice"],
                "research_use": RESEARCH_USE,
                "image": {"filename": filename, "width": int(result.size[1]), "height": int(result.size[0]),
                          "png": _png(np.asarray(gray))}, "results": rows}


def _replay(body: bytes):
    """An ASGI ``receive`` that hands over an already received body."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def read_body(request: Request, limit: int, limit_text: str, stall: float = STALL_SECONDS,
                    total: float = UPLOAD_SECONDS) -> bytes:
    """The request body, counted as it arrives: past ``limit`` bytes -> 413 (nothing more is read,
    nothing is written to disk); no bytes for ``stall`` seconds, or longer than ``total`` -> 408."""
    received = bytearray()
    chunks = request.stream().__aiter__()
    started = time.monotonic()
    while True:
        wait = min(stall, total - (time.monotonic() - started))
        if wait <= 0:
            raise UploadError(f"the upload took longer than {total:.0f} s; try again on a faster connection", 408)
        with anyio.move_on_after(wait) as scope:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return bytes(received)
        if scope.cancelled_caught:
            raise UploadError(f"the upload stalled (nothing received for {stall:.0f} s); try again", 408)
        received += chunk
        if len(received) > limit:
            raise UploadError(f"the upload is over the limit of {limit_text}", 413)


def create_app(service: PredictionService, stall_seconds: float = STALL_SECONDS,
               upload_seconds: float = UPLOAD_SECONDS) -> FastAPI:
    """The FastAPI application: the page at ``/`` and the API under ``/api``."""
    app = FastAPI(title="medklip", description="Zero-shot chest X-ray findings and grounding (MedKLIP)",
                  version=__version__)
    static = resources.files("medklip.app").joinpath("static")

    @app.exception_handler(UploadError)
    async def _upload_error(_request: Request, exc: UploadError):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(MedKLIPError)
    async def _medklip_error(_request: Request, exc: MedKLIPError):
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(MultiPartException)
    async def _bad_form(_request: Request, exc: MultiPartException):
        return JSONResponse({"error": f"the upload is not a valid multipart form ({exc.message})"}, status_code=400)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):  # never a traceback to the client
        logger.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error: the server could not answer this request (see its log)"},
                            status_code=500)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return static.joinpath("index.html").read_text()

    @app.get("/static/{name}")
    def asset(name: str) -> Response:
        types = {"app.js": "text/javascript", "style.css": "text/css"}
        if name not in types:
            return JSONResponse({"error": "not found"}, status_code=404)
        return Response(static.joinpath(name).read_text(), media_type=types[name])

    @app.get("/api/health")
    def health() -> dict:
        info = service.model_info()
        return {"status": "ok", "model": service.model_name, "queries": info["queries"],
                "max_upload_mb": service.max_bytes / 2**20, "model_info": info}

    @app.get("/api/findings")
    def findings() -> dict:
        return service.findings()

    @app.post("/api/predict")
    async def predict(request: Request) -> dict:
        limit = service.max_bytes + FORM_OVERHEAD
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:  # refuse before receiving it
            raise UploadError(f"the upload is {int(declared) / 2**20:.1f} MB; the limit is {service.limit_text()}", 413)
        body = await read_body(request, limit, service.limit_text(), stall_seconds, upload_seconds)
        form_request = Request(request.scope, _replay(body))
        async with form_request.form(max_files=1, max_fields=64) as form:  # spooled parts deleted on close
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise UploadError("no file uploaded (form field 'file')")
            data = await upload.read(service.max_bytes + 1)
            filename = Path(upload.filename or "").name
            names = [n.strip() for v in form.getlist("findings") for n in str(v).split(",") if n.strip()]
            d_names, d_texts = form.getlist("describe_name"), form.getlist("describe_text")
        del body
        if len(d_names) != len(d_texts):
            raise UploadError("describe_name and describe_text must come in pairs")
        described: dict[str, list[str]] = {}
        for n, t in zip(d_names, d_texts):  # a name given twice: both descriptions (an ensemble)
            if str(n).strip() or str(t).strip():
                described.setdefault(str(n).strip(), []).append(str(t))
        if "" in described:
            raise UploadError("a described disease needs a name")
        return await anyio.to_thread.run_sync(service.predict, data, filename, names, described)

    return app
