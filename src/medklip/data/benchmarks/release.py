"""The release's own test lists (shipped with medklip): exactly the images, labels and boxes the
authors scored, matched by file name against the user's copy of the dataset.

- ChestX-ray14 (``Sample_zero-shot_Classification_CXR14/data_sample/test.csv``): 25,596 images;
  columns ``img_path, Image Index, Finding Label`` and 14 0/1 columns in the release's class
  order (the order of ``benchmarks.yaml``).
- RSNA (``Sample_Zero-Shot_Grounding_RSNA/data_sample/test.csv``): 5,337 images; columns
  ``ID, img_path, boxes, classes``; ``boxes`` is ``nan`` or ``x;y;w;h|x;y;w;h...``. The image is
  ``<ID>.dcm`` (the Kaggle layout) or the list's own file name (the MD.ai layout).

Listed images missing from the user's copy are errors of the run (``errors.jsonl``), not dropped.
"""
from __future__ import annotations

import gzip
import io
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from medklip.data.benchmarks.base import (
    Benchmark,
    BenchmarkError,
    Region,
    Sample,
    index_files,
    make_error,
)
from medklip.extras import require

pd = require("pandas", "eval")

if TYPE_CHECKING:  # pragma: no cover
    import pandas

RELEASE_LISTS = {"chestxray14": "chestxray14_test.csv.gz", "rsna-pneumonia": "rsna_test.csv.gz"}
CXR14_LABEL_COLUMNS = 14
MISSING = "image listed by the release"


def release_list(name: str) -> pandas.DataFrame:
    """The packaged release test list of dataset ``name``."""
    if name not in RELEASE_LISTS:
        raise BenchmarkError(f"--split release exists for {', '.join(RELEASE_LISTS)} only (the lists the release "
                             f"ships), not {name!r}")
    data = resources.files("medklip.data.benchmarks").joinpath(f"data/release/{RELEASE_LISTS[name]}").read_bytes()
    return pd.read_csv(io.BytesIO(gzip.decompress(data)), dtype=str, keep_default_na=False)


def read_release_split(name: str, root: Path, spec: dict) -> Benchmark:
    """The release's test images of ``name`` found under ``root``, with the list's own labels
    (and, for RSNA, its boxes)."""
    df = release_list(name)
    source = Path(f"<release list {RELEASE_LISTS[name]}>")
    classes = list(spec["classes"])
    samples, errors = [], []
    missing = 0  # listed rows whose image is not in the user's copy
    if name == "chestxray14":
        images = index_files(root, {".png"})
        label_columns = list(df.columns[3:3 + CXR14_LABEL_COLUMNS])
        for i, row in enumerate(df.itertuples(index=False), start=2):
            file = row[1].strip() or Path(row[0]).name
            if file not in images:
                errors.append(make_error(source, i, file, f"{MISSING}: not found under the root"))
                missing += 1
                continue
            labels = {c: int(float(row[3 + k])) for k, c in enumerate(classes[:len(label_columns)])}
            samples.append(Sample(file, images[file], labels, file.split("_")[0]))
    else:
        images = index_files(root, {".dcm"}, key=lambda p: p.stem)
        [cls] = classes
        for i, row in enumerate(df.itertuples(index=False), start=2):
            pid, listed = row.ID.strip(), Path(row.img_path.strip()).stem
            path = images.get(pid) or images.get(listed)
            if path is None:
                errors.append(make_error(source, i, pid, f"{MISSING}: neither {pid}.dcm nor {listed}.dcm is "
                                                         "under the root"))
                missing += 1
                continue
            label = int(float(row.classes))
            sample = Sample(pid, path, {cls: label}, pid)
            if label == 1:
                try:
                    boxes = [tuple(float(v) for v in box.split(";")) for box in row.boxes.split("|")]
                    if any(len(b) != 4 for b in boxes):
                        raise ValueError(row.boxes)
                except ValueError:
                    errors.append(make_error(source, i, pid, f"boxes {row.boxes!r} are not x;y;w;h|..."))
                    continue
                sample.regions[cls] = Region(boxes=boxes)  # type: ignore[arg-type]
            samples.append(sample)
    if not samples:
        raise BenchmarkError(f"{root}: none of the {len(df)} images of the release's {name} test list is there "
                             f"(first missing: {errors[0]['id'] if errors else '?'}); see `medklip evaluate --list`")
    classes_map = dict(spec["classes"])
    return Benchmark(name, spec["title"], spec["task"], classes_map, samples, tuple(spec["split"]), errors,
                     listed=len(df), missing_images=missing)
