"""RadGraph import on a small hand-written file in the MIMIC-CXR RadGraph release layout."""
from __future__ import annotations

import json

import pytest

from medklip.cli import main
from medklip.reports import ReportFilter
from medklip.reports.radgraph import (
    RadGraphFormatError,
    iter_radgraph_documents,
    radgraph_to_triplets,
)

DOC = {
    "text": "Small left lower lobe effusion . No pneumothorax . Possible right pneumonia . Heart is enlarged .",
    "data_split": "inference",
    "entities": {
        "1": {"tokens": "Small", "label": "OBS-DP", "start_ix": 0, "end_ix": 0, "relations": [["modify", "5"]]},
        "2": {"tokens": "left", "label": "ANAT-DP", "start_ix": 1, "end_ix": 1, "relations": [["modify", "4"]]},
        "3": {"tokens": "lower", "label": "ANAT-DP", "start_ix": 2, "end_ix": 2, "relations": [["modify", "4"]]},
        "4": {"tokens": "lobe", "label": "ANAT-DP", "start_ix": 3, "end_ix": 3, "relations": []},
        "5": {"tokens": "effusion", "label": "OBS-DP", "start_ix": 4, "end_ix": 4, "relations": [["located_at", "4"]]},
        "6": {"tokens": "pneumothorax", "label": "OBS-DA", "start_ix": 7, "end_ix": 7, "relations": []},
        "7": {"tokens": "right", "label": "ANAT-DP", "start_ix": 10, "end_ix": 10, "relations": []},
        "8": {"tokens": "pneumonia", "label": "OBS-U", "start_ix": 11, "end_ix": 11, "relations": [["located_at", "7"]]},
        "9": {"tokens": "Heart", "label": "ANAT-DP", "start_ix": 13, "end_ix": 13, "relations": []},
        "10": {"tokens": "enlarged", "label": "OBS-DP", "start_ix": 15, "end_ix": 15, "relations": [["located_at", "9"]]},
        "11": {"tokens": "sarcoid", "label": "OBS-DP", "start_ix": 0, "end_ix": 0, "relations": []},
    },
}


def test_radgraph_document_to_triplets() -> None:
    triplets = radgraph_to_triplets(DOC, ReportFilter())
    got = {(t.entity, t.position, t.exist) for t in triplets}
    assert ("effusion", "lower_left_lobe", 1) in got
    assert ("pneumothorax", "unspecified", 0) in got
    assert ("pneumonia", "right_lung_unspec", -1) in got
    assert {("enlarge", "heart_size", 1), ("cardiomegaly", "heart_size", 1)} <= got
    assert ("tail_abnorm_obs", "unspecified", 1) in got  # unknown finding -> tail
    [eff] = [t for t in triplets if t.entity == "effusion"]
    assert DOC["text"][eff.start:eff.end] == "effusion"


def test_release_layouts_and_cli(tmp_path, capsys) -> None:
    release = tmp_path / "MIMIC-CXR_graphs.json"
    release.write_text(json.dumps({"p10/p10000032/s50414267.txt": DOC}))
    test_split = tmp_path / "test.json"
    test_split.write_text(json.dumps({"a.txt": {"text": DOC["text"], "labeler_1": {"entities": DOC["entities"]}}}))
    assert [k for k, _ in iter_radgraph_documents(test_split)] == ["a.txt"]
    out = tmp_path / "out.jsonl"
    assert main(["extract", "--from-radgraph", str(release), "-o", str(out)]) == 0
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["id"] == "p10/p10000032/s50414267.txt"
    assert {"entity": "effusion", "position": "lower_left_lobe", "exist": 1} in [
        {k: t[k] for k in ("entity", "position", "exist")} for t in row["triplets"]]


def test_bad_radgraph_file(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"x": {"text": "no entities here"}}))
    with pytest.raises(RadGraphFormatError, match="no 'entities'"):
        list(iter_radgraph_documents(bad))
