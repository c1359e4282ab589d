"""Scoring fine-tuned networks on a split, and the paper's Tables 5-7 as markdown."""
from __future__ import annotations

import numpy as np
import torch

from medklip.evaluation import best_f1, dice, iou, macro
from medklip.evaluation.plots import markdown_table


@torch.no_grad()
def collect(model: torch.nn.Module, loader, task: str, device: torch.device) -> dict:
    """Probabilities and targets (classify / grade) or per-image Dice / IoU at 0.5 (segment)."""
    model.eval()
    probs, targets, dices, ious, positive = [], [], [], [], []
    for images, y in loader:
        logits = model(images.to(device)).logits.float()
        if task == "segment":
            pred = (torch.sigmoid(logits) >= 0.5).cpu().numpy()[:, 0]
            truth = y.numpy()[:, 0] > 0.5
            for p, t in zip(pred, truth):
                dices.append(dice(p, t))
                ious.append(iou(p, t))
                positive.append(bool(t.any()))
        else:
            probs.append((torch.softmax(logits, 1) if task == "grade" else torch.sigmoid(logits)).cpu().numpy())
            targets.append(y.numpy())
    if task == "segment":
        return {"dice": np.array(dices), "iou": np.array(ious), "positive": np.array(positive, bool)}
    return {"probs": np.concatenate(probs), "targets": np.concatenate(targets)}


def score(collected: dict, task: str, classes: list[str]) -> dict:
    """The split's metrics; ``primary`` is what early stopping follows (higher is better)."""
    if task == "segment":
        pos = collected["positive"]
        d_pos = float(collected["dice"][pos].mean()) if pos.any() else float("nan")
        return {"dice": d_pos, "iou": float(collected["iou"][pos].mean()) if pos.any() else float("nan"),
                "dice_all_images": float(collected["dice"].mean()), "positive_images": int(pos.sum()),
                "images": int(len(pos)), "primary": d_pos}
    p, y = collected["probs"], collected["targets"]
    per = {}
    for j, name in enumerate(classes):
        truth = (y == j).astype(int) if task == "grade" else y[:, j].astype(int)
        if len(np.unique(truth)) < 2:
            per[name] = {"auc": float("nan"), "f1": float("nan"), "accuracy": float("nan"),
                         "positives": int(truth.sum())}
            continue
        s = best_f1(truth, p[:, j])
        per[name] = {"auc": s.auc, "f1": s.f1, "accuracy": s.accuracy, "positives": int(truth.sum())}
    averages = {m: macro(v[m] for v in per.values()) for m in ("auc", "f1", "accuracy")}
    return {"per_class": per, "macro": averages, "images": int(len(y)), "primary": averages["auc"]}


def markdown(metrics: dict, task: str, title: str, fraction: float, init: str) -> str:
    """A table laid out like the paper's Table 5 (classification AUC), 6 (segmentation Dice) or
    7 (grading: AUC / F1 / ACC per grade and macro)."""
    portion = f"{fraction * 100:g}%"
    method = "scratch" if init == "scratch" else "MedKLIP-initialised"
    if task == "segment":
        table = markdown_table(["method", f"Dice ({portion})", "IoU", "Dice, all images"],
                               [(method, metrics["dice"], metrics["iou"], metrics["dice_all_images"])])
        return f"## Fine-tuned segmentation on {title} (cf. the paper's Table 6)\n\n{table}\n"
    if task == "grade":
        grades = list(metrics["per_class"])
        rows = [(f"{method} {m.upper() if m != 'accuracy' else 'ACC'}",
                 *[metrics["per_class"][g][m] for g in grades], metrics["macro"][m]) for m in ("auc", "f1", "accuracy")]
        table = markdown_table(["metric", *grades, "macro"], rows)
        return f"## Fine-tuned grading on {title}, {portion} of the labels (cf. the paper's Table 7)\n\n{table}\n"
    table = markdown_table(["method", f"AUC ({portion})"], [(method, metrics["macro"]["auc"])])
    per = markdown_table(["class", "AUC", "F1", "ACC", "positives"],
                         [(k, v["auc"], v["f1"], v["accuracy"], v["positives"]) for k, v in metrics["per_class"].items()])
    return (f"## Fine-tuned classification on {title} (cf. the paper's Table 5)\n\n{table}\n\n"
            f"### Per class\n\n{per}\n")
