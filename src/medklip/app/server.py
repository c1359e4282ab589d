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
- ``GET /api/health`` -> ``{"status": "ok", "model": ..., "queries": n}``
"""
from __future__ import annotations

import base64
import io
import logging
import tempfile
import threading
from importlib import resources
from pathlib import Path

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image

from medklip.errors import MedKLIPError, UnknownEntityError, UploadError
from medklip.evaluation.plots import smooth_upsample
from medklip.zeroshot.predict import DEFAULT_FINDINGS, Predictor

logger = logging.getLogger(__name__)

MAX_UPLOAD_MB = 50
MAX_SIDE = 1024  # images sent back are at most this big
PNG_MAGIC, JPEG_MAGIC = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"


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
    from matplotlib import colormaps

    h = smooth_upsample(heatmap, shape)
    lo, hi = float(h.min()), float(h.max())
    h = (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)
    return (colormaps["jet"](h)[..., :3] * 255).astype(np.uint8)


class PredictionService:
    """The model (loaded once) behind the page; safe to call from several request threads."""

    def __init__(self, predictor: Predictor, max_upload_mb: float = MAX_UPLOAD_MB, model_name: str = "") -> None:
        self.predictor = predictor
        self.max_bytes = int(max_upload_mb * 1024 * 1024)
        self.model_name = model_name
        self._lock = threading.Lock()

    def findings(self) -> dict:
        in_model = set(self.predictor.model.entity_names)
        return {"findings": [{"name": e.name, "description": e.description, "in_model": e.name in in_model}
                             for e in self.predictor.knowledge.entities],
                "default": [f for f in DEFAULT_FINDINGS if f in self.predictor.knowledge]}

    def predict(self, data: bytes, filename: str, findings: list[str], described: dict[str, str]) -> dict:
        """Run one upload; the file lives in a private temporary folder removed on return."""
        if not data:
            raise UploadError(f"{filename or 'the upload'} is empty")
        if len(data) > self.max_bytes:
            raise UploadError(f"{filename} is {len(data) / 2**20:.1f} MB; the limit is "
                              f"{self.max_bytes / 2**20:.0f} MB", 413)
        for name, text in described.items():
            if not name.strip():
                raise UploadError("a described disease needs a name")
            if not text.strip():
                raise UploadError(f"the description of {name!r} is empty; describe how it looks on a radiograph")
        if not findings and not described:
            raise UploadError("choose at least one finding or describe a disease")
        suffix = sniff_suffix(data[:132], filename)
        with tempfile.TemporaryDirectory(prefix="medklip-upload-") as tmp:
            path = Path(tmp) / f"upload{suffix}"  # the user's filename never becomes a path
            path.write_bytes(data)
            with self._lock:  # the Predictor decodes the file and keeps its pixels for the response
                try:
                    [result] = self.predictor.predict([path], findings, described, batch_size=1, keep_display=True)
                except UnknownEntityError as exc:
                    raise UploadError(str(exc).split(" To use")[0] + " To ask for a new finding, type its name "
                                      "and description under 'A new disease'.") from exc
        if result.error:
            raise UploadError(result.error.replace(str(path), filename or "the upload"), 422)
        return self._response(filename, result, described)

    def _response(self, filename: str, result, described: dict) -> dict:
        shape = result.display.shape  # the decoded image, at most 1,024 px a side
        gray = Image.fromarray((result.display * 255).round().astype(np.uint8))
        in_model = set(self.predictor.model.entity_names)
        rows = []
        for name, p in sorted(result.probabilities.items(), key=lambda kv: -kv[1]):
            heat = result.heatmaps[name]
            query = "description" if name in described else ("model" if name in in_model else "knowledge base")
            rows.append({"finding": name, "probability": round(p, 6), "query": query,
                         "heatmap": np.round(heat, 6).tolist(), "heatmap_png": _png(colour_heatmap(heat, shape))})
        return {"image": {"filename": filename, "width": int(result.size[1]), "height": int(result.size[0]),
                          "png": _png(np.asarray(gray))}, "results": rows}


def create_app(service: PredictionService):
    """The FastAPI application: the page at ``/`` and the API under ``/api``."""
    app = FastAPI(title="medklip", description="Zero-shot chest X-ray findings and grounding (MedKLIP)",
                  version=__import__("medklip").__version__)
    static = resources.files("medklip.app").joinpath("static")

    @app.exception_handler(UploadError)
    async def _upload_error(_request: Request, exc: UploadError):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(MedKLIPError)
    async def _medklip_error(_request: Request, exc: MedKLIPError):
        return JSONResponse({"error": str(exc)}, status_code=400)

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
        return {"status": "ok", "model": service.model_name, "queries": len(service.predictor.model.entity_names),
                "max_upload_mb": service.max_bytes / 2**20}

    @app.get("/api/findings")
    def findings() -> dict:
        return service.findings()

    @app.post("/api/predict")
    async def predict(request: Request) -> dict:
        declared = int(request.headers.get("content-length") or 0)
        if declared > service.max_bytes + 2**20:  # refuse before receiving it
            raise UploadError(f"the upload is {declared / 2**20:.1f} MB; the limit is "
                              f"{service.max_bytes / 2**20:.0f} MB", 413)
        async with request.form() as form:  # spooled upload files are deleted when it closes
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise UploadError("no file uploaded (form field 'file')")
            data = await upload.read(service.max_bytes + 1)
            filename = Path(upload.filename or "").name
            names = [n.strip() for v in form.getlist("findings") for n in str(v).split(",") if n.strip()]
            d_names, d_texts = form.getlist("describe_name"), form.getlist("describe_text")
        if len(d_names) != len(d_texts):
            raise UploadError("describe_name and describe_text must come in pairs")
        described = {str(n).strip(): str(t) for n, t in zip(d_names, d_texts) if str(n).strip() or str(t).strip()}
        if "" in described:
            raise UploadError("a described disease needs a name")
        return await anyio.to_thread.run_sync(service.predict, data, filename, names, described)

    return app
