"""Hostile and careless inputs to `predict`: decompression bombs and images over the pixel budget
are per-file errors (the run goes on), symbolic-link loops and dangling links are reported, a file
is never predicted twice, an unreadable model gives one line."""
from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from medklip.cli import main
from medklip.zeroshot.predict import collect_images


def png_header_only(path, width: int, height: int) -> None:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


@pytest.fixture()
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray((np.random.default_rng(0).random((70, 60)) * 255).astype(np.uint8)).save(d / "ok.png")
    png_header_only(d / "bomb.png", 40_000, 40_000)  # PIL's DecompressionBombError
    png_header_only(d / "big.png", 13_000, 13_000)  # under PIL's guard, over medklip's budget
    return d


def test_bombs_are_per_file_errors_and_the_run_goes_on(folder, tiny_model_dir, capsys) -> None:
    code = main(["predict", str(folder), "--model", str(tiny_model_dir), "--findings", "effusion", "--format", "csv",
                 "--workers", "0"])
    out, err = capsys.readouterr()
    rows = {line.split(",")[0].rsplit("/", 1)[-1]: line for line in out.splitlines()[1:]}
    assert code == 1 and set(rows) == {"ok.png", "bomb.png", "big.png"}
    assert rows["ok.png"].split(",")[1] != "" and "decompression bomb" in rows["bomb.png"]
    assert "169,000,000 pixels is over the limit of 25,000,000" in rows["big.png"]
    assert "predicted 1 images, 2 failed" in err
    assert main(["predict", str(folder / "big.png"), "--model", str(tiny_model_dir), "--max-pixels", "200000000",
                 "--workers", "0", "--findings", "effusion"]) == 1  # allowed through the budget: its data is broken
    assert "over the limit" not in capsys.readouterr().err


def test_links_loops_and_duplicates_are_reported_once(folder, tmp_path) -> None:
    os.symlink(folder, folder / "loop")  # a folder that contains itself
    os.symlink(tmp_path / "gone.png", folder / "dangling.png")
    (tmp_path / "fake.png").mkdir()  # a directory with an image suffix, given explicitly
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "fake.png" / "inside.png")
    files, problems = collect_images([folder, folder / "ok.png", tmp_path / "fake.png", tmp_path / "fake.png",
                                      tmp_path / "missing.png"])
    names = sorted(p.name for p in files)
    assert names == ["big.png", "bomb.png", "inside.png", "ok.png"]  # each file once
    reasons = {p.image.rsplit("/", 1)[-1]: p.error for p in problems}
    assert "symbolic-link loop" in reasons["loop"] and "dangling symbolic link" in reasons["dangling.png"]
    assert "no such file" in reasons["missing.png"]


def test_an_unreadable_model_is_one_line(tiny_model_dir, tmp_path, monkeypatch, capsys) -> None:
    import medklip.models.serialization as serialization

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(serialization, "sha256_file", denied)
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(image)
    assert main(["predict", str(image), "--model", str(tiny_model_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be read (Permission denied)" in err[0] and "Traceback" not in err[0]
