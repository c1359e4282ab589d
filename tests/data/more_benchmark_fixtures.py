"""Folders in the published layouts of the added benchmarks (CheXpert, PadChest, VinDr-CXR, Open-I,
the ChestX-ray14 expert labels) from the *real* label rows torchxrayvision ships, and MS-CXR from
hand-written rows in its published CSV layout; generated images of the listed names and sizes."""
from __future__ import annotations

import csv
import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from tests.data.benchmark_fixtures import radiograph, txv_data_dir

PADCHEST_CSV = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"


def _gz_rows(name: str, limit: int | None = None, keep=lambda row: True) -> tuple[list[str], list[dict]]:
    with gzip.open(txv_data_dir() / name, "rt", newline="") as f:
        reader = csv.DictReader(f)
        rows = []
        for row in reader:
            if keep(row):
                rows.append(row)
                if limit is not None and len(rows) >= limit:
                    break
        return list(reader.fieldnames or []), rows


def _write_csv(path: Path, header: list[str], rows: list[dict], gz: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    if gz:
        with gzip.open(path, "wt", newline="") as f:
            f.write(buffer.getvalue())
    else:
        path.write_text(buffer.getvalue())


def _save(path: Path, size: tuple[int, int], seed: int, sixteen_bit: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = radiograph(size, seed)
    if sixteen_bit:  # PadChest's 16-bit PNGs (values well above 255)
        Image.fromarray(pixels.astype(np.uint16) * 200).save(path)
    else:
        Image.fromarray(pixels).save(path)


def make_chexpert(root: Path, rows: int = 40) -> list[dict]:
    """``train.csv`` with the first real rows of CheXpert's train list (frontal and lateral, 1 / 0 /
    -1 / blank labels; paths ``CheXpert-v1.0-small/train/...``), images at ``ROOT/train/...``, and a
    hand-written CheXzero-style ``groundtruth.csv`` (Study folders) for the test split."""
    header, chosen = _gz_rows("chexpert_train.csv.gz", rows)
    _write_csv(root / "train.csv", header, chosen)
    for k, row in enumerate(chosen):
        _save(root / Path(*Path(row["Path"]).parts[1:]), (96, 80), k)
    classes = header[5:]
    test = []
    for s in range(3):
        study = f"test/patient9000{s}/study1"
        _save(root / study / "view1_frontal.jpg", (96, 80), 100 + s)
        _save(root / study / "view2_lateral.jpg", (96, 80), 200 + s)
        test.append({"Study": study, **{c: str(int(c in ("Cardiomegaly", "Edema") and s == 0 or c == "No Finding"
                                                     and s > 0)) for c in classes}})
    _write_csv(root / "groundtruth.csv", ["Study", *classes], test)
    return chosen


def make_padchest(root: Path, physician: int = 30, rnn: int = 6) -> list[dict]:
    """The labels CSV (gz) with real rows (radiologist- and RNN-labelled, every projection) and
    16-bit PNGs in ``ROOT/<ImageDir>/<ImageID>``."""
    header, doctors = _gz_rows(PADCHEST_CSV + ".gz", physician, lambda r: r["MethodLabel"] == "Physician")
    _h, machine = _gz_rows(PADCHEST_CSV + ".gz", rnn, lambda r: r["MethodLabel"] == "RNN_model")
    chosen = doctors + machine
    _write_csv(root / (PADCHEST_CSV + ".gz"), header, chosen, gz=True)
    for k, row in enumerate(chosen):
        _save(root / row["ImageDir"] / row["ImageID"], (80, 72), k, sixteen_bit=True)
    return chosen


def make_vindr(root: Path, findings: int = 5, normal: int = 4) -> dict[str, list[dict]]:
    """Kaggle's ``train.csv`` with every real row (three readers) of the chosen images, PNG copies
    at the original pixel size the boxes are drawn in."""
    header, rows = _gz_rows("vinbigdata-train.csv.gz", 6000)
    by_image: dict[str, list[dict]] = {}
    for row in rows:
        by_image.setdefault(row["image_id"], []).append(row)
    with_boxes = [i for i, r in by_image.items() if len({x["class_name"] for x in r} - {"No finding"}) >= 2]
    empty = [i for i, r in by_image.items() if {x["class_name"] for x in r} == {"No finding"}]
    chosen = {i: by_image[i] for i in with_boxes[:findings] + empty[:normal]}
    _write_csv(root / "train.csv", header, [r for rs in chosen.values() for r in rs])
    for k, (image_id, rs) in enumerate(chosen.items()):
        boxes = [r for r in rs if r["x_max"]]
        h = int(max([float(r["y_max"]) for r in boxes], default=400)) + 40
        w = int(max([float(r["x_max"]) for r in boxes], default=400)) + 40
        _save(root / "train" / f"{image_id}.png", (h // 4 * 4, w // 4 * 4), k)
    return chosen


MS_CXR_HEADER = ["dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width",
                 "image_height"]


def make_ms_cxr(root: Path) -> list[dict]:
    """``MS_CXR_Local_Alignment_v1.0.0.csv`` written by hand in the published layout: boxes in a
    2048 x 2048 frame, images saved as 512 x 512 copies (the boxes are scaled), one phrase with two
    boxes, two phrases on one image, and one row of an unknown category."""
    rows = [
        ("d1", "Pneumonia", "Patchy consolidation in the right lower lobe", 1200, 1200, 400, 500),
        ("d1", "Pleural Effusion", "Small left pleural effusion", 300, 1500, 300, 300),
        ("d2", "Cardiomegaly", "The heart is enlarged", 700, 900, 700, 600),
        ("d3", "Lung Opacity", "Bilateral opacities", 300, 600, 400, 600),
        ("d3", "Lung Opacity", "Bilateral opacities", 1300, 600, 400, 600),
        ("d3", "Fibrosis", "Fibrotic changes", 100, 100, 50, 50),
    ]
    out = []
    for k, (dicom, category, text, x, y, w, h) in enumerate(rows):
        path = f"files/p10/p1000003{dicom[-1]}/s5000{dicom[-1]}/{dicom}.jpg"
        out.append(dict(zip(MS_CXR_HEADER, [dicom, category, text, path, x, y, w, h, 2048, 2048])))
        _save(root / path, (512, 512), k)
    _write_csv(root / "MS_CXR_Local_Alignment_v1.0.0.csv", MS_CXR_HEADER, out)
    return out


def make_openi(root: Path, reports: int = 20) -> list[str]:
    """A tarball of the first real report XMLs (manual MeSH codes, parentImage ids), the real
    ``nlmcxr_dicom_metadata.csv.gz`` (views), and PNGs for every image but one."""
    images: list[str] = []
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(txv_data_dir() / "NLMCXR_reports.tgz") as src, \
            tarfile.open(root / "NLMCXR_reports.tgz", "w:gz") as dst:
        members = sorted((m for m in src.getmembers() if m.name.endswith(".xml")),
                         key=lambda m: int(Path(m.name).stem))[:reports]
        for m in members:
            data = src.extractfile(m).read()
            info = tarfile.TarInfo(m.name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
            text = data.decode()
            images += [part.split('"')[0] for part in text.split('<parentImage id="')[1:]]
    (root / "nlmcxr_dicom_metadata.csv.gz").write_bytes((txv_data_dir() / "nlmcxr_dicom_metadata.csv.gz").read_bytes())
    for k, image in enumerate(images[1:]):
        _save(root / "NLMCXR_png" / f"{image}.png", (64, 64), k)
    return images


def make_nih_expert(root: Path, rows: int = 30) -> list[dict]:
    """The first real rows of ``google2019_nih-chest-xray-labels.csv`` and ChestX-ray14 PNGs for
    all but the last."""
    with gzip.open(txv_data_dir() / "google2019_nih-chest-xray-labels.csv.gz", "rt", newline="") as f:
        lines = f.read().splitlines(keepends=True)
    root.mkdir(parents=True, exist_ok=True)
    (root / "google2019_nih-chest-xray-labels.csv").write_text("".join(lines[:rows + 1]))
    chosen = list(csv.DictReader(io.StringIO("".join(lines[:rows + 1]))))
    for k, row in enumerate(chosen[:-1]):
        _save(root / "images" / row["Image Index"], (64, 64), k)
    return chosen
