"""``medklip serve``: the local web page."""
from __future__ import annotations

import argparse
import ipaddress
import logging
import sys

logger = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from medklip.app import PredictionService, create_app
    from medklip.zeroshot.predict import Predictor

    predictor = Predictor(args.model, text_encoder=args.text_encoder, device=args.device, precision=args.precision,
                          calibrated=not args.uncalibrated)
    service = PredictionService(predictor, max_upload_mb=args.max_upload_mb, model_name=str(args.model))
    if not _is_loopback(args.host):
        print(f"medklip serve: warning: listening on {args.host}: other machines can reach the page",
              file=sys.stderr)
    print(f"medklip serve: open http://{args.host}:{args.port}/ (API description: /docs); Ctrl-C stops",
          file=sys.stderr)
    uvicorn.run(create_app(service), host=args.host, port=args.port, log_level="warning")
    return 0


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="a local web page: upload an X-ray, see probabilities and heatmaps",
                       description="Serve the medklip page and its JSON API (POST /api/predict, GET /api/findings; "
                                   "OpenAPI at /docs). Bound to 127.0.0.1 unless --host says otherwise; uploads "
                                   "go to a temporary folder removed after each request.")
    p.add_argument("--model", required=True, help="save_pretrained folder or official .pth")
    p.add_argument("--text-encoder", help="encoder for new descriptions / official checkpoints")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--max-upload-mb", type=float, default=50, help="largest upload accepted (default: 50)")
    p.add_argument("--device", help="cpu / cuda (default: a GPU if there is one)")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32",
                   help="fp32 (default, exact), bf16 autocast, or auto (bf16 only where the hardware has it)")
    p.add_argument("--uncalibrated", action="store_true", help="raw probabilities even when the model is calibrated")
    p.set_defaults(handler=cmd_serve)
