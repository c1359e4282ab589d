"""``medklip knowledge`` and ``medklip convert-official``."""
from __future__ import annotations

import argparse
import json

from medklip.cli.common import add_knowledge_options, knowledge_from_args


def cmd_knowledge(args: argparse.Namespace) -> int:
    kb = knowledge_from_args(args)
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


def add_knowledge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("knowledge", help="list the knowledge base (entities and their descriptions, positions)",
                       description="List entities (query order) or positions; show one entity's description.")
    p.add_argument("name", nargs="?", help="show this entity only")
    p.add_argument("--positions", action="store_true", help="list the positions and their prompts")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_knowledge_options(p)
    p.set_defaults(handler=cmd_knowledge)


# ------------------------------------------------------------------------ convert-official
def cmd_convert_official(args: argparse.Namespace) -> int:
    from medklip.models import MedKLIP
    from medklip.models.official import release_text_encoder

    kb = knowledge_from_args(args)
    encoder = release_text_encoder(args.text_encoder, cache_dir=args.cache_dir)
    model = MedKLIP.from_official_checkpoint(args.checkpoint, text_encoder=encoder, knowledge=kb)
    out = model.save_pretrained(args.output)
    print(f"saved {out} ({model.config.backbone}, {len(model.entity_names)} queries, "
          f"{len(model.position_names)} positions)")
    return 0


def add_convert_official(sub: argparse._SubParsersAction) -> None:
    from medklip.text import PAPER_TEXT_ENCODER

    p = sub.add_parser("convert-official", help="turn the official release's .pth into a medklip model folder",
                       description="Load the official MedKLIP checkpoint (e.g. checkpoint_final.pth), embed the "
                                   "knowledge base with its text encoder and write a save_pretrained folder.")
    p.add_argument("checkpoint", help="official .pth file ({'model': state_dict})")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--text-encoder", default=PAPER_TEXT_ENCODER,
                   help=f"hub name or local folder of the encoder (default: {PAPER_TEXT_ENCODER})")
    p.add_argument("--cache-dir", help="text-embedding cache folder (default: user cache dir)")
    add_knowledge_options(p)
    p.set_defaults(handler=cmd_convert_official)
