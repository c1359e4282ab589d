"""``medklip`` command line: parses arguments and dispatches to the library.

Each subcommand registers itself with an ``add_<name>`` function in a module of this package;
errors that medklip raises on purpose (:class:`~medklip.errors.MedKLIPError`) are printed
without a traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from medklip import __version__
from medklip.cli.calibrate import add_calibrate
from medklip.cli.compare import add_compare
from medklip.cli.evaluate import add_evaluate
from medklip.cli.export import add_export
from medklip.cli.finetune import add_finetune
from medklip.cli.knowledge import add_convert_official, add_knowledge
from medklip.cli.predict import add_predict
from medklip.cli.reports import add_extract
from medklip.cli.serve import add_serve
from medklip.cli.train import add_demo, add_prepare, add_pretrain, add_synthetic
from medklip.errors import MedKLIPError

SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    add_demo,
    add_extract,
    add_predict,
    add_evaluate,
    add_compare,
    add_calibrate,
    add_serve,
    add_pretrain,
    add_finetune,
    add_prepare,
    add_synthetic,
    add_knowledge,
    add_convert_official,
    add_export,
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
