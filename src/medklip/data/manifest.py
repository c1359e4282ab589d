"""Pre-training manifests: one row per image, the same format for MIMIC-CXR and the synthetic world.

JSONL (or CSV) with ``image`` (path, relative to the manifest's folder or absolute),
``study_id``, ``split`` (train / validation / test) and ``report`` (text) or ``triplets``
(a list of {entity, position, exist}, or a JSON string of it in CSV).
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from medklip.errors import MedKLIPError
from medklip.splits import SPLITS, normalize_split


@dataclass
class ManifestRow:
    image: Path
    study_id: str
    split: str
    report: str | None = None
    triplets: list[dict] | None = None


@dataclass
class ManifestError:
    where: str
    error: str


def _row(raw: dict, base: Path, where: str, check_images: bool = True) -> ManifestRow | ManifestError:
    image = raw.get("image")
    if not image:
        return ManifestError(where, "missing 'image'")
    study = raw.get("study_id")
    if study in (None, ""):
        return ManifestError(where, "missing 'study_id'")
    split = normalize_split(str(raw.get("split", "")))
    if split is None:
        return ManifestError(where, f"split must be one of {SPLITS}, got {raw.get('split')!r}")
    triplets = raw.get("triplets")
    if isinstance(triplets, str) and triplets.strip():
        try:
            triplets = json.loads(triplets)
        except json.JSONDecodeError as exc:
            return ManifestError(where, f"'triplets' is not JSON ({exc.msg})")
    report = raw.get("report") or None
    if not report and not triplets:
        return ManifestError(where, "needs 'report' text or 'triplets'")
    path = Path(image)
    path = path if path.is_absolute() else base / path
    if check_images:
        try:
            if not path.is_file():
                return ManifestError(where, f"image not found: {path}")
            if path.stat().st_size == 0:
                return ManifestError(where, f"image is an empty file: {path}")
        except OSError as exc:
            return ManifestError(where, f"image cannot be read: {path} ({exc.strerror or exc})")
    return ManifestRow(path, str(study), split, report, triplets or None)


def read_manifest(path: str | Path, check_images: bool = True) -> tuple[list[ManifestRow], list[ManifestError]]:
    """Rows and per-row problems (``file:line`` and reason); nothing is dropped silently. With
    ``check_images`` a row whose image file is missing or empty is a problem, found before
    training starts."""
    path = Path(path)
    if not path.is_file():
        raise MedKLIPError(f"{path}: no such manifest")
    base = path.parent
    rows: list[ManifestRow] = []
    errors: list[ManifestError] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            items = [(f"{path}:{n}", raw) for n, raw in enumerate(csv.DictReader(f), start=2)]
    else:
        items = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append((f"{path}:{n}", json.loads(line)))
            except json.JSONDecodeError as exc:
                errors.append(ManifestError(f"{path}:{n}", f"malformed JSON ({exc.msg})"))
    for where, raw in items:
        row = _row(raw, base, where, check_images) if isinstance(raw, dict) else ManifestError(where, "not an object")
        if isinstance(row, ManifestError):
            errors.append(row)
        else:
            rows.append(row)
    return rows, errors
