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


def test_calibration_and_operating_point_beside_each_probability(minilm) -> None:
    from medklip.evaluation.calibration import apply

    model = make_tiny_model(minilm)
    model.calibration = {"method": "temperature", "parameters": {"effusion": {"temperature": 3.0}},
                         "data": "synthetic validation split (100 images)", "operating_points": {"effusion": 0.45}}
    service = PredictionService(Predictor(model, device="cpu"), max_upload_mb=8, model_name="tiny")
    service.predictor._encoder = minilm
    # a repeated name is an ensemble of its descriptions, never one of them dropped
    r = _post(TestClient(create_app(service)), Path(rg1_path()).read_bytes(), "RG1_UNCR.dcm",
              findings="effusion,pneumonia", describe_name=["covid-19", "covid-19"],
              describe_text=["Bilateral peripheral opacities.", "Ground-glass haze in both lower zones."])
    assert r.status_code == 200, r.text
    rows = {x["finding"]: x for x in r.json()["results"]}
    eff, pna, cov = rows["effusion"], rows["pneumonia"], rows["covid-19"]
    assert eff["calibrated"] and eff["calibration"] == "synthetic validation split (100 images)"
    assert eff["operating_point"] == 0.45 and eff["above_operating_point"] == (eff["probability"] >= 0.45)
    # the same queries uncalibrated: effusion's probability is the temperature map of that one
    again = Predictor(model, device="cpu", calibrated=False).predict(
        [rg1_path()], ["effusion", "pneumonia"], {"covid-19": ["Bilateral peripheral opacities.",
                                                             "Ground-glass haze in both lower zones."]},
        heatmaps=False)[0]
    assert eff["probability"] == pytest.approx(float(apply({"temperature": 3.0},
                                                           np.float32([again.probabilities["effusion"]]))[0]), abs=1e-6)
    for row in (pna, cov):
        assert row["calibrated"] is False and row["calibration"] is None and row["operating_point"] is None
    assert cov["query"] == "description"


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


def test_uploads_do_not_outlive_the_request_and_names_are_not_paths(minilm, tmp_path) -> None:
    """The server's upload folder is pointed at ``tmp_path`` before the server is built: each upload
    is written there (seen by the model while the request runs), under a name of the server's, and
    the folder is empty after every request, a failing one included. A file named by its path
    ('../../evil.png') lands nowhere near where that path points."""
    uploads = tmp_path / "deep" / "uploads"
    predictor = Predictor(make_tiny_model(minilm), device="cpu")
    predictor._encoder = minilm
    seen: list[Path] = []
    real_predict = predictor.predict

    def recording_predict(paths, *args, **kwargs):
        seen.append(Path(paths[0]))
        assert seen[-1].is_file()  # the upload exists while the model reads it
        return real_predict(paths, *args, **kwargs)

    predictor.predict = recording_predict  # type: ignore[method-assign]
    client = TestClient(create_app(PredictionService(predictor, upload_dir=uploads)))
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 40), 128, np.uint8)).save(buf, "PNG")
    for name, data, status in (("../../evil.png", buf.getvalue(), 200), ("../broken.png", b"\x89PNG\r\n\x1a\n" + b"0" * 64,
                                                                          422)):
        r = _post(client, data, name, findings="effusion")
        assert r.status_code == status, r.text
        path = seen[-1]
        assert path.parent.parent == uploads and path.name in ("upload.png",)  # the server's name, its folder
        assert not path.exists() and list(uploads.iterdir()) == []  # gone after the request, also after a failure
        # the traversal target of the user's name, resolved from the real upload location: nothing there
        assert not (path.parent / name).resolve().exists()
        assert not list(tmp_path.rglob(Path(name).name))
    assert r.json()["error"] and "broken.png" in r.json()["error"] and str(uploads) not in r.json()["error"]
    assert len(seen) == 2


def test_a_leaked_upload_folder_would_be_seen(minilm, tmp_path, monkeypatch) -> None:
    """The negative control of the test above: with the folder's removal switched off, the same
    check finds the upload left behind."""
    uploads = tmp_path / "uploads"
    predictor = Predictor(make_tiny_model(minilm), device="cpu")
    predictor._encoder = minilm
    client = TestClient(create_app(PredictionService(predictor, upload_dir=uploads)))
    kept = []

    class Leaky:
        def __init__(self, prefix: str, dir: Path) -> None:  # noqa: A002 (tempfile's own keyword)
            self.name = tempfile.mkdtemp(prefix=prefix, dir=dir)
            kept.append(self.name)

        def __enter__(self) -> str:
            return self.name

        def __exit__(self, *exc) -> None:
            return None

    monkeypatch.setattr(tempfile, "TemporaryDirectory", Leaky)
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 40), 128, np.uint8)).save(buf, "PNG")
    assert _post(client, buf.getvalue(), "x.png", findings="effusion").status_code == 200
    assert list(uploads.iterdir()) == [Path(kept[0])]


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
