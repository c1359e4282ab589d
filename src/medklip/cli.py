"""``medklip`` command line: parses arguments and dispatches to the library.

Each subcommand registers itself with a ``_add_<name>`` function; errors that medklip raises
on purpose (:class:`~medklip.errors.MedKLIPError`) are printed without a traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Callable, Sequence

from medklip import __version__
from medklip.errors import MedKLIPError

logger = logging.getLogger("medklip")

Handler = Callable[[argparse.Namespace], int]


def _knowledge_from_args(args: argparse.Namespace):
    from medklip.knowledge import KnowledgeBase, parse_describe_args

    kb = KnowledgeBase.load(args.knowledge)
    if args.describe:
        kb = kb.extend(parse_describe_args(args.describe))
    return kb


def _add_knowledge_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--knowledge", metavar="FILE",
                   help="descriptions to add or override (JSON/YAML mapping, CSV name,description, "
                        "or NAME=DESCRIPTION lines), or a whole knowledge-base file")
    p.add_argument("--describe", action="append", metavar="NAME=DESCRIPTION", default=[],
                   help="add or override one entity description (repeatable)")


# ----------------------------------------------------------------------------- knowledge
def _cmd_knowledge(args: argparse.Namespace) -> int:
    kb = _knowledge_from_args(args)
    if args.name:
        entity = kb.entity(args.name)
        print(json.dumps({"name": entity.name, "description": entity.description,
                          "pretraining": entity.pretraining}, indent=1) if args.json
              else f"{entity.name}: {entity.description}")
        return 0
    if args.positions:
        rows = [{"index": i, "name": p, "prompt": t}
                for i, (p, t) in enumerate(zip(kb.positions, kb.position_texts()))]
    else:
        rows = [{"index": i, "name": e.name, "pretraining": e.pretraining, "description": e.description}
                for i, e in enumerate(kb.entities)]
    if args.json:
        print(json.dumps(rows, indent=1, ensure_ascii=False))
    else:
        for r in rows:
            tag = "" if args.positions or r["pretraining"] else "  [inference only]"
            text = r.get("prompt") or r["description"]
            print(f"{r['index']:3d}  {r['name']:<20} {text[:90]}{tag}")
    return 0


def _add_knowledge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("knowledge", help="list the knowledge base (entities and their descriptions, positions)",
                       description="List entities (query order) or positions; show one entity's description.")
    p.add_argument("name", nargs="?", help="show this entity only")
    p.add_argument("--positions", action="store_true", help="list the positions and their prompts")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_knowledge_options(p)
    p.set_defaults(handler=_cmd_knowledge)


# ------------------------------------------------------------------------ convert-official
def _cmd_convert_official(args: argparse.Namespace) -> int:
    from medklip.models import MedKLIP
    from medklip.text import TextEncoder

    kb = _knowledge_from_args(args)
    encoder = TextEncoder(args.text_encoder, pooling="cls", cache_dir=args.cache_dir)
    model = MedKLIP.from_official_checkpoint(args.checkpoint, text_encoder=encoder, knowledge=kb)
    model.text_encoder_info = encoder.info()
    out = model.save_pretrained(args.output)
    print(f"saved {out} ({model.config.backbone}, {len(model.entity_names)} queries, "
          f"{len(model.position_names)} positions)")
    return 0


def _add_convert_official(sub: argparse._SubParsersAction) -> None:
    from medklip.text import PAPER_TEXT_ENCODER

    p = sub.add_parser("convert-official", help="turn the official release's .pth into a medklip model folder",
                       description="Load the official MedKLIP checkpoint (e.g. checkpoint_final.pth), embed the "
                                   "knowledge base with its text encoder and write a save_pretrained folder.")
    p.add_argument("checkpoint", help="official .pth file ({'model': state_dict})")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--text-encoder", default=PAPER_TEXT_ENCODER,
                   help=f"hub name or local folder of the encoder (default: {PAPER_TEXT_ENCODER})")
    p.add_argument("--cache-dir", help="text-embedding cache folder (default: user cache dir)")
    _add_knowledge_options(p)
    p.set_defaults(handler=_cmd_convert_official)


# ---------------------------------------------------------------------------------- extract
def _cmd_extract(args: argparse.Namespace) -> int:
    import contextlib

    from medklip.reports import ReportFilter
    from medklip.reports.batch import errors_path_for, read_reports, run_extract

    if (args.input is None) == (args.from_radgraph is None):
        raise MedKLIPError("give INPUT (reports) or --from-radgraph FILE, not both and not neither")
    report_filter = ReportFilter(args.vocabulary)
    errors_path = errors_path_for(args.output)
    with contextlib.ExitStack() as stack:
        out = sys.stdout if args.output == "-" else stack.enter_context(open(args.output, "w", encoding="utf-8"))
        errors = sys.stderr if errors_path == "-" else stack.enter_context(open(errors_path, "w", encoding="utf-8"))
        if args.from_radgraph:
            from medklip.reports.radgraph import iter_radgraph_documents, radgraph_to_triplets

            n = 0
            for doc_id, doc in iter_radgraph_documents(args.from_radgraph):
                triplets = radgraph_to_triplets(doc, report_filter)
                out.write(json.dumps({"id": doc_id, "triplets": [t.to_dict() for t in triplets]}) + "\n")
                n += 1
            print(f"converted {n} RadGraph documents -> {args.output}", file=sys.stderr)
            return 0 if n else 1
        summary = run_extract(
            read_reports(args.input, args.id_col, args.text_col), out, errors, report_filter,
            workers=args.workers, max_chars=args.max_chars,
            progress=not args.quiet and sys.stderr.isatty(),
        )
    print(summary.line(args.output, errors_path), file=sys.stderr)
    if summary.errors and errors_path != "-":
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(summary.error_reasons.items()))
        print(f"failed rows by reason: {reasons}", file=sys.stderr)
    return 0 if summary.reports else 1


def _add_extract(sub: argparse._SubParsersAction) -> None:
    from medklip.reports.batch import DEFAULT_MAX_CHARS

    p = sub.add_parser(
        "extract", help="radiology reports -> {entity, position, exist} triplets (the report filter)",
        description="Extract MedKLIP triplets from reports (FINDINGS + IMPRESSION). INPUT: a JSONL file "
                    "({\"id\", \"text\"} per line), a CSV (--id-col/--text-col), a folder of .txt reports "
                    "(MIMIC-CXR layout; id = study id), or - for stdin. Rows that cannot be used go to "
                    "OUT.errors.jsonl; the exit status is non-zero only when no report could be processed.")
    p.add_argument("input", nargs="?", help="reports: JSONL, CSV, folder of .txt, or -")
    p.add_argument("-o", "--output", required=True, help="output JSONL (- for stdout)")
    p.add_argument("--from-radgraph", metavar="FILE", help="convert RadGraph output instead of reading reports")
    p.add_argument("--id-col", default="id", help="id column / key (default: id)")
    p.add_argument("--text-col", default="text", help="text column / key (default: text)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    p.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS,
                   help=f"refuse longer reports (default: {DEFAULT_MAX_CHARS:,})")
    p.add_argument("--vocabulary", metavar="YAML", help="a report-filter vocabulary file (default: packaged)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_extract)


# ---------------------------------------------------------------------------------- main
SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_extract,
    _add_knowledge,
    _add_convert_official,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medklip",
        description="MedKLIP: knowledge-enhanced language-image pre-training for chest X-rays.",
    )
    parser.add_argument("--version", action="version", version=f"medklip {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    try:
        return int(args.handler(args) or 0)
    except MedKLIPError as exc:
        print(f"medklip {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
