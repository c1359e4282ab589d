"""``medklip export --onnx``: a model as an ONNX file for ONNX Runtime and other runtimes."""
from __future__ import annotations

import argparse
import sys


def cmd_export(args: argparse.Namespace) -> int:
    from medklip.knowledge import parse_describe_args
    from medklip.models.export import export_onnx
    from medklip.zeroshot.predict import Predictor

    predictor = Predictor(args.model, text_encoder=args.text_encoder, device="cpu")
    describe = parse_describe_args(args.describe) if args.describe else {}
    everything = list(predictor.model.entity_names)
    findings = [f.strip() for f in args.findings.split(",") if f.strip()] if args.findings else everything
    qs = predictor.query_set(findings, describe)
    rows = [r for group in qs.groups for r in group]  # an ensemble's members: NAME #1, NAME #2, ...
    chosen = [qs.names[r] for r in rows]
    path = export_onnx(predictor.model, args.onnx, chosen, qs.embeddings[rows])
    if qs.has_ensembles:
        print("findings with several descriptions are exported as one output per description (NAME #k); "
              "average their probabilities as medklip predict does", file=sys.stderr)
    print(f"wrote {path} ({len(chosen)} queries; inputs images [B,3,{predictor.model.config.image_size},"
          f"{predictor.model.config.image_size}], outputs probs, heatmaps) and {path}.json (query names, "
          f"preprocessing {predictor.preprocess.config.profile})", file=sys.stderr)
    return 0


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model to ONNX (probabilities and heatmaps, dynamic batch)",
                       description="Write the model with its query set frozen in as ONNX (opset 17): input "
                                   "'images' [B,3,S,S] preprocessed as the sidecar JSON says, outputs 'probs' "
                                   "[B,Q] and 'heatmaps' [B,Q,h,w].")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="where to write the ONNX file")
    p.add_argument("--model", required=True, help="save_pretrained folder, official .pth, or Hub id org/name")
    p.add_argument("--findings", help="comma-separated queries to keep (default: all of the model's)")
    p.add_argument("--describe", action="append", default=[], metavar="NAME=DESCRIPTION",
                   help="add a disease by description (repeatable)")
    p.add_argument("--text-encoder", help="encoder for descriptions / official checkpoints")
    p.set_defaults(handler=cmd_export)
