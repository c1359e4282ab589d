"""Pictures a person can read: heatmap overlays on the radiograph, ROC curves; markdown tables.

Overlays draw the patch-grid heatmap bilinearly smoothed (easier to read); every grounding
*metric* uses the release's block upsampling instead (:mod:`medklip.evaluation.grounding`)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medklip.evaluation.calibration import Reliability
from medklip.extras import require


def _plt():
    matplotlib = require("matplotlib", "eval")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", "eval")


def _save(fig, path: str | Path, dpi: int) -> Path:
    """Lay out, write (creating the folder) and close a figure."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    _plt().close(fig)
    return path


def smooth_upsample(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a patch-grid heatmap to an image shape, for drawing only."""
    from PIL import Image

    img = Image.fromarray(np.asarray(heatmap, np.float32))
    return np.asarray(img.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), dtype=np.float32)


def save_overlay(image: np.ndarray, heatmap: np.ndarray, path: str | Path, title: str, probability: float,
                 mask: np.ndarray | None = None, alpha: float = 0.45) -> Path:
    """The radiograph beside the same radiograph with the heatmap over it (colour bar, probability)."""
    plt = _plt()
    heat = smooth_upsample(heatmap, image.shape)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.3))
    for ax in axes:
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        ax.axis("off")
    axes[0].set_title("image")
    im = axes[1].imshow(heat, cmap="jet", alpha=alpha)
    if mask is not None and mask.any():
        axes[1].contour(mask.astype(float), levels=[0.5], colors="white", linewidths=1.0)
    axes[1].set_title(f"{title}: p = {probability:.3f}")
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04, label="attention")
    return _save(fig, path, 100)


def save_roc_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]], path: str | Path,
                    title: str = "ROC") -> Path:
    """``{name: (fpr, tpr, auc)}`` on one plot."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 6))
    colors = plt.cm.tab20(np.linspace(0, 1, 20))
    many = len(curves) > 20  # e.g. PadChest's 193 labels: every curve thin, the legend a summary
    for i, (name, (fpr, tpr, auc)) in enumerate(curves.items()):
        style = "--" if name.startswith("covid") else "-"
        if many:
            ax.plot(fpr, tpr, "-", lw=0.6, color="tab:blue", alpha=0.25)
        else:
            ax.plot(fpr, tpr, style, lw=1.4, color=colors[i % 20], label=f"{name} ({auc:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="gray")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title(title)
    if many:
        aucs = [c[2] for c in curves.values() if np.isfinite(c[2])]
        ax.plot([], [], "-", color="tab:blue", label=f"{len(curves)} prompts, mean AUC {np.mean(aucs):.3f}")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path, 110)


def save_forest_plot(result: Mapping, path: str | Path, name_a: str = "A", name_b: str = "B") -> Path:
    """AUC differences (a - b) with their paired-bootstrap intervals, one row per class, the macro
    row at the bottom (``medklip compare``'s result)."""
    plt = _plt()
    rows = [(k, v) for k, v in result["classes"].items()]
    if "macro" in result:
        rows.append(("macro", result["macro"]))
    fig, ax = plt.subplots(figsize=(6.5, 0.9 + 0.32 * len(rows)))
    for i, (name, r) in enumerate(rows):
        y = len(rows) - 1 - i
        lo, hi = r["delta_ci"]
        colour = "black" if name == "macro" else ("tab:red" if lo > 0 or hi < 0 else "tab:blue")
        ax.plot([lo, hi], [y, y], "-", color=colour, lw=1.6)
        ax.plot([r["delta"]], [y], "D" if name == "macro" else "o", color=colour, ms=5)
    ax.axvline(0, color="gray", ls=":")
    ax.set_yticks(range(len(rows)), [name for name, _ in reversed(rows)], fontsize=8)
    level = round(100 * (1 - result["alpha"]))
    ax.set_xlabel(f"AUC {name_a} - AUC {name_b} ({level}% paired-bootstrap interval; red: excludes 0)")
    ax.set_title(f"{result['dataset']}: {result['images']} images", fontsize=9)
    return _save(fig, path, 110)


def save_reliability_diagram(bins: Mapping[str, Reliability], path: str | Path, title: str) -> Path:
    """Observed positive rate against mean probability per bin (one line per probability kind:
    ``raw`` / ``calibrated``), the diagonal for perfect calibration, and the images per bin."""
    plt = _plt()
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(4.6, 5.4), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfectly calibrated")
    edges = None
    for name, r in bins.items():
        kept = r.counts > 0
        ax.plot(r.confidence[kept], r.frequency[kept], marker="o", ms=3, label=name)
        n = len(r.counts)
        edges = np.linspace(0, 1, n + 1)
        counts.step(edges[:-1], r.counts, where="post", label=name)
    ax.set(ylabel="observed positive rate", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=7)
    counts.set(xlabel="predicted probability (bin)", ylabel="images")
    if edges is not None:
        counts.set_yscale("symlog")
    return _save(fig, path, dpi=110)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def fmt(v: object) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
