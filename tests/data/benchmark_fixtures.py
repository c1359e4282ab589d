"""Benchmark folders in each dataset's published layout, built from the *real* label rows that
the PyPI package torchxrayvision ships, with generated images of the right names and sizes."""
from __future__ import annotations

import gzip
import importlib.util
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def txv_data_dir() -> Path:
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None:
        raise RuntimeError("the tests need the PyPI package torchxrayvision (make test installs it)")
    return Path(spec.submodule_search_locations[0]) / "data"


def _lines_gz(name: str) -> list[str]:
    with gzip.open(txv_data_dir() / name, "rt", newline="") as f:
        return f.read().splitlines(keepends=True)


def _lines_zip(name: str) -> list[str]:
    with zipfile.ZipFile(txv_data_dir() / name) as z:
        return z.read(z.namelist()[0]).decode().splitlines(keepends=True)


def radiograph(size: tuple[int, int], seed: int) -> np.ndarray:
    """A smooth chest-like 8-bit picture (compresses well, decodes like a radiograph)."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    img = 0.5 + 0.3 * np.cos(6 * (xx - 0.5)) * np.sin(3 * yy + rng.random()) + 0.02 * rng.standard_normal((h, w))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def write_dicom(path: Path, pixels: np.ndarray) -> None:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "CR", path.stem
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)


def make_rsna(root: Path, multi: int = 4, single: int = 4, negative: int = 8) -> list[str]:
    """stage_2_train_labels.csv with every real row of the chosen patients, and their DICOMs."""
    lines = _lines_zip("kaggle_stage_2_train_labels.csv.zip")
    rows: dict[str, list[str]] = {}
    for line in lines[1:]:
        rows.setdefault(line.split(",", 1)[0], []).append(line)
    pos = [p for p, r in rows.items() if r[0].rstrip().endswith(",1")]
    chosen = ([p for p in pos if len(rows[p]) > 1][:multi] + [p for p in pos if len(rows[p]) == 1][:single]
              + [p for p, r in rows.items() if r[0].rstrip().endswith(",0")][:negative])
    root.mkdir(parents=True, exist_ok=True)
    (root / "stage_2_train_labels.csv").write_text(lines[0] + "".join(line_ for p in chosen for line_ in rows[p]))
    for i, p in enumerate(chosen):
        write_dicom(root / "stage_2_train_images" / f"{p}.dcm", radiograph((1024, 1024), i))
    return chosen


def make_siim(root: Path, multi: int = 3, single: int = 4, empty: int = 8) -> list[str]:
    """train-rle.csv with the real rows of the chosen images (several RLE rows per image, -1 for
    none), and their DICOMs in the nested dicom-images-train/<study>/<series>/ layout."""
    lines = _lines_gz("siim-pneumothorax-train-rle.csv.gz")
    rows: dict[str, list[str]] = {}
    for line in lines[1:]:
        rows.setdefault(line.split(",", 1)[0], []).append(line)
    neg = [i for i, r in rows.items() if r[0].split(",", 1)[1].strip() == "-1"]
    pos = [i for i in rows if i not in set(neg)]
    chosen = ([i for i in pos if len(rows[i]) > 1][:multi] + [i for i in pos if len(rows[i]) == 1][:single]
              + neg[:empty])
    root.mkdir(parents=True, exist_ok=True)
    (root / "train-rle.csv").write_text(lines[0] + "".join(line_ for i in chosen for line_ in rows[i]))
    for k, i in enumerate(chosen):
        write_dicom(root / "dicom-images-train" / f"1.2.study{k}" / f"1.2.series{k}" / f"{i}.dcm",
                    radiograph((1024, 1024), k))
    return chosen


def make_chestxray14(root: Path, plain: int = 24, with_boxes: int = 8) -> list[str]:
    """Data_Entry_2017_v2020.csv and BBox_List_2017.csv with the real rows of the chosen images
    (multi-label ``|`` strings, No Finding, images with several boxes), 1024x1024 PNGs."""
    entries = _lines_gz("Data_Entry_2017_v2020.csv.gz")
    boxes = _lines_gz("BBox_List_2017.csv.gz")
    by_name = {line_.split(",", 1)[0]: line_ for line_ in entries[1:]}
    box_rows: dict[str, list[str]] = {}
    for line in boxes[1:]:
        box_rows.setdefault(line.split(",", 1)[0], []).append(line)
    boxed = [n for n, r in box_rows.items() if len(r) > 1][:with_boxes // 2]
    boxed += [n for n, r in box_rows.items() if len(r) == 1][:with_boxes - len(boxed)]
    multi = [n for n, row in by_name.items() if "|" in row.split(",")[1]][:plain // 2]
    normal = [n for n, row in by_name.items() if row.split(",")[1] == "No Finding"][:plain // 4]
    single = [n for n, row in by_name.items() if "|" not in row.split(",")[1] and n not in normal][:plain // 4]
    chosen = list(dict.fromkeys(boxed + multi + normal + single))
    root.mkdir(parents=True, exist_ok=True)
    (root / "Data_Entry_2017_v2020.csv").write_text(entries[0] + "".join(by_name[n] for n in chosen))
    (root / "BBox_List_2017.csv").write_text(boxes[0] + "".join(line_ for n in boxed for line_ in box_rows[n]))
    for k, n in enumerate(chosen):
        folder = root / f"images_{k % 2 + 1:03d}" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(radiograph((1024, 1024), k)).save(folder / n)
    return chosen
