"""`medklip extract` end to end: input layouts, per-row errors, workers, exit status."""
from __future__ import annotations

import json
import subprocess
import sys

from medklip.cli import main

REPORT = "FINDINGS: Small left pleural effusion. IMPRESSION: No pneumothorax."


def rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_with_bad_rows(tmp_path, capsys) -> None:
    src = tmp_path / "reports.jsonl"
    big = "No effusion. " * 80_000  # ~1 MB
    with src.open("wb") as f:
        f.write((json.dumps({"id": "ok1", "text": REPORT}) + "\n").encode())
        f.write((json.dumps({"id": "empty", "text": "   "}) + "\n").encode())
        f.write(b'{"id": "latin1", "text": "caf\xe9 effusion"}\n')
        f.write((json.dumps({"id": "huge", "text": big}) + "\n").encode())
        f.write((json.dumps({"text": REPORT}) + "\n").encode())
        f.write(b"{not json\n")
        f.write(b"\n")
        f.write((json.dumps({"id": 7, "text": REPORT}) + "\n").encode())
    out = tmp_path / "out.jsonl"
    assert main(["extract", str(src), "-o", str(out), "-q"]) == 0
    good, bad = rows(out), rows(tmp_path / "out.errors.jsonl")
    assert [r["id"] for r in good] == ["ok1", "7"]
    reasons = {r["where"].rsplit(":", 1)[1]: r["error"] for r in bad}
    assert set(reasons) == {"2", "3", "4", "5", "6"}  # every non-blank row is in exactly one file
    assert "empty" in reasons["2"] and "UTF-8" in reasons["3"] and "limit" in reasons["4"]
    assert "missing 'id'" in reasons["5"] and "malformed JSON" in reasons["6"]
    summary = capsys.readouterr().err
    assert "extracted 2 reports" in summary and "5 rows failed" in summary
    trip = good[0]["triplets"]
    assert {"entity": "effusion", "position": "left_pleural", "exist": 1} in [
        {k: t[k] for k in ("entity", "position", "exist")} for t in trip]


def test_nothing_processed_is_an_error(tmp_path) -> None:
    src = tmp_path / "r.jsonl"
    src.write_text('{"id": "a", "text": ""}\n')
    assert main(["extract", str(src), "-o", str(tmp_path / "o.jsonl"), "-q"]) == 1
    assert main(["extract", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "o.jsonl")]) == 2


def test_csv_columns(tmp_path) -> None:
    src = tmp_path / "r.csv"
    src.write_text('study,report\n1,"FINDINGS: Cardiomegaly.\nIMPRESSION: No effusion."\n2,\n')
    out = tmp_path / "o.jsonl"
    assert main(["extract", str(src), "-o", str(out), "--id-col", "study", "--text-col", "report", "-q"]) == 0
    assert [r["id"] for r in rows(out)] == ["1"]
    assert rows(tmp_path / "o.errors.jsonl")[0]["where"].endswith(":3")
    assert main(["extract", str(src), "-o", str(out), "-q"]) == 2  # wrong default columns: clear error


def test_mimic_folder_layout(tmp_path) -> None:
    study = tmp_path / "files" / "p10" / "p10000032" / "s50414267.txt"
    study.parent.mkdir(parents=True)
    study.write_text(REPORT)
    (study.parent / "s53189527.txt").write_bytes(b"\xff\xfe bad")
    out = tmp_path / "o.jsonl"
    assert main(["extract", str(tmp_path / "files"), "-o", str(out), "-q"]) == 0
    assert [r["id"] for r in rows(out)] == ["50414267"]
    assert rows(tmp_path / "o.errors.jsonl")[0]["id"] == "53189527"


def test_stdin_text_and_stdout() -> None:
    cmd = [sys.executable, "-m", "medklip", "extract", "-", "-o", "-"]
    res = subprocess.run(cmd, input=REPORT, capture_output=True, text=True, check=True)
    [row] = [json.loads(line) for line in res.stdout.splitlines()]
    assert row["id"] == "stdin" and row["triplets"]
    assert "extracted 1 reports" in res.stderr


def test_two_workers_give_the_one_worker_output_row_by_row(tmp_path) -> None:
    src = tmp_path / "r.jsonl"
    texts = ["Small left effusion.", "No pneumothorax.", "Heart is enlarged.", "Possible pneumonia.",
             "Right lower lobe consolidation and a left PICC line."] * 40
    src.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))
    outputs = {}
    for workers in (1, 2):
        out = tmp_path / f"o{workers}.jsonl"
        assert main(["extract", str(src), "-o", str(out), "--workers", str(workers), "-q"]) == 0
        outputs[workers] = rows(out)
    one, two = outputs[1], outputs[2]
    assert [r["id"] for r in one] == [str(i) for i in range(len(texts))]
    assert one[2]["triplets"][0]["entity"] == "enlarge"
    assert len(one) == len(two) and all(a == b for a, b in zip(one, two))  # every field of every row
