"""MIMIC-CXR(-JPG) -> a pre-training manifest: frontal views, the official split, report triplets.

Expected layout (PhysioNet releases): ``IMAGES/mimic-cxr-2.0.0-metadata.csv[.gz]`` and
``mimic-cxr-2.0.0-split.csv[.gz]`` (or pass them explicitly), images at
``IMAGES/files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg`` (or ``.dcm``), reports at
``REPORTS/files/pXX/pSUBJECT/sSTUDY.txt`` (``mimic-cxr-reports.zip`` unpacked).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from medklip.errors import MedKLIPError
from medklip.extras import require
from medklip.io_utils import errors_path
from medklip.progress import track
from medklip.reports import ReportFilter
from medklip.splits import normalize_split

pd = require("pandas", "train")

logger = logging.getLogger(__name__)

FRONTAL = frozenset({"PA", "AP"})


@dataclass
class PrepareSummary:
    images: int = 0
    studies: int = 0
    skipped_views: int = 0
    errors: list[dict] = field(default_factory=list)


def _find(root: Path, name: str, given: str | Path | None) -> Path:
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise MedKLIPError(f"{path}: no such file")
        return path
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise MedKLIPError(f"{root}: cannot find {name}[.gz]; download it from the MIMIC-CXR(-JPG) release "
                       f"or pass its path")


def prepare_mimic(images_root: str | Path, reports_root: str | Path, output: str | Path,
                  metadata: str | Path | None = None, split_file: str | Path | None = None,
                  report_filter: ReportFilter | None = None, progress: bool = False) -> PrepareSummary:
    """Write ``output`` (JSONL manifest) and ``output.errors.jsonl``; return counts."""
    images_root, reports_root, output = Path(images_root), Path(reports_root), Path(output)
    meta = pd.read_csv(_find(images_root, "mimic-cxr-2.0.0-metadata.csv", metadata), dtype=str)
    split = pd.read_csv(_find(images_root, "mimic-cxr-2.0.0-split.csv", split_file), dtype=str)
    for frame, cols, name in ((meta, {"dicom_id", "subject_id", "study_id", "ViewPosition"}, "metadata"),
                              (split, {"dicom_id", "split"}, "split file")):
        if not cols <= set(frame.columns):
            raise MedKLIPError(f"the {name} lacks columns {sorted(cols - set(frame.columns))}")
    table = meta.merge(split[["dicom_id", "split"]], on="dicom_id", how="left")
    rf = report_filter or ReportFilter()
    summary = PrepareSummary()
    triplet_cache: dict[str, list[dict] | None] = {}
    rows = track(table.itertuples(index=False), len(table), "MIMIC-CXR", unit="images", enabled=progress)
    tmp = output.with_suffix(output.suffix + ".tmp")
    with tmp.open("w") as out:
        for r in rows:
            if str(r.ViewPosition) not in FRONTAL:
                summary.skipped_views += 1
                continue
            subject, study = str(r.subject_id), str(r.study_id)
            where = f"dicom {r.dicom_id} (study {study})"
            if not isinstance(r.split, str) or normalize_split(r.split) is None:
                summary.errors.append({"where": where, "error": f"not in the split file (split={r.split!r})"})
                continue
            folder = Path("files") / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
            image = next((images_root / folder / f"{r.dicom_id}{ext}" for ext in (".jpg", ".dcm", ".png")
                          if (images_root / folder / f"{r.dicom_id}{ext}").is_file()), None)
            if image is None:
                summary.errors.append({"where": where, "error": f"image not found under {images_root / folder}"})
                continue
            if study not in triplet_cache:
                report = reports_root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"
                try:
                    text = report.read_text(encoding="utf-8")
                    triplet_cache[study] = [t.to_dict() for t in rf.extract(text)]
                    summary.studies += 1
                except (OSError, UnicodeDecodeError) as exc:
                    triplet_cache[study] = None
                    summary.errors.append({"where": str(report), "error": f"report unreadable ({exc})"})
            if triplet_cache[study] is None:
                continue
            out.write(json.dumps({"image": str(image.resolve()), "study_id": study, "split": normalize_split(r.split),
                                  "triplets": triplet_cache[study]}) + "\n")
            summary.images += 1
    tmp.replace(output)
    with Path(errors_path(output)).open("w") as f:
        for e in summary.errors:
            f.write(json.dumps(e) + "\n")
    return summary
