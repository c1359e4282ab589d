"""Options and helpers shared by several subcommands."""
from __future__ import annotations

import argparse
from pathlib import Path


def knowledge_from_args(args: argparse.Namespace):
    from medklip.knowledge import KnowledgeBase, parse_describe_args

    kb = KnowledgeBase.load(args.knowledge)
    if args.describe:
        kb = kb.extend(parse_describe_args(args.describe))
    return kb


def add_knowledge_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--knowledge", metavar="FILE",
                   help="descriptions to add or override (JSON/YAML mapping, CSV name,description, "
                        "or NAME=DESCRIPTION lines), or a whole knowledge-base file")
    p.add_argument("--describe", action="append", metavar="NAME=DESCRIPTION", default=[],
                   help="add or override one entity description (repeatable)")


def config_path(value: str | None, package: str = "medklip.train"):
    """A config file, or the built-in config of that name shipped in ``package``."""
    from medklip.config_utils import packaged_config

    if value is None or Path(value).is_file():
        return value
    if "/" not in value and not value.endswith((".yaml", ".yml", ".json")):
        return packaged_config(package, value)
    return value  # load_config reports the missing file


def add_image_options(p: argparse.ArgumentParser) -> None:
    """How images are read: the preprocessing profile, the pixel budget, decoding workers."""
    from medklip.data.profiles import PROFILES

    p.add_argument("--preprocess", choices=PROFILES,
                   help="preprocessing profile (default: the model's own; official checkpoints: release-cxr14)")
    p.add_argument("--max-pixels", type=int, metavar="N",
                   help="refuse images with more pixels than this before decoding (default 25,000,000)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes decoding images ahead of the model (default: one per core beyond the first, "
                        "at most 4)")
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="model processes on the CPU, each decoding its own batches on its share of the cores "
                        "(opt-in throughput for batch jobs: 2 on 2 cores with --backend onnxruntime is about 1.8x "
                        "the release's loop on full-size PNGs; default 1)")
    p.add_argument("--backend", choices=["torch", "onnxruntime", "openvino"], default="torch",
                   help="run the model in PyTorch (default), ONNX Runtime (CPU; needs medklip[export]) or OpenVINO "
                        "(CPU; needs medklip[openvino]); benchmarks/speed.py times them")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32",
                   help="fp32 (default, exact), bf16 autocast (opt-in; faster where the CPU / GPU computes bf16 "
                        "natively, probabilities change slightly), or auto (bf16 only where native)")
    p.add_argument("--ensemble", choices=["embedding", "probability"], default="embedding",
                   help="a finding with several descriptions: one query from their mean embedding (default), or "
                        "the mean of one query per description's probabilities and heatmaps")
    p.add_argument("--variants", choices=["auto", "on", "off"], default="auto",
                   help="query knowledge-base findings outside the model by all their shipped descriptions (an "
                        "ensemble) or the main one only; auto (default): all of them, except for official "
                        "checkpoints, which query the main one as the release does")
    p.add_argument("--fast", action="store_true",
                   help="opt-in faster decoding (JPEGs at a reduced scale, fewer resampling passes): "
                        "probabilities change by up to ~1e-3; the default reproduces the release exactly")


def image_options(args: argparse.Namespace) -> dict:
    """The keyword arguments :class:`~medklip.zeroshot.predict.Predictor` takes from those options."""
    from medklip.zeroshot.predict import default_workers

    return {"preprocess": args.preprocess, "workers": default_workers() if args.workers is None else args.workers,
            "max_pixels": "model" if args.max_pixels is None else args.max_pixels, "backend": args.backend,
            "fast": args.fast, "precision": args.precision, "ensemble": args.ensemble, "processes": args.processes,
            "variants": {"auto": None, "on": True, "off": False}[args.variants]}
