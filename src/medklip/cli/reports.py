"""``medklip extract``: the report filter over many reports."""
from __future__ import annotations

import argparse
import json
import sys

from medklip.errors import MedKLIPError


def cmd_extract(args: argparse.Namespace) -> int:
    import contextlib

    from medklip.io_utils import errors_path
    from medklip.reports import ReportFilter
    from medklip.reports.batch import read_reports, run_extract

    if (args.input is None) == (args.from_radgraph is None):
        raise MedKLIPError("give INPUT (reports) or --from-radgraph FILE, not both and not neither")
    report_filter = ReportFilter(args.vocabulary)
    errors_file = errors_path(args.output)
    with contextlib.ExitStack() as stack:
        out = sys.stdout if args.output == "-" else stack.enter_context(open(args.output, "w", encoding="utf-8"))
        errors = sys.stderr if errors_file == "-" else stack.enter_context(open(errors_file, "w", encoding="utf-8"))
        if args.from_radgraph:
            from medklip.reports.radgraph import (
                iter_radgraph_documents,
                radgraph_to_triplets,
            )

            n = 0
            for doc_id, doc in iter_radgraph_documents(args.from_radgraph):
                triplets = radgraph_to_triplets(doc, report_filter)
                out.write(json.dumps({"id": doc_id, "triplets": [t.to_dict() for t in triplets]}) + "\n")
                n += 1
            print(f"converted {n} RadGraph documents -> {args.output}", file=sys.stderr)
            return 0 if n else 1
        summary = run_extract(
            read_reports(args.input, args.id_col, args.text_col, args.max_chars), out, errors, report_filter,
            workers=args.workers, max_chars=args.max_chars,
            progress=not args.quiet, output_format=args.format,
        )
    print(summary.line(args.output, errors_file), file=sys.stderr)
    if summary.errors and errors_file != "-":
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(summary.error_reasons.items()))
        print(f"failed rows by reason: {reasons}", file=sys.stderr)
    return 0 if summary.reports else 1


def add_extract(sub: argparse._SubParsersAction) -> None:
    from medklip.reports.batch import DEFAULT_MAX_CHARS

    p = sub.add_parser(
        "extract", help="radiology reports -> {entity, position, exist} triplets (the report filter)",
        description="Extract MedKLIP triplets from reports (FINDINGS + IMPRESSION). INPUT: a JSONL file "
                    "({\"id\", \"text\"} per line), a CSV (--id-col/--text-col), a folder of .txt reports "
                    "(MIMIC-CXR layout; id = study id), or - for stdin. Rows that cannot be used go to "
                    "OUT.errors.jsonl; the exit status is non-zero only when no report could be processed.")
    p.add_argument("input", nargs="?", help="reports: JSONL, CSV, folder of .txt, or -")
    p.add_argument("-o", "--output", required=True, help="output file (- for stdout)")
    p.add_argument("--format", choices=["jsonl", "chexpert"], default="jsonl",
                   help="jsonl: one {id, triplets} object per report (default); chexpert: the CheXpert labeler's "
                        "CSV (Reports, its 14 observations as 1.0 / 0.0 / -1.0 / blank, then id)")
    p.add_argument("--from-radgraph", metavar="FILE", help="convert RadGraph output instead of reading reports")
    p.add_argument("--id-col", default="id", help="id column / key (default: id)")
    p.add_argument("--text-col", default="text", help="text column / key (default: text)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    p.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS,
                   help=f"refuse longer reports (default: {DEFAULT_MAX_CHARS:,})")
    p.add_argument("--vocabulary", metavar="YAML", help="a report-filter vocabulary file (default: packaged)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_extract)
