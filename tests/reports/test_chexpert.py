"""`medklip extract --format chexpert`: the CheXpert labeler's CSV (column order, 1 / 0 / -1 / blank,
its aggregation and No Finding rules) from MedKLIP triplets."""
from __future__ import annotations

import csv
import io
import json

import pytest

from medklip.cli import main
from medklip.reports import ReportFilter
from medklip.reports.chexpert import aggregate, chexpert_labels, chexpert_map

COLUMNS = ["No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Lung Opacity", "Edema",
           "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
           "Fracture", "Support Devices"]


def labels(text: str) -> dict:
    return chexpert_labels(ReportFilter().extract(text))


def test_columns_are_the_labelers() -> None:
    assert list(chexpert_map().columns) == COLUMNS


def test_aggregation_follows_the_labeler() -> None:
    assert aggregate([0, -1]) == -1 and aggregate([0, 1]) == 1 and aggregate([-1, 1]) == 1 and aggregate([0]) == 0


@pytest.mark.parametrize("text,expected", [
    ("FINDINGS: Small left pleural effusion. No pneumothorax. Heart size is normal.",
     {"Pleural Effusion": 1, "Pneumothorax": 0, "Cardiomegaly": 0, "No Finding": None, "Edema": None}),
    ("IMPRESSION: No acute cardiopulmonary process.", {"No Finding": 1, "Pneumonia": None}),
    ("IMPRESSION: Right PICC line with the tip in the SVC. Lungs are clear.",
     {"Support Devices": 1, "No Finding": 1}),  # devices do not make a finding
    ("IMPRESSION: Possible right lower lobe pneumonia versus atelectasis.",
     {"Pneumonia": -1, "Atelectasis": -1, "No Finding": None}),
    ("IMPRESSION: Congestive heart failure with mild pulmonary edema.",
     {"Edema": 1, "Cardiomegaly": -1}),  # the labeler's CHF rule
    ("FINDINGS: 1 cm nodule in the right upper lobe. Healed left rib fracture. Left pleural thickening.",
     {"Lung Lesion": 1, "Fracture": 1, "Pleural Other": 1}),
    ("FINDINGS: No pleural effusion. Small left pleural effusion.", {"Pleural Effusion": 1}),  # 0 and 1 -> 1
])
def test_reports_become_the_labelers_values(text: str, expected: dict) -> None:
    got = labels(text)
    for column, value in expected.items():
        assert got[column] == value, (column, got)


def test_cli_writes_the_labelers_csv(tmp_path) -> None:
    src = tmp_path / "r.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "a", "text": "FINDINGS: Small left pleural effusion. No pneumothorax."},
        {"id": "b", "text": "IMPRESSION: No acute disease."},
        {"id": "c", "text": ""}]))
    out = tmp_path / "labels.csv"
    assert main(["extract", str(src), "-o", str(out), "--format", "chexpert", "-q"]) == 0
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == ["Reports", *COLUMNS, "id"]
    assert [r[-1] for r in rows[1:]] == ["a", "b"]  # the empty report is in the errors file
    a = dict(zip(rows[0], rows[1]))
    assert a["Pleural Effusion"] == "1.0" and a["Pneumothorax"] == "0.0" and a["Edema"] == "" and a["No Finding"] == ""
    assert dict(zip(rows[0], rows[2]))["No Finding"] == "1.0"
    assert "empty report" in (tmp_path / "labels.errors.jsonl").read_text()
