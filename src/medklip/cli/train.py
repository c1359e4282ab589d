"""``medklip pretrain``, ``demo``, ``synthetic`` and ``prepare``."""
from __future__ import annotations

import argparse
import sys

from medklip.cli.common import config_path
from medklip.io_utils import errors_path


def cmd_pretrain(args: argparse.Namespace) -> int:
    from medklip.config_utils import load_config
    from medklip.train.config import PretrainConfig
    from medklip.train.trainer import pretrain

    config = load_config(PretrainConfig, config_path(args.config), args.set)
    result = pretrain(config, resume=args.resume, progress=not args.quiet)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        val = "n/a" if result.best_val_loss is None else f"{result.best_val_loss:.4f}"
        print(f"pre-training done: {result.steps} steps, best validation loss {val}; "
              f"{result.rows_left_out} manifest rows and {result.unreadable_images} unreadable images left out "
              f"({result.output / 'manifest_errors.jsonl'})\n"
              f"  best model: {result.best_model}\n  last model: {result.last_model}\n"
              f"  logs: {result.output / 'train_log.csv'}, {result.output / 'tensorboard'}")
    return 0


def add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pre-train MedKLIP (synthetic world by default, or a manifest)",
                       description="Pre-train MedKLIP. --config takes a YAML/JSON file or a built-in name "
                                   "(paper, cpu-small, demo, demo-quick); --set overrides any key "
                                   "(e.g. --set optim.lr=3e-4 --set data.manifest=mimic.jsonl). Multi-GPU / "
                                   "multi-node: torchrun --nproc_per_node N -m medklip pretrain ...")
    p.add_argument("--config", help="config file or built-in name (default: the paper's settings)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--resume", metavar="RUN_DIR_OR_CHECKPOINT", help="continue a run exactly where it stopped")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_pretrain)


def cmd_demo(args: argparse.Namespace) -> int:
    from medklip.demo import run_demo

    result = run_demo(args.output, quick=args.quick, overrides=tuple(args.set), progress=not args.quiet)
    m = result.summary
    z = result.output / "zeroshot"
    print(f"medklip demo ({'quick' if args.quick else 'default'} profile) done in {result.seconds['total'] / 60:.1f} min\n"
          f"  seen findings macro AUC {m['seen_macro_auc']:.3f}; pointing game (the release's rule, all grounded "
          f"findings) {m['pointing_game']:.3f}; Dice (best threshold, macro) {m['dice_best_macro']:.3f}\n"
          f"  covid-19 (unseen) AUC by description {m['covid-19_auc_by_description']:.3f}, "
          f"by name {m['covid-19_auc_by_name']:.3f}\n"
          f"  seen findings macro F1 at the thresholds chosen on validation {m['seen_macro_f1_validation_threshold']:.3f} "
          f"(tuned on test, the paper's protocol: {m['seen_macro_f1_test_tuned']:.3f}); mean ECE "
          f"{m['seen_mean_ece']:.3f}\n"
          f"  report: {z / 'report.md'}\n  metrics: {z / 'metrics.json'}\n  ROC curves: {z / 'roc_curves.png'}\n"
          f"  heatmaps: {z / 'heatmaps'}\n  model: {result.output / 'pretrain' / 'best'}")
    return 0


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole method on the embedded synthetic world (no data, no GPU)",
                       description="Generate the synthetic chest X-ray world, extract triplets from its reports, "
                                   "pre-train a small MedKLIP, evaluate zero-shot on the held-out test split.")
    p.add_argument("-o", "--output", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument("--quick", action="store_true", help="the quick profile (a few minutes; CI uses it)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_demo)


def cmd_synthetic(args: argparse.Namespace) -> int:
    from medklip.data.synthetic import WorldConfig, generate_world

    cfg = WorldConfig(train=args.train, validation=args.validation, test=args.test, image_size=args.image_size,
                      seed=args.seed)
    root = generate_world(args.output, cfg, workers=args.workers, progress=sys.stderr.isatty())
    print(f"synthetic world: {root / 'manifest.jsonl'} ({args.train} train, {args.validation} validation, "
          f"{args.test} test); ground truth: {root / 'validation_labels.jsonl'}, {root / 'test_labels.jsonl'}")
    return 0


def add_synthetic(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synthetic", help="write the synthetic chest X-ray world (images, reports, manifest, masks)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--train", type=int, default=3000)
    p.add_argument("--validation", type=int, default=300)
    p.add_argument("--test", type=int, default=600)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(handler=cmd_synthetic)


def cmd_prepare(args: argparse.Namespace) -> int:
    from medklip.data.mimic import prepare_mimic

    s = prepare_mimic(args.images, args.reports, args.output, args.metadata, args.split_file,
                      progress=sys.stderr.isatty())
    print(f"manifest {args.output}: {s.images} frontal images of {s.studies} studies; "
          f"{s.skipped_views} lateral/other views skipped; {len(s.errors)} problems -> "
          f"{errors_path(args.output)}", file=sys.stderr)
    return 0 if s.images else 1


def add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="build a pre-training manifest from a real dataset (mimic-cxr)")
    p.add_argument("dataset", choices=["mimic-cxr"])
    p.add_argument("--images", required=True, help="MIMIC-CXR(-JPG) root (with files/ and the metadata CSVs)")
    p.add_argument("--reports", required=True, help="root of the unpacked mimic-cxr-reports (files/pXX/...)")
    p.add_argument("-o", "--output", required=True, help="manifest to write (JSONL)")
    p.add_argument("--metadata", help="mimic-cxr-2.0.0-metadata.csv[.gz] if not under --images")
    p.add_argument("--split-file", help="mimic-cxr-2.0.0-split.csv[.gz] if not under --images")
    p.set_defaults(handler=cmd_prepare)
