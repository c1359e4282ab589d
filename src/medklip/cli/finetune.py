"""``medklip finetune``: classification, segmentation or grading from a MedKLIP image encoder."""
from __future__ import annotations

import argparse
import json


def cmd_finetune(args: argparse.Namespace) -> int:
    from medklip.cli.common import config_path
    from medklip.config_utils import load_config
    from medklip.finetune import FinetuneConfig, finetune

    overrides = list(args.set)
    for key, value in (("task", args.task), ("init", args.init), ("data.dataset", args.dataset),
                       ("data.root", args.root), ("data.fraction", args.fraction), ("run.output", args.output)):
        if value is not None:
            overrides.insert(0, f"{key}={value}")
    config = load_config(FinetuneConfig, config_path(args.config, "medklip.finetune"), overrides)
    result = finetune(config, resume=args.resume, progress=not args.quiet)
    test = result.test
    headline = (f"Dice {test['dice']:.4f} (IoU {test['iou']:.4f})" if config.task == "segment"
                else f"macro AUC {test['macro']['auc']:.4f}, F1 {test['macro']['f1']:.4f}, "
                     f"ACC {test['macro']['accuracy']:.4f}")
    print(f"fine-tuning done ({config.task}, {config.data.dataset}, {config.data.fraction:g} of the labels, "
          f"init {config.init}): best epoch {result.best_epoch}, test {headline}\n"
          f"  {result.output / 'metrics.json'}\n  {result.output / 'report.md'}\n  model: {result.output / 'best'}")
    if args.json:
        print(json.dumps(test, indent=1))
    return 0


def add_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune for classification, segmentation or grading",
                       description="Fine-tune a ResNet classifier (classify, grade) or a ResUNet (segment) whose "
                                   "conv1..layer3 come from a MedKLIP model (--init FOLDER or official .pth) or "
                                   "from scratch, on a fraction of a benchmark's training split. --config takes a "
                                   "file or a built-in name (paper, synthetic-small); --set overrides any key. "
                                   "Multi-GPU: torchrun --nproc_per_node N -m medklip finetune ...")
    p.add_argument("--task", choices=["classify", "segment", "grade"])
    p.add_argument("--dataset", help="benchmark name (medklip evaluate --list) or synthetic")
    p.add_argument("--root", help="the dataset folder (synthetic: written there when missing)")
    p.add_argument("--init", help="scratch, a medklip model folder, or an official .pth")
    p.add_argument("--fraction", type=float, help="share of the training labels: 0.01, 0.1, 1.0")
    p.add_argument("-o", "--output", help="run folder")
    p.add_argument("--config", help="config file or built-in name (default: the paper's settings)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--resume", metavar="RUN_DIR_OR_CHECKPOINT",
                   help="continue a run from its last checkpoint (an epoch's end or inside one)")
    p.add_argument("--json", action="store_true", help="print the test metrics as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_finetune)
