#!/usr/bin/env python3
"""Training throughput (images/s) of the paper configuration: ResNet-50 trunk, 224x224, d_model 256,
4 decoder layers, 75 queries, 768-d text embeddings, AdamW, batch 32 - one optimiser step per batch,
fused attention as the trainer uses it.

    python benchmarks/pretrain_throughput.py                       # CPU (this machine: 2 cores)
    python benchmarks/pretrain_throughput.py --device cuda --amp    # a GPU, bf16 autocast
"""
from __future__ import annotations

import argparse
import contextlib
import os
import time

import torch

from medklip import MedKLIP, MedKLIPConfig
from medklip.models import MedKLIPCriterion


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (GPUs)")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg = MedKLIPConfig(backbone=args.backbone, image_size=args.image_size)
    model = MedKLIP(cfg, torch.randn(75, 768), torch.randn(51, 768)).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.02)
    b = args.batch_size
    x = torch.randn(b, 3, args.image_size, args.image_size, device=device)
    labels = torch.randint(-1, 3, (b, 75), device=device)
    index = torch.randint(0, 51, (b, 75, 8), device=device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if args.amp else contextlib.nullcontext()
    times = []
    for step in range(args.steps + 1):  # the first step warms up and is not timed
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with amp:
            out = model(x, need_attentions=False)
        loss = MedKLIPCriterion()(out, labels, index, model.position_embeddings).total
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - t)
    per_step = sum(times) / len(times)
    print(f"{args.backbone} {args.image_size}px batch {b} on {device} ({torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores){' bf16' if args.amp else ''}: {per_step:.2f} s/step = {b / per_step:.1f} images/s")


if __name__ == "__main__":
    main()
