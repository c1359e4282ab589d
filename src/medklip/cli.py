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


# ------------------------------------------------------------------------------ predict
def _cmd_predict(args: argparse.Namespace) -> int:
    import csv as csv_module
    from pathlib import Path

    from medklip.knowledge import parse_describe_args, read_descriptions
    from medklip.zeroshot.predict import DEFAULT_FINDINGS, Predictor, collect_images, requested_names

    describe = parse_describe_args(args.describe) if args.describe else {}
    if args.describe_file:
        describe = {**read_descriptions(args.describe_file), **describe}
    findings = [f.strip() for f in args.findings.split(",") if f.strip()] if args.findings else list(DEFAULT_FINDINGS)
    files, failed = collect_images(args.inputs)
    predictor = Predictor(args.model, text_encoder=args.text_encoder, device=args.device)
    results = predictor.predict(files, findings, describe, batch_size=args.batch_size,
                                heatmaps=bool(args.heatmaps)) if files else []
    results = failed + results
    names = requested_names(findings, describe)
    if args.heatmaps:
        from medklip.zeroshot.visualize import save_overlay

        out = Path(args.heatmaps)
        for r in results:
            for name in names if r.error is None else []:
                stem = Path(r.image).stem
                save_overlay(r.pixels, r.heatmaps[name], out / f"{stem}_{name.replace('/', '_')}.png", name,
                             r.probabilities[name])
    ok = [r for r in results if r.error is None]
    if args.format == "json":
        print(json.dumps([{"image": r.image, "probabilities": r.probabilities, "error": r.error} for r in results],
                         indent=1))
    elif args.format == "csv":
        writer = csv_module.writer(sys.stdout)
        writer.writerow(["image", *names, "error"])
        for r in results:
            writer.writerow([r.image, *[f"{r.probabilities[n]:.4f}" if r.error is None else "" for n in names],
                             r.error or ""])
    else:
        for r in ok:
            print(r.image)
            for name, p in sorted(r.probabilities.items(), key=lambda kv: -kv[1]):
                print(f"  {name:<24} {p:.3f}")
    bad = [r for r in results if r.error is not None]
    for r in bad:
        print(f"medklip predict: {r.error if r.image in r.error else f'{r.image}: {r.error}'}", file=sys.stderr)
    print(f"predicted {len(ok)} images, {len(bad)} failed" + (f"; overlays in {args.heatmaps}" if args.heatmaps else ""),
          file=sys.stderr)
    return 1 if bad or not ok else 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="zero-shot probabilities and heatmaps for images (PNG / JPG / DICOM)",
                       description="Predict findings on images or folders with a medklip model folder or an "
                                   "official .pth. Findings the model was trained on use their own query; "
                                   "others (e.g. covid-19, or --describe NAME=TEXT) are added queries.")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--model", required=True, help="save_pretrained folder or official .pth")
    p.add_argument("--text-encoder", help="encoder for new descriptions / official checkpoints")
    p.add_argument("--findings", help="comma-separated (default: the ChestX-ray14 list)")
    p.add_argument("--describe", action="append", default=[], metavar="NAME=DESCRIPTION",
                   help="a disease by description (repeatable)")
    p.add_argument("--describe-file", metavar="FILE", help="descriptions from a file (JSON/YAML/CSV/NAME=DESC)")
    p.add_argument("--heatmaps", metavar="OUTDIR", help="write one overlay PNG per image and finding")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", help="cpu / cuda (default: a GPU if there is one)")
    p.set_defaults(handler=_cmd_predict)


# ----------------------------------------------------------------------- pretrain / demo
def _config_path(value: str | None):
    from pathlib import Path

    from medklip.train.config import builtin_config

    if value is None or Path(value).is_file():
        return value
    if "/" not in value and not value.endswith((".yaml", ".yml", ".json")):
        return builtin_config(value)
    return value  # load_config reports the missing file


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from medklip.config_utils import load_config
    from medklip.train.config import PretrainConfig
    from medklip.train.trainer import pretrain

    config = load_config(PretrainConfig, _config_path(args.config), args.set)
    result = pretrain(config, resume=args.resume, progress=not args.quiet and sys.stderr.isatty())
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        val = "n/a" if result.best_val_loss is None else f"{result.best_val_loss:.4f}"
        print(f"pre-training done: {result.steps} steps, best validation loss {val}\n"
              f"  best model: {result.best_model}\n  last model: {result.last_model}\n"
              f"  logs: {result.output / 'train_log.csv'}, {result.output / 'tensorboard'}")
    return 0


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pre-train MedKLIP (synthetic world by default, or a manifest)",
                       description="Pre-train MedKLIP. --config takes a YAML/JSON file or a built-in name "
                                   "(paper, cpu-small, demo, demo-quick); --set overrides any key "
                                   "(e.g. --set optim.lr=3e-4 --set data.manifest=mimic.jsonl). Multi-GPU / "
                                   "multi-node: torchrun --nproc_per_node N -m medklip pretrain ...")
    p.add_argument("--config", help="config file or built-in name (default: the paper's settings)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--resume", metavar="RUN_DIR_OR_CHECKPOINT", help="continue a run exactly where it stopped")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_pretrain)


def _cmd_demo(args: argparse.Namespace) -> int:
    from medklip.demo import run_demo

    result = run_demo(args.output, quick=args.quick, overrides=tuple(args.set),
                      progress=not args.quiet and sys.stderr.isatty())
    m = result.metrics
    covid = m["unseen"]["covid-19"]
    z = result.output / "zeroshot"
    print(f"medklip demo ({'quick' if args.quick else 'default'} profile) done in {result.seconds['total'] / 60:.1f} min\n"
          f"  seen findings macro AUC {m['seen_macro_auc']:.3f}; pointing game {m['pointing_game']:.3f}; "
          f"Dice {m['dice']:.3f}\n"
          f"  covid-19 (unseen) AUC by description {covid['auc_by_description']:.3f}, by name {covid['auc_by_name']:.3f}\n"
          f"  report: {z / 'report.md'}\n  metrics: {z / 'metrics.json'}\n  ROC curves: {z / 'roc_curves.png'}\n"
          f"  heatmaps: {z / 'heatmaps'}\n  model: {result.output / 'pretrain' / 'best'}")
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole method on the embedded synthetic world (no data, no GPU)",
                       description="Generate the synthetic chest X-ray world, extract triplets from its reports, "
                                   "pre-train a small MedKLIP, evaluate zero-shot on the held-out test split.")
    p.add_argument("-o", "--output", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument("--quick", action="store_true", help="the quick profile (a few minutes; CI uses it)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_cmd_demo)


def _cmd_synthetic(args: argparse.Namespace) -> int:
    from medklip.data.synthetic import WorldConfig, generate_world

    cfg = WorldConfig(train=args.train, validation=args.validation, test=args.test, image_size=args.image_size,
                      seed=args.seed)
    root = generate_world(args.output, cfg, workers=args.workers, progress=sys.stderr.isatty())
    print(f"synthetic world: {root / 'manifest.jsonl'} ({args.train} train, {args.validation} validation, "
          f"{args.test} test); test ground truth: {root / 'test_labels.jsonl'}")
    return 0


def _add_synthetic(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synthetic", help="write the synthetic chest X-ray world (images, reports, manifest, masks)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--train", type=int, default=3000)
    p.add_argument("--validation", type=int, default=300)
    p.add_argument("--test", type=int, default=600)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(handler=_cmd_synthetic)


def _cmd_prepare(args: argparse.Namespace) -> int:
    from medklip.data.mimic import prepare_mimic

    s = prepare_mimic(args.images, args.reports, args.output, args.metadata, args.split_file,
                      progress=sys.stderr.isatty())
    print(f"manifest {args.output}: {s.images} frontal images of {s.studies} studies; "
          f"{s.skipped_views} lateral/other views skipped; {len(s.errors)} problems -> "
          f"{args.output.rsplit('.', 1)[0]}.errors.jsonl", file=sys.stderr)
    return 0 if s.images else 1


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="build a pre-training manifest from a real dataset (mimic-cxr)")
    p.add_argument("dataset", choices=["mimic-cxr"])
    p.add_argument("--images", required=True, help="MIMIC-CXR(-JPG) root (with files/ and the metadata CSVs)")
    p.add_argument("--reports", required=True, help="root of the unpacked mimic-cxr-reports (files/pXX/...)")
    p.add_argument("-o", "--output", required=True, help="manifest to write (JSONL)")
    p.add_argument("--metadata", help="mimic-cxr-2.0.0-metadata.csv[.gz] if not under --images")
    p.add_argument("--split-file", help="mimic-cxr-2.0.0-split.csv[.gz] if not under --images")
    p.set_defaults(handler=_cmd_prepare)


# ---------------------------------------------------------------------------------- main
SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_demo,
    _add_extract,
    _add_predict,
    _add_pretrain,
    _add_prepare,
    _add_synthetic,
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
