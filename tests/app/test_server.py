"""The web API: predictions, errors for bad uploads, and upload hygiene."""
from __future__ import annotations

import base64
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from medklip.app import PredictionService, create_app
from medklip.knowledge import KnowledgeBase
from medklip.zeroshot.predict import Predictor
from tests.conftest import make_tiny_model
from tests.data.test_image_io import rg1_path


@pytest.fixture(scope="module")
def client(minilm):
    model = make_tiny_model(minilm)
    service = PredictionService(Predictor(model, device="cpu"), max_upload_mb=8, model_name="tiny")
    service.predictor._encoder = minilm
    return TestClient(create_app(service))


def _post(client, data: bytes, name: str, **fields):
    return client.post("/api/predict", files={"file": (name, data)}, data=fields)


def test_page_and_findings(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and 'id="run"' in page.text and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/..%2Fserver.py").status_code == 404
    f = client.get("/api/findings").json()
    names = {e["name"]: e for e in f["findings"]}
    assert len(names) == len(KnowledgeBase.extended()) == 257 and names["hiatal hernia"]["in_model"] is False
    assert names["covid-19"]["in_model"] is False and names["effusion"]["in_model"]
    assert "effusion" in f["default"]
    assert "not for clinical decisions" in page.text

    assert client.get("/api/health").json()["max_upload_mb"] == 8


def test_predict_dicom_with_findings_and_description(client) -> None:
    r = _post(client, Path(rg1_path()).read_bytes(), "RG1_UNCR.dcm", findings="effusion,pneumonia",
              describe_name="covid-19", describe_text="Bilateral peripheral ground-glass opacities.")
    assert r.status_code == 200, r.text
    body = r.json()
    probs = [x["probability"] for x in body["results"]]
    assert [x["finding"] for x in body["results"]] and probs == sorted(probs, reverse=True)
    assert {x["finding"]: x["query"] for x in body["results"]} == {
        "effusion": "model", "pneumonia": "model", "covid-19": "description"}
    img = Image.open(io.BytesIO(base64.b64decode(body["image"]["png"])))
    heat = Image.open(io.BytesIO(base64.b64decode(body["results"][0]["heatmap_png"])))
    assert img.size == heat.size and max(img.size) <= 1024
    assert body["image"]["filename"] == "RG1_UNCR.dcm" and np.array(body["results"][0]["heatmap"]).shape == (4, 4)


@pytest.mark.parametrize("data,name,fields,status,message", [
    (b"hello, not an image", "notes.txt", {"findings": "effusion"}, 415, "not a PNG, JPG or DICOM"),
    (b"\x89PNG\r\n\x1a\n broken", "x.png", {"findings": "effusion"}, 422, "cannot decode"),
    (b"", "empty.png", {"findings": "effusion"}, 400, "is empty"),
    (b"\x89PNG\r\n\x1a\n" + bytes(8 * 2**20), "big.png", {"findings": "effusion"}, 413, "limit is 8 MB"),
    (None, "a.png", {"describe_name": "sarcoidosis", "describe_text": "  "}, 400, "description of 'sarcoidosis' is empty"),
    (None, "a.png", {}, 400, "at least one finding"),
    (None, "a.png", {"findings": "efusion"}, 400, "Closest known names: effusion"),
])
def test_bad_requests_get_clear_errors(client, data, name, fields, status, message) -> None:
    if data is None:
        buf = io.BytesIO()
        Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)).save(buf, "PNG")
        data = buf.getvalue()
    r = _post(client, data, name, **fields)
    assert r.status_code == status and message in r.json()["error"], r.text


def test_uploads_do_not_outlive_the_request_and_names_are_not_paths(client, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 40), 128, np.uint8)).save(buf, "PNG")
    r = _post(client, buf.getvalue(), "../../evil.png", findings="effusion")
    assert r.status_code == 200 and r.json()["image"]["filename"] == "evil.png"
    assert list(tmp_path.iterdir()) == []
    assert not (tmp_path.parent / "evil.png").exists()


def test_the_page_says_which_model_and_warns_for_a_synthetic_one(minilm) -> None:
    model = make_tiny_model(minilm)
    model.training_info = {"data": "synthetic", "description": "medklip's embedded synthetic chest X-ray world"}
    service = PredictionService(Predictor(model, device="cpu"), model_name="demo-model")
    service.predictor._encoder = minilm
    client = TestClient(create_app(service))
    info = client.get("/api/health").json()["model_info"]
    assert info["synthetic"] and "synthetic" in info["trained_on"] and "not meaningful" in info["notice"]
    assert "not for clinical decisions" in info["research_use"]
    png = io.BytesIO()
    Image.fromarray((np.random.default_rng(1).random((64, 64)) * 255).astype(np.uint8)).save(png, format="PNG")
    body = _post(client, png.getvalue(), "x.png", findings="effusion").json()
    assert "not meaningful on real radiographs" in body["notice"] and body["model"]["name"] == "demo-model"
    real = PredictionService(Predictor(make_tiny_model(minilm), device="cpu"), model_name="m").model_info()
    assert real["notice"] is None and not real["synthetic"]
