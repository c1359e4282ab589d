"""`medklip prepare mimic-cxr` on a small hand-made copy of the MIMIC-CXR-JPG layout."""
from __future__ import annotations

import gzip
import json

import numpy as np
from PIL import Image

from medklip.cli import main


def make_layout(root):
    images, reports = root / "jpg", root / "reports"
    meta = ["dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns"]
    split = ["dicom_id,study_id,subject_id,split"]
    studies = {
        ("10000032", "50414267"): [("d1", "PA", "train"), ("d2", "LATERAL", "train")],
        ("10000032", "53189527"): [("d3", "AP", "validate")],
        ("10000898", "50771383"): [("d4", "PA", "test"), ("d5", "AP", "test")],
        ("10000935", "51178377"): [("d6", "PA", "train")],  # report missing
        ("10000935", "55697293"): [("d7", "PA", "train")],  # image missing
    }
    for (subject, study), dicoms in studies.items():
        folder = images / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
        folder.mkdir(parents=True, exist_ok=True)
        for dicom, view, sp in dicoms:
            meta.append(f"{dicom},{subject},{study},CHEST (PA AND LAT),{view},64,64")
            split.append(f"{dicom},{study},{subject},{sp}")
            if dicom != "d7":
                Image.fromarray(np.full((64, 64), 100, np.uint8)).save(folder / f"{dicom}.jpg")
        if study != "51178377":
            rep = reports / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"
            rep.parent.mkdir(parents=True, exist_ok=True)
            rep.write_text("FINAL REPORT\n INDICATION: eval for pneumonia\n\n FINDINGS: Small left pleural effusion.\n"
                           "\n IMPRESSION: No pneumothorax.\n")
    with gzip.open(images / "mimic-cxr-2.0.0-metadata.csv.gz", "wt") as f:
        f.write("\n".join(meta) + "\n")
    (images / "mimic-cxr-2.0.0-split.csv").write_text("\n".join(split) + "\n")
    return images, reports


def test_prepare_mimic_cxr(tmp_path) -> None:
    images, reports = make_layout(tmp_path)
    out = tmp_path / "mimic.jsonl"
    assert main(["prepare", "mimic-cxr", "--images", str(images), "--reports", str(reports), "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((r["study_id"], r["split"]) for r in rows) == [
        ("50414267", "train"), ("50771383", "test"), ("50771383", "test"), ("53189527", "validation")]
    assert all(r["image"].endswith(".jpg") for r in rows)  # frontal views only: d2 (LATERAL) left out
    trip = {(t["entity"], t["position"], t["exist"]) for t in rows[0]["triplets"]}
    assert ("effusion", "left_pleural", 1) in trip and ("pneumothorax", "unspecified", 0) in trip
    assert not any(t[0] == "pneumonia" for t in trip)  # the indication is not a finding
    errors = [json.loads(line) for line in (tmp_path / "mimic.errors.jsonl").read_text().splitlines()]
    assert len(errors) == 2
    assert any("report unreadable" in e["error"] for e in errors)
    assert any("image not found" in e["error"] for e in errors)


def test_missing_metadata_is_explained(tmp_path, capsys) -> None:
    (tmp_path / "jpg").mkdir()
    assert main(["prepare", "mimic-cxr", "--images", str(tmp_path / "jpg"), "--reports", str(tmp_path),
                 "-o", str(tmp_path / "m.jsonl")]) == 2
    assert "mimic-cxr-2.0.0-metadata.csv" in capsys.readouterr().err
