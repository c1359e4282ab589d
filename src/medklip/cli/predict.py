"""``medklip predict``: zero-shot probabilities and heatmaps on images, streamed (each image's
result is written as soon as its batch is done; nothing is kept)."""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from medklip.cli.common import add_image_options, image_options

if TYPE_CHECKING:  # pragma: no cover
    from medklip.zeroshot.predict import Prediction


class _Output:
    """One result at a time, as a table, JSON lines, or CSV rows on stdout."""

    def __init__(self, fmt: str, names: list[str], calibration: str | None) -> None:
        self.fmt, self.names, self.calibration = fmt, names, calibration
        if fmt == "csv":
            self.csv = csv.writer(sys.stdout)
            self.csv.writerow(["image", *names, "error"])

    def write(self, r: Prediction) -> None:
        if self.fmt == "json":
            print(json.dumps({"image": r.image, "probabilities": r.probabilities, "calibrated": r.calibrated,
                              "calibration": self.calibration, "error": r.error}, ensure_ascii=False))
        elif self.fmt == "csv":
            self.csv.writerow([r.image, *[f"{r.probabilities[n]:.9g}" if r.error is None else "" for n in self.names],
                               r.error or ""])
        elif r.error is None:
            print(r.image)
            for name, p in sorted(r.probabilities.items(), key=lambda kv: -kv[1]):
                mark = "  calibrated" if r.calibrated.get(name) else ""
                print(f"  {name:<24} {p:.3f}{mark}")
        sys.stdout.flush()


def cmd_predict(args: argparse.Namespace) -> int:
    # torch and matplotlib are imported when the command runs, so `medklip --help` stays fast
    from medklip.evaluation.plots import save_overlay
    from medklip.knowledge import parse_describe_args, read_descriptions
    from medklip.zeroshot.predict import (
        DEFAULT_FINDINGS,
        Predictor,
        collect_images,
        requested_names,
    )

    # heavy imports (torch, matplotlib) only when the command runs: `medklip --help` stays fast

    describe = parse_describe_args(args.describe) if args.describe else {}
    if args.describe_file:
        describe = {**read_descriptions(args.describe_file), **describe}
    findings = [f.strip() for f in args.findings.split(",") if f.strip()] if args.findings else list(DEFAULT_FINDINGS)
    files, problems = collect_images(args.inputs)
    predictor = Predictor(args.model, text_encoder=args.text_encoder, device=args.device,
                          calibrated=not args.uncalibrated, **image_options(args))
    names = requested_names(findings, describe)
    output = _Output(args.format, names, predictor.calibration_source)
    flags = predictor.calibrated_findings(findings, describe)  # without encoding the descriptions a second time
    done = [n for n in names if flags[n]]
    print(f"calibrated on {predictor.calibration_source}: {', '.join(done) or 'none of the asked findings'}; "
          f"uncalibrated: {', '.join(n for n in names if not flags[n]) or 'none'}" if predictor.calibration_source
          else "probabilities are not calibrated (the model has no calibration; see `medklip calibrate`)",
          file=sys.stderr)
    overlays = Path(args.heatmaps) if args.heatmaps else None
    ok = bad = 0

    def report(r: Prediction) -> None:
        nonlocal ok, bad
        output.write(r)
        if r.error is None:
            ok += 1
        else:
            bad += 1
            message = r.error if r.image in r.error else f"{r.image}: {r.error}"
            print(f"medklip predict: {message}", file=sys.stderr, flush=True)

    for r in problems:
        report(r)
    results = predictor.iter_predict(files, findings, describe, batch_size=args.batch_size,
                                     heatmaps=overlays is not None, keep_display=overlays is not None) if files else []
    for r in results:
        if overlays is not None and r.error is None and r.display is not None:
            for name in names:
                save_overlay(r.display, r.heatmaps[name], overlays / f"{Path(r.image).stem}_{name.replace('/', '_')}.png",
                             name, r.probabilities[name])
        report(r)
    print(f"predicted {ok} images, {bad} failed" + (f"; overlays in {overlays}" if overlays else ""), file=sys.stderr)
    return 1 if bad or not ok else 0


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="zero-shot probabilities and heatmaps for images (PNG / JPG / DICOM)",
                       description="Predict findings on images or folders with a medklip model folder, an "
                                   "official .pth or a Hub model. Findings the model was trained on use their own "
                                   "query; others (e.g. covid-19, or --describe NAME=TEXT) are added queries. "
                                   "Results are written as each batch finishes.")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--model", required=True, help="save_pretrained folder, official .pth, or Hub id org/name")
    p.add_argument("--text-encoder", help="encoder for new descriptions / official checkpoints")
    p.add_argument("--findings", help="comma-separated (default: the ChestX-ray14 list)")
    p.add_argument("--describe", action="append", default=[], metavar="NAME=DESCRIPTION",
                   help="a disease by description (repeatable)")
    p.add_argument("--describe-file", metavar="FILE", help="descriptions from a file (JSON/YAML/CSV/NAME=DESC)")
    p.add_argument("--heatmaps", metavar="OUTDIR", help="write one overlay PNG per image and finding")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table",
                   help="table, json (one JSON object per line) or csv")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", help="cpu / cuda (default: a GPU if there is one)")
    p.add_argument("--uncalibrated", action="store_true", help="raw probabilities even when the model is calibrated")
    add_image_options(p)
    p.set_defaults(handler=cmd_predict)
