"""`medklip extract` keeps its promise under any bytes: every non-blank input row lands in exactly
one of the two output files (hypothesis generates the rows), nothing crashes, and the rules for
ids, Unicode, nesting, line ends and duplicates hold."""
from __future__ import annotations

import io
import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medklip.cli import main
from medklip.reports import ReportFilter
from medklip.reports.batch import read_jsonl, run_extract

RF = ReportFilter()
REPORT = "FINDINGS: Small left pleural effusion. No pneumothorax."
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                           max_leaves=8)


def _row_bytes() -> st.SearchStrategy[bytes]:
    good = st.builds(lambda i, t: json.dumps({"id": i, "text": t}).encode(),
                     st.one_of(st.text(min_size=1), st.integers()), st.sampled_from([REPORT, "No effusion.", ""]))
    weird = st.builds(lambda i, t: json.dumps({"id": i, "text": t}, allow_nan=True).encode(), json_values, json_values)
    surrogate = st.builds(lambda s: b'{"id": "x\\ud800' + json.dumps(s)[1:-1].encode() + b'", "text": "ok"}',
                          st.text(max_size=3))
    deep = st.integers(50, 200_000).map(lambda n: b"[" * n + b"]" * (n % 3))
    raw = st.binary(max_size=60)
    dup = st.just(json.dumps({"id": "same", "text": REPORT}).encode())
    return st.one_of(good, weird, surrogate, deep, raw, dup)


def _split(data: bytes) -> list[bytes]:
    """An independent line splitter: \\r\\n, \\r and \\n end lines."""
    lines = re.split(rb"\r\n|\r|\n", data)
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.tuples(_row_bytes(), st.sampled_from([b"\n", b"\r\n", b"\r"])), min_size=1, max_size=40))
def test_every_row_lands_in_exactly_one_file(rows: list[tuple[bytes, bytes]]) -> None:
    data = b"".join(r + end for r, end in rows)
    out, errors = io.StringIO(), io.StringIO()
    summary = run_extract(read_jsonl(io.BytesIO(data), "in.jsonl"), out, errors, RF)
    written = out.getvalue().splitlines()
    failed = errors.getvalue().splitlines()
    expected = sum(1 for line in _split(data) if line.strip())
    assert len(written) + len(failed) == expected
    assert summary.reports == len(written) and summary.errors == len(failed)
    ids = [json.loads(line)["id"] for line in written]
    assert len(ids) == len(set(ids))  # a repeated id keeps only its first row
    for line in written + failed:
        json.loads(line)
        line.encode("utf-8")  # both files are valid UTF-8


def test_the_rules_for_hostile_rows(tmp_path, capsys) -> None:
    src = tmp_path / "hostile.jsonl"
    lines = [json.dumps({"id": "a", "text": REPORT}).encode(),
             b"[" * 100_000,
             b'{"id": "x\\ud800", "text": "lone surrogate"}',
             json.dumps({"id": True, "text": REPORT}).encode(),
             json.dumps({"id": [1], "text": REPORT}).encode(),
             json.dumps({"id": {"k": 1}, "text": REPORT}).encode(),
             b'{"id": NaN, "text": "x"}',
             json.dumps({"id": 5, "text": REPORT}).encode(),
             json.dumps({"id": "a", "text": REPORT}).encode(),
             json.dumps({"id": "b", "text": "FINDINGS: ok\x00\x07 with control characters."}).encode()]
    src.write_bytes(b"\r".join(lines) + b"\r")  # old-Mac line ends: ten rows, not one
    out = tmp_path / "out.jsonl"
    assert main(["extract", str(src), "-o", str(out), "-q"]) == 0
    good = [json.loads(line) for line in out.read_text().splitlines()]
    bad = {json.loads(line)["where"].rsplit(":", 1)[1]: json.loads(line)["error"]
           for line in (tmp_path / "out.errors.jsonl").read_text().splitlines()}
    assert [r["id"] for r in good] == ["a", "5", "b"]
    assert "nested too deeply" in bad["2"] and "lone surrogate" in bad["3"]
    assert all("must be a string or an integer" in bad[k] for k in ("4", "5", "6", "7"))
    assert "duplicate id (first at" in bad["9"] and ":1)" in bad["9"]
    assert len(good) + len(bad) == 10
    assert "extracted 3 reports" in capsys.readouterr().err
