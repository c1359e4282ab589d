"""File helpers every layer shares: atomic writes (a reader never sees half a file)."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``; renamed onto ``path`` when the block succeeds, removed
    when it fails. Write to the yielded path with any writer (``torch.save``, ``save_file``...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def errors_path(output: str | Path) -> str:
    """Where a batch job writing ``output`` lists the rows it could not use: ``OUT.jsonl`` (or
    ``.csv`` / ``.json`` / ``.tsv``) -> ``OUT.errors.jsonl``, any other name gets ``.errors.jsonl``
    appended; ``-`` (stdout) -> ``-``."""
    if str(output) == "-":
        return "-"
    path = Path(output)
    stem = path.name
    for suffix in (".jsonl", ".json", ".csv", ".tsv"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return str(path.with_name(stem + ".errors.jsonl"))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
