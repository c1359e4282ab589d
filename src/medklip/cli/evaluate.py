"""``medklip evaluate``: zero-shot scores on the paper's benchmark datasets."""
from __future__ import annotations

import argparse
import json
import math

from medklip.cli.common import add_image_options, image_options


def _list_datasets() -> int:
    from medklip.data.benchmarks import benchmark_specs
    from medklip.data.benchmarks.padchest import protocol_classes

    for name, spec in benchmark_specs().items():
        split = "/".join(str(f) for f in spec["split"])
        classes = spec["classes"] or protocol_classes(spec.get("protocol", "kad"))
        shown = ", ".join(f"{k}->{v}" if k != v else k for k, v in list(classes.items())[:30])
        more = f" ... ({len(classes)} in all)" if len(classes) > 30 else ""
        print(f"{name}: {spec['title']}\n  get it: {spec['source']}\n  layout: {spec['layout']}")
        for key in ("labels", "splits"):
            if spec.get(key):
                print(f"  {key}: {spec[key]}")
        print(f"  task: {spec['task']}; seeded split fractions when the publisher has none: {split}")
        print(f"  classes -> entities: {shown}{more}\n")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.list:
        return _list_datasets()
    from medklip.errors import MedKLIPError
    from medklip.knowledge import parse_describe_args
    from medklip.zeroshot.benchmark import evaluate_dataset

    missing = [o for o, v in (("--dataset", args.dataset), ("--root", args.root), ("--model", args.model)) if not v]
    if missing:
        raise MedKLIPError(f"{', '.join(missing)} required (or --list to see the datasets)")
    out = args.output or f"runs/evaluate/{args.dataset}"
    m = evaluate_dataset(args.dataset, args.root, args.model, out, split=args.split, split_file=args.split_file,
                         seed=args.seed, text_encoder=args.text_encoder, device=args.device,
                         describe=parse_describe_args(args.describe) if args.describe else None,
                         by_name=not args.no_name_prompt, batch_size=args.batch_size, n_boot=args.bootstrap,
                         mapping=args.mapping, labels=args.labels, progress=not args.quiet,
                         calibration_split=args.calibration_split, calibrated=not args.uncalibrated,
                         **image_options(args))
    if args.json:
        print(json.dumps(m, indent=1))
    else:
        not_found = (f", {m['listed_images_not_found']} of the {m['listed_images']} listed images not in your copy "
                   f"({m['listed_images'] - m['listed_images_not_found']} found; errors.jsonl names each)"
                   if m.get("listed_images_not_found") else "")
        print(f"{m['dataset']} ({m['split']} split): {m['images']} images, {m['failed_images']} unreadable, "
              f"{m['label_errors']} label rows unusable{not_found}")
        op = m.get("operating_points", {})
        print(f"  thresholds: {'chosen on the ' + op['source'] if op.get('available') else op.get('reason')}; "
              "F1 / ACC (val. t) at them, paper-protocol F1 / ACC tuned on the test set")
        for name, v in m["classification"].items():
            at_val = (f"F1 {v['operating_f1']:.4f}  ACC {v['operating_accuracy']:.4f} (val. t)  "
                      if "operating_f1" in v else "")
            print(f"  {name:<28} AUC {v['auc']:.4f}  {at_val}F1 {v['f1']:.4f}  ACC {v['accuracy']:.4f} (paper "
                  f"protocol)  ({v['positives']}/{v['n']})")
        for key in [k for k in m if k.startswith("macro")]:
            if len(m["classification"]) > 1:
                mac = m[key]
                print(f"  {key:<28} AUC {mac['auc']:.4f}  F1 {mac['f1']:.4f}  ACC {mac['accuracy']:.4f}")
        for name, v in m["grounding"].items():
            print(f"  {name:<28} pointing game {v['pointing_game']:.4f}  IoU/Dice at 0.008 {v['iou_release']:.4f}/"
                  f"{v['dice_release']:.4f}  at best t={v['best_threshold']:.2f} {v['iou_best']:.4f}/"
                  f"{v['dice_best']:.4f}  recall {v['recall']:.4f}  precision {v['precision']:.4f}  "
                  f"({v['images']} images)")
        if "grounding_overall" in m and len(m["grounding"]) > 1:
            g = m["grounding_overall"]
            phrase = f"  mIoU {g['miou']:.4f}  CNR {g['cnr']:.4f}" if "miou" in g else ""
            print(f"  {'all grounded findings':<28} pointing game {g['pointing_game']:.4f}{phrase} "
                  f"({g['instances']} instances)")
        print(f"written to {out}: metrics.json, metrics.csv, report.md, predictions.csv, errors.jsonl "
              f"(split: {m['split_file']})")
    finite = [v["auc"] for v in m["classification"].values() if not math.isnan(v["auc"])]
    return 1 if m["failed_images"] or not (finite or m["grounding"]) else 0


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="zero-shot metrics on a benchmark dataset (ChestX-ray14, RSNA, SIIM, ...)",
                       description="Read a benchmark in its published layout, split it as the paper does (seeded, "
                                   "by patient; the split file is written so runs are comparable) and score a "
                                   "model zero-shot: AUC / F1 / ACC with bootstrap CIs, grounding (pointing game, "
                                   "detection recall / precision at IoU 0.1, IoU, Dice). `--list` shows the "
                                   "datasets, where to get them and the layout each needs.")
    p.add_argument("--list", action="store_true", help="list the datasets and their layouts")
    p.add_argument("--dataset", help="chestxray14, rsna-pneumonia, siim-acr, covidx, covid-rural, edema-severity, "
                                     "chexpert, padchest, padchest-mavl-seen, padchest-mavl-unseen, vindr-cxr, "
                                     "ms-cxr, openi, chestxray14-expert, synthetic (--list)")
    p.add_argument("--root", help="the dataset folder")
    p.add_argument("--model", help="save_pretrained folder, official .pth, or Hub id org/name")
    p.add_argument("-o", "--output", help="run folder (default: runs/evaluate/DATASET)")
    p.add_argument("--split", default="test", choices=["train", "validation", "valid", "test", "all", "release"],
                   help="a split of the paper's seeded partition, all images, or `release`: exactly the images "
                        "of the release's own test list (chestxray14, rsna-pneumonia)")
    p.add_argument("--split-file", help="reuse a split.csv (id,split) from an earlier run")
    p.add_argument("--seed", type=int, default=0, help="split seed (default: 0)")
    p.add_argument("--calibration-split", default="validation",
                   help="the split each class's F1 / ACC threshold and the grounding threshold are chosen on "
                        "(default: validation; with --split-file, its rows of that split; `none`: only the paper's "
                        "test-tuned values)")
    p.add_argument("--uncalibrated", action="store_true",
                   help="score the model's raw probabilities even when it carries a calibration")
    p.add_argument("--labels", help="edema-severity: the label CSV (default: the one in ROOT)")
    p.add_argument("--mapping", help="YAML overriding a dataset's settings (e.g. its class -> entity map)")
    p.add_argument("--describe", action="append", default=[], metavar="CLASS_OR_ENTITY=DESCRIPTION",
                   help="query a class by this description instead (repeatable)")
    p.add_argument("--no-name-prompt", action="store_true",
                   help="skip the name-only prompt for entities the model was not trained on")
    p.add_argument("--text-encoder", help="encoder for descriptions / official checkpoints")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for CIs (0: none)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", help="cpu / cuda (default: a GPU if there is one)")
    p.add_argument("--json", action="store_true", help="print metrics.json")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_image_options(p)
    p.set_defaults(handler=cmd_evaluate)
