"""Batch extraction: read reports (JSONL, CSV, a MIMIC-CXR folder of .txt, stdin), run the
filter (optionally in worker processes), write ``OUT.jsonl`` and ``OUT.errors.jsonl``.

Every input row (a non-blank line of a JSONL file, a CSV row, a ``.txt`` file) ends in exactly one
of the two files, whatever bytes it holds; a bad row never stops the run. Rules:

- lines end at ``\n``, ``\r\n`` or a lone ``\r``; a line over 8 x ``max_chars`` bytes is an error row,
  never held in memory;
- ``id`` must be a JSON string or integer (not a bool, float, list, object or null) and ``text`` a
  string; neither may hold a lone surrogate (invalid Unicode);
- JSON nested too deeply to parse is an error row, not a crash;
- a repeated id keeps its **first** row; the later ones are error rows naming the first line.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import multiprocessing as mp
import re
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from medklip.errors import MedKLIPError
from medklip.progress import Progress
from medklip.reports.chexpert import ChexpertWriter
from medklip.reports.filter import ReportFilter

logger = logging.getLogger(__name__)

FORMATS = ("jsonl", "chexpert")
DEFAULT_MAX_CHARS = 100_000
"""Reports longer than this are refused (real radiology reports are a few KB)."""
_SURROGATE = re.compile("[\ud800-\udfff]")
_LINE_END = re.compile(rb"\r\n|\r|\n")
_STUDY = re.compile(r"^s(\d+)$")


@dataclass
class ReportRecord:
    """One input row: an id and text, or the reason it cannot be used."""

    id: str | None
    text: str | None
    where: str  # "file:line" or the file path, for error messages
    error: str | None = None


@dataclass
class ExtractSummary:
    reports: int = 0
    triplets: int = 0
    errors: int = 0
    seconds: float = 0.0
    error_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.reports / self.seconds if self.seconds > 0 else 0.0

    def line(self, out: str, errors: str) -> str:
        text = (f"extracted {self.reports} reports ({self.triplets} triplets) in {self.seconds:.1f} s "
                f"({self.rate:.0f} reports/s) -> {out}")
        if self.errors:
            text += f"; {self.errors} rows failed -> {errors}"
        return text


def _decode(raw: bytes, where: str) -> tuple[str | None, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, (f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                      "re-save the report as UTF-8")


_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_line(row: dict) -> str:
    """One JSON object on one line: UTF-8 kept readable, but the characters that some readers treat
    as line breaks (NEL, LINE / PARAGRAPH SEPARATOR) escaped, so a line is always one row."""
    return json.dumps(row, ensure_ascii=False).translate(_LINE_BREAKS) + "\n"


def iter_lines(stream: IO[bytes], max_bytes: int = 8 * DEFAULT_MAX_CHARS, chunk: int = 1 << 20) -> Iterator[bytes | None]:
    """Lines of a byte stream split at ``\n``, ``\r\n`` or a lone ``\r``, read in chunks (memory
    flat); a line longer than ``max_bytes`` is yielded as None, once, and not kept."""
    pending, drop_lf, too_long = b"", False, False
    while data := stream.read(chunk):
        if drop_lf and data.startswith(b"\n"):  # the \n of a \r\n split between two chunks
            data = data[1:]
        drop_lf = data.endswith(b"\r")
        parts = _LINE_END.split(pending + data)
        pending = parts.pop()
        for line in parts:
            yield None if too_long or len(line) > max_bytes else line
            too_long = False
        if len(pending) > max_bytes:
            too_long, pending = True, b""
    if pending or too_long:
        yield None if too_long else pending


def _valid_id(value: object) -> str | None:
    """The id as text when it is a JSON string or integer, else None."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value)
    return text if text.strip() else None


def read_jsonl(stream: IO[bytes], name: str, id_key: str = "id", text_key: str = "text",
               max_chars: int = DEFAULT_MAX_CHARS) -> Iterator[ReportRecord]:
    max_bytes = 8 * max_chars  # JSON escapes and UTF-8 make a line at most a few times its text
    for n, raw in enumerate(iter_lines(stream, max_bytes), start=1):
        where = f"{name}:{n}"
        if raw is None:
            yield ReportRecord(None, None, where, f"line of over {max_bytes:,} bytes, over the limit for reports of "
                                                  f"{max_chars:,} characters (raise it with --max-chars if this is "
                                                  "really one report)")
            continue
        if not raw.strip():
            continue
        line, err = _decode(raw, where)
        if err or line is None:
            yield ReportRecord(None, None, where, err or "unreadable line")
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield ReportRecord(None, None, where, f"malformed JSON ({exc.msg} at column {exc.colno})")
            continue
        except RecursionError:
            yield ReportRecord(None, None, where, "JSON nested too deeply to read")
            continue
        if not isinstance(obj, dict):
            yield ReportRecord(None, None, where, "a line must be a JSON object with 'id' and 'text'")
            continue
        raw_id, text = obj.get(id_key), obj.get(text_key)
        rid = _valid_id(raw_id)
        if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
            yield ReportRecord(None, None, where, f"missing '{id_key}'")
        elif rid is None:
            yield ReportRecord(None, None, where, f"'{id_key}' must be a string or an integer, "
                                                  f"got {type(raw_id).__name__}")
        elif not isinstance(text, str):
            yield ReportRecord(rid, None, where, f"missing '{text_key}' (or it is not a string)")
        elif _SURROGATE.search(rid) or _SURROGATE.search(text):
            yield ReportRecord(None, None, where, "invalid Unicode (a lone surrogate) in the id or the text")
        else:
            yield ReportRecord(rid, text, where)


def read_csv(path: Path, id_col: str, text_col: str) -> Iterator[ReportRecord]:
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or id_col not in reader.fieldnames or text_col not in reader.fieldnames:
        raise MedKLIPError(f"{path}: needs columns {id_col!r} and {text_col!r} (has {reader.fieldnames}); "
                           "choose them with --id-col / --text-col")
    for n, row in enumerate(reader, start=2):
        where = f"{path}:{n}"
        rid, body = row.get(id_col), row.get(text_col)
        if any(isinstance(v, str) and re.search("[\udc80-\udcff]", v) for v in (rid, body)):
            yield ReportRecord(rid, None, where, "not UTF-8 text; re-save the file as UTF-8")
        elif rid is None or not rid.strip():
            yield ReportRecord(None, body, where, f"missing {id_col!r}")
        else:
            yield ReportRecord(rid, body or "", where)


def read_folder(root: Path) -> Iterator[ReportRecord]:
    """``*.txt`` below ``root`` (MIMIC-CXR ``files/pNN/pNNNNNNNN/sNNNNNNNN.txt``: id = study id)."""
    for path in sorted(root.rglob("*.txt")):
        m = _STUDY.match(path.stem)
        text, err = _decode(path.read_bytes(), str(path))
        yield ReportRecord(m.group(1) if m else path.stem, text, str(path), err)


def read_reports(source: str, id_col: str = "id", text_col: str = "text",
                 max_chars: int = DEFAULT_MAX_CHARS) -> Iterator[ReportRecord]:
    """Records from a JSONL file, a CSV file, a folder of ``.txt`` reports, or ``-`` (stdin:
    JSONL, or one plain-text report with id ``stdin``)."""
    if source == "-":
        data = sys.stdin.buffer.read()
        if data.lstrip().startswith(b"{"):
            yield from read_jsonl(io.BytesIO(data), "<stdin>", id_col, text_col, max_chars)
        else:
            text, err = _decode(data, "<stdin>")
            yield ReportRecord("stdin", text, "<stdin>", err)
        return
    path = Path(source)
    if path.is_dir():
        yield from read_folder(path)
    elif not path.is_file():
        raise MedKLIPError(f"{source}: no such file or folder")
    elif path.suffix.lower() in {".csv", ".tsv"}:
        yield from read_csv(path, id_col, text_col)
    else:
        with path.open("rb") as f:
            yield from read_jsonl(f, str(path), id_col, text_col, max_chars)


# ----------------------------------------------------------------------------- running
_WORKER_FILTER: ReportFilter | None = None


def _init_worker(report_filter: ReportFilter) -> None:
    global _WORKER_FILTER  # per worker process: its own filter (and sentence cache)
    _WORKER_FILTER = report_filter


def _process(record: ReportRecord, report_filter: ReportFilter, max_chars: int) -> tuple[bool, dict]:
    if record.error is None:
        if not record.text or not record.text.strip():
            record.error = "empty report text"
        elif len(record.text) > max_chars:
            record.error = (f"report is {len(record.text):,} characters, over the limit of {max_chars:,} "
                            "(raise it with --max-chars if this is really one report)")
    if record.error is not None or record.text is None:
        return False, {"id": record.id, "where": record.where, "error": record.error}
    try:
        triplets = report_filter.extract(record.text)
    except Exception as exc:  # a filter bug must not stop a 200k-report run
        logger.exception("filter failed on %s", record.where)
        return False, {"id": record.id, "where": record.where, "error": f"internal error: {exc!r}"}
    return True, {"id": record.id, "where": record.where, "text": record.text,
                  "triplets": [t.to_dict() for t in triplets]}


def _process_in_worker(args: tuple[ReportRecord, int]) -> tuple[bool, dict]:
    assert _WORKER_FILTER is not None
    return _process(args[0], _WORKER_FILTER, args[1])


def run_extract(
    records: Iterable[ReportRecord],
    out: IO[str],
    errors: IO[str],
    report_filter: ReportFilter | None = None,
    workers: int = 1,
    max_chars: int = DEFAULT_MAX_CHARS,
    progress: bool = False,
    output_format: str = "jsonl",
) -> ExtractSummary:
    """Filter every record; results to ``out`` (one JSON line each, or the CheXpert labeler's CSV
    with ``output_format="chexpert"``), failures to ``errors`` (one JSON line each)."""
    if output_format not in FORMATS:
        raise MedKLIPError(f"unknown output format {output_format!r}; use one of {', '.join(FORMATS)}")
    chexpert = ChexpertWriter(out) if output_format == "chexpert" else None
    report_filter = report_filter or ReportFilter()
    summary = ExtractSummary()
    start = time.perf_counter()
    if workers > 1:
        pool = mp.get_context("spawn" if sys.platform == "darwin" else "fork").Pool(
            workers, initializer=_init_worker, initargs=(report_filter,))
        results: Iterable[tuple[bool, dict]] = pool.imap(
            _process_in_worker, ((r, max_chars) for r in records), chunksize=64)
    else:
        pool = None
        results = (_process(r, report_filter, max_chars) for r in records)
    first_line: dict[str, str] = {}
    bar = Progress(0, "extract", unit="reports", enabled=progress)
    try:
        for ok, row in results:
            bar.update(1)
            if ok and row["id"] in first_line:
                ok, row = False, {"id": row["id"], "where": row["where"],
                                  "error": f"duplicate id (first at {first_line[row['id']]}); the first row is kept"}
            elif ok:
                first_line[row["id"]] = row.pop("where")
            if ok:
                summary.reports += 1
                summary.triplets += len(row["triplets"])
                text = row.pop("text")
                if chexpert is not None:
                    chexpert.write(row["id"], text, row["triplets"])
                else:
                    out.write(json_line(row))
            else:
                summary.errors += 1
                reason = row["error"].split(" (")[0].split(";")[0]
                summary.error_reasons[reason] = summary.error_reasons.get(reason, 0) + 1
                errors.write(json.dumps(row, ensure_ascii=True) + "\n")  # safe for any id
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    summary.seconds = time.perf_counter() - start
    return summary
