"""A bounded soak of `medklip serve`: 500 mixed requests (valid PNG / DICOM uploads, bombs, broken
files, oversized, chunked-oversized and stalled uploads) against a local server; prints status
counts, latency percentiles, the server's RSS over time, and the peak RSS while it refuses a
deflated 20,000 x 20,000 DICOM and a 40,000 x 40,000 PNG.

    python benchmarks/soak_server.py [--model DIR] [--requests 500]

Without --model a small random model is built (the decoding and the HTTP layer are what is soaked).
Targets (issue #18): every answer is JSON; RSS after the soak within 200 MB of after warm-up; the
peak for any upload within the limit under idle + 1 GB.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class RSSWatcher(threading.Thread):
    """Samples the server's RSS every 50 ms; ``peak`` since the last ``reset``."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.samples, self.running = pid, 0.0, [], True

    def run(self) -> None:
        while self.running:
            value = rss_mb(self.pid)
            self.peak = max(self.peak, value)
            self.samples.append((time.perf_counter(), value))
            time.sleep(0.05)

    def reset(self) -> None:
        self.peak = rss_mb(self.pid)


def multipart(data: bytes, filename: str, findings: str = "effusion,pneumonia") -> tuple[bytes, str]:
    boundary = "medklipsoak" + str(random.randrange(10**9))
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="findings"\r\n\r\n{findings}\r\n'.encode(),
             f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
             f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n",
             f"--{boundary}--\r\n".encode()]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def post(port: int, body: bytes, content_type: str, timeout: float = 60) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/predict", data=body,
                                 headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def raw_request(port: int, head: bytes, body_chunks, stall: float = 0.0) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(head)
        try:
            for chunk in body_chunks:
                conn.sendall(chunk)
            if stall:
                time.sleep(stall)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        while b"\r\n\r\n" not in data or not data.split(b"\r\n\r\n", 1)[1]:
            part = conn.recv(65536)
            if not part:
                break
            data += part
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""


def png_bytes(side: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = (np.add.outer(np.arange(side), np.arange(side)) % 200 + rng.integers(0, 40, (side, side))).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def dicom_bytes(side: int, deflated: bool) -> bytes:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, SecondaryCaptureImageStorage

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian if deflated else ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.Rows = ds.Columns = side
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    pixels = (np.add.outer(np.arange(side), np.arange(side)) % 4096).astype("<u2") if not deflated \
        else np.zeros((side, side), "<u2")
    ds.PixelData = pixels.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def build_model(folder: Path) -> Path:
    import torch

    from medklip import MedKLIP, MedKLIPConfig
    from medklip.knowledge import KnowledgeBase
    from medklip.text import TextEncoder

    torch.manual_seed(0)
    config = MedKLIPConfig(backbone="resnet18", image_size=64, d_model=64, num_layers=1, dim_feedforward=64)
    return MedKLIP.from_knowledge_base(config, KnowledgeBase.default(), TextEncoder()).save_pretrained(folder)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model folder (default: a small random one)")
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--max-upload-mb", type=float, default=50)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="medklip-soak-"))
    model = args.model or str(build_model(tmp / "model"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "medklip", "serve", "--model", model, "--port", str(port),
                               "--max-upload-mb", str(args.max_upload_mb), "--device", "cpu"],
                              stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        watch = RSSWatcher(server.pid)
        watch.start()
        idle = rss_mb(server.pid)
        valid = [multipart(png_bytes(2048, k), f"cxr{k}.png") for k in range(3)]
        valid.append(multipart(dicom_bytes(2500, False), "cxr.dcm"))
        for body, ctype in valid * 3:  # warm-up
            post(port, body, ctype)
        warm = rss_mb(server.pid)

        # the two named hostile files: peak RSS while refusing each
        peaks = {}
        for name, data in (("deflated DICOM 20000 x 20000", dicom_bytes(20_000, True)),
                           ("PNG 40000 x 40000", png_header(40_000, 40_000))):
            watch.reset()
            status, answer = post(port, *multipart(data, "hostile"))
            time.sleep(0.3)
            peaks[name] = (len(data), status, json.loads(answer)["error"][:70], watch.peak - idle)

        hostile = {
            "bomb png": multipart(png_header(40_000, 40_000), "bomb.png"),
            "png 13000^2": multipart(png_header(13_000, 13_000), "big.png"),
            "deflate 10000^2": multipart(dicom_bytes(10_000, True), "bomb.dcm"),
            "garbage": multipart(os.urandom(2000), "x.png"),
            "truncated png": multipart(png_bytes(512, 1)[:3000], "t.png"),
            "empty": multipart(b"", "e.png"),
        }
        kinds = ["valid"] * 6 + list(hostile) + ["oversized", "chunked oversized"]
        rng = random.Random(0)
        stalled = 8  # each holds a client thread for the server's stall timeout (15 s)
        plan = [rng.choice(kinds) for _ in range(args.requests - stalled)] + ["stalled"] * stalled
        results: list[tuple[str, int, float, bool]] = []
        lock = threading.Lock()
        limit = int(args.max_upload_mb * 2**20)

        def one(kind: str) -> None:
            start = time.perf_counter()
            if kind == "valid":
                status, body = post(port, *rng.choice(valid))
            elif kind == "oversized":
                status, body = raw_request(port, b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/"
                                           b"form-data; boundary=x\r\nContent-Length: %d\r\n\r\n" % (limit * 2), [])
            elif kind == "chunked oversized":
                chunk = b"\0" * (1 << 20)
                status, body = raw_request(port, b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/"
                                           b"form-data; boundary=x\r\nTransfer-Encoding: chunked\r\n\r\n",
                                           (b"%x\r\n" % len(chunk) + chunk + b"\r\n"
                                            for _ in range(int(args.max_upload_mb) + 8)))
            elif kind == "stalled":
                status, body = raw_request(port, b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/"
                                           b"form-data; boundary=x\r\nContent-Length: 4000000\r\n\r\n",
                                           [b"\0" * 1_000_000])
            else:
                status, body = post(port, *hostile[kind])
            try:
                json.loads(body)
                is_json = True
            except ValueError:
                is_json = False
            with lock:
                results.append((kind, status, time.perf_counter() - start, is_json))

        queue = list(plan)
        qlock = threading.Lock()

        def worker() -> None:
            while True:
                with qlock:
                    if not queue:
                        return
                    kind = queue.pop(0)
                one(kind)

        started = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        time.sleep(1)
        after = rss_mb(server.pid)
        watch.running = False

        print(f"soak: {len(results)} requests in {elapsed:.0f} s, {args.threads} client threads, upload limit "
              f"{args.max_upload_mb:g} MB\n")
        print("| request | n | statuses | all JSON | median ms | p95 ms | max ms |\n|---|---|---|---|---|---|---|")
        by_kind: dict[str, list] = {}
        for kind, status, seconds, is_json in results:
            by_kind.setdefault(kind, []).append((status, seconds, is_json))
        for kind, rows in sorted(by_kind.items()):
            lat = sorted(r[1] * 1000 for r in rows)
            statuses = ", ".join(f"{s}: {n}" for s, n in sorted(Counter(r[0] for r in rows).items()))
            p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
            print(f"| {kind} | {len(rows)} | {statuses} | {all(r[2] for r in rows)} | {statistics.median(lat):.0f} "
                  f"| {p95:.0f} | {lat[-1]:.0f} |")
        print(f"\nserver RSS: idle {idle:.0f} MB, after warm-up {warm:.0f} MB, after the soak {after:.0f} MB "
              f"(+{after - warm:.0f} MB), peak during the soak {max(v for _, v in watch.samples):.0f} MB")
        print("\n| hostile upload | bytes | status | answer | peak RSS over idle |\n|---|---|---|---|---|")
        for name, (size, status, error, peak) in peaks.items():
            print(f"| {name} | {size:,} | {status} | {error} | +{peak:.0f} MB |")
        every_json = all(r[3] for r in results)
        print(f"\nevery answer JSON: {every_json}; RSS growth after warm-up {after - warm:.0f} MB (target <= 200)")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
