"""``medklip calibrate``: per-finding calibration fitted on a held-out split, saved with the model."""
from __future__ import annotations

import argparse

from medklip.cli.common import add_image_options, image_options


def cmd_calibrate(args: argparse.Namespace) -> int:
    from medklip.zeroshot.calibrate import calibrate_model

    record = calibrate_model(args.model, args.dataset, args.root, args.output, method=args.method, split=args.split,
                             split_file=args.split_file, seed=args.seed, mapping=args.mapping, labels=args.labels,
                             batch_size=args.batch_size, progress=not args.quiet, text_encoder=args.text_encoder,
                             device=args.device, **image_options(args))
    print(f"calibrated {len(record['parameters'])} findings ({record['method']}) on {record['data']}")
    for name, e in record["per_finding_ece"].items():
        print(f"  {name:<28} ECE {e['before']:.4f} -> {e['after']:.4f}  {record['parameters'][name]}")
    for name, why in record["not_calibrated"].items():
        print(f"  {name:<28} not calibrated: {why}")
    print(f"mean ECE ({record['binning']}) {record['ece_before']:.4f} -> {record['ece_after']:.4f}; "
          f"model written to {args.output}")
    return 1 if record["failed_images"] else 0


def add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit calibrated probabilities on a validation split; save the model",
                       description="Predict the held-out split of a benchmark with the model's raw probabilities, "
                                   "fit one calibration map per finding the model was trained on (platt: "
                                   "sigmoid(a d + b) of the log-odds d; temperature: sigmoid(d/T)) and write a model "
                                   "folder that records it (config.json, model card). predict, serve, evaluate and "
                                   "the Python API then apply it and mark which probabilities are calibrated.")
    p.add_argument("--model", required=True, help="save_pretrained folder, official .pth, or Hub id org/name")
    p.add_argument("--dataset", required=True, help="a benchmark of `medklip evaluate --list`")
    p.add_argument("--root", required=True, help="the dataset folder")
    p.add_argument("-o", "--output", required=True, help="the calibrated model folder to write")
    p.add_argument("--method", choices=["temperature", "platt"], default="platt",
                   help="platt (default: slope and intercept of the log-odds; on the demo world ECE 0.053 -> 0.032, "
                        "where a temperature left it at 0.053) or temperature (one parameter per finding)")
    p.add_argument("--split", default="validation", help="the held-out split to fit on (default: validation)")
    p.add_argument("--split-file", help="a split.csv (id,split) naming the images of each split")
    p.add_argument("--seed", type=int, default=0, help="seed of the paper's split when the data has none")
    p.add_argument("--labels", help="edema-severity: the label CSV")
    p.add_argument("--mapping", help="YAML overriding a dataset's settings")
    p.add_argument("--text-encoder", help="encoder for official checkpoints")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", help="cpu / cuda (default: a GPU if there is one)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_image_options(p)
    p.set_defaults(handler=cmd_calibrate)
