"""``medklip predict``: zero-shot probabilities and heatmaps on images."""
from __future__ import annotations

import argparse
import json
import sys


def cmd_predict(args: argparse.Namespace) -> int:
    import csv as csv_module
    from pathlib import Path

    from medklip.knowledge import parse_describe_args, read_descriptions
    from medklip.zeroshot.predict import (
        DEFAULT_FINDINGS,
        Predictor,
        collect_images,
        requested_names,
    )

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


def add_predict(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(handler=cmd_predict)
