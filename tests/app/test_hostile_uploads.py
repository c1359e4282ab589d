"""Hostile uploads never take the server down: images over the pixel budget (deflate and PNG
bombs) are JSON 413s decided from the header, a chunked body is cut at the limit, a stalled upload
gets a 408, a crash inside is a JSON 500, stale upload folders are cleaned at start-up."""
from __future__ import annotations

import io
import json
import os
import select
import socket
import tempfile
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from medklip.app import PredictionService, create_app
from medklip.app.server import upload_root
from medklip.zeroshot.predict import Predictor
from tests.conftest import make_tiny_model
from tests.data.test_dicom import make
from tests.zeroshot.test_hostile_inputs import png_header_only


@pytest.fixture(scope="module")
def service(minilm) -> PredictionService:
    s = PredictionService(Predictor(make_tiny_model(minilm), device="cpu"), max_upload_mb=4, model_name="tiny")
    s.predictor._encoder = minilm
    return s


@pytest.fixture(scope="module")
def client(service) -> TestClient:
    return TestClient(create_app(service), raise_server_exceptions=False)


def _deflated_dicom(side: int) -> bytes:
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = make(np.zeros((side, side), np.uint16))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_a_deflate_bomb_is_refused_from_its_header(client) -> None:
    data = _deflated_dicom(10_000)  # ~200 KB on the wire, 200 MB of pixels
    assert len(data) < 400_000
    start = time.perf_counter()
    r = client.post("/api/predict", files={"file": ("scan.dcm", data)}, data={"findings": "effusion"})
    assert r.status_code == 413 and "over the limit of 25,000,000" in r.json()["error"]
    assert time.perf_counter() - start < 5  # the memory it did not take: tests/data/test_bombs_in_a_fresh_process.py


def test_a_png_bomb_is_a_json_4xx(client, tmp_path) -> None:
    png_header_only(tmp_path / "bomb.png", 40_000, 40_000)
    r = client.post("/api/predict", files={"file": ("bomb.png", (tmp_path / "bomb.png").read_bytes())},
                    data={"findings": "effusion"})
    assert r.status_code == 413 and "decompression bomb" in r.json()["error"] and "bomb.png" in r.json()["error"]


def test_an_error_inside_is_a_json_500(service, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service, "predict", broken)
    client = TestClient(create_app(service), raise_server_exceptions=False)
    png = io.BytesIO()
    from PIL import Image

    Image.fromarray(np.zeros((16, 16), np.uint8)).save(png, format="PNG")
    r = client.post("/api/predict", files={"file": ("a.png", png.getvalue())}, data={"findings": "effusion"})
    assert r.status_code == 500 and "internal error" in r.json()["error"] and "secret" not in r.text


@pytest.fixture(scope="module")
def live(service):
    """A real uvicorn server on loopback (the test client buffers whole bodies; this one streams)."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(service, stall_seconds=1.0), host="127.0.0.1", port=port,
                                           log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def _answer(conn: socket.socket) -> str:
    data = b""
    while b"\r\n\r\n" not in data or not data.split(b"\r\n\r\n", 1)[1]:
        part = conn.recv(65536)
        if not part:
            break
        data += part
    return data.decode(errors="replace")


def test_a_chunked_upload_is_cut_at_the_limit(live) -> None:
    with socket.create_connection(("127.0.0.1", live), timeout=10) as conn:
        conn.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        sent, chunk = 0, b"\0" * (1 << 20)
        try:
            while sent < (300 << 20):  # 300 MB offered, no Content-Length
                conn.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
                readable, _, _ = select.select([conn], [], [], 0)
                if readable:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _answer(conn)
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert json.loads(answer.split("\r\n\r\n", 1)[1])["error"] == "the upload is over the limit of 4 MB"
    assert sent < (40 << 20)  # the server answered long before the 300 MB were sent


def test_a_stalled_upload_times_out(live) -> None:
    with socket.create_connection(("127.0.0.1", live), timeout=10) as conn:
        conn.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                     b"Content-Length: 3000000\r\n\r\n" + b"\0" * 1_000_000)
        start = time.perf_counter()
        answer = _answer(conn)
    assert answer.startswith("HTTP/1.1 408"), answer[:200]
    assert time.perf_counter() - start < 8
    assert json.loads(answer.split("\r\n\r\n", 1)[1])["error"].startswith("the upload stalled")


def test_stale_upload_folders_are_removed_at_start_up(minilm, tmp_path, monkeypatch) -> None:
    # the upload root lives in the temporary directory, shared by every run of the suite on this
    # machine: this test gets its own, or two runs at once remove each other's folders (seen: two
    # `make test` runs side by side, one failed here)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert upload_root().parent == tmp_path
    stale = upload_root() / "upload-left-by-a-crash"
    stale.mkdir(exist_ok=True)
    (stale / "upload.png").write_bytes(b"x")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    fresh = upload_root() / "upload-in-use"
    fresh.mkdir(exist_ok=True)
    PredictionService(Predictor(make_tiny_model(minilm), device="cpu"))
    assert not stale.exists() and fresh.exists()
    fresh.rmdir()
