"""Writing an evaluation run: metrics.json / metrics.csv, a markdown report laid out like the
paper's Tables 1-4 (and 11), per-image predictions, the errors file, ROC curves and overlays."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from medklip.data.benchmarks import Benchmark
from medklip.evaluation.benchmark import EvaluationRun
from medklip.zeroshot.visualize import markdown_table, save_overlay, save_roc_curves


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def write_metrics_csv(metrics: dict, path: Path) -> None:
    """One row per (section, prompt, metric): value and 95% CI."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "section", "prompt", "metric", "value", "ci_low", "ci_high"])
        for section in ("classification", "grounding"):
            for prompt, values in metrics.get(section, {}).items():
                for key, value in values.items():
                    if isinstance(value, (int, float)) and not key.endswith("_ci"):
                        ci = values.get(f"{key}_ci", ["", ""])
                        w.writerow([metrics["dataset"], section, prompt, key, value, *ci])
        for key, value in metrics.get("macro", {}).items():
            w.writerow([metrics["dataset"], "classification", "macro", key, value, "", ""])


def write_predictions(run: EvaluationRun, assignment: dict[str, str], path: Path) -> None:
    labels = list(dict.fromkeys(p.cls for p in run.prompts))
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "image", "split", *[f"label:{c}" for c in labels], *[f"prob:{p.label}" for p in run.prompts]])
        for i, s in enumerate(run.samples):
            w.writerow([s.id, str(s.image), assignment.get(s.id, ""), *[s.labels.get(c, "") for c in labels],
                        *[f"{v:.6f}" for v in run.probs[i]]])


def _fmt_ci(values: dict, key: str) -> str:
    v, ci = values.get(key, float("nan")), values.get(f"{key}_ci")
    if ci and not any(math.isnan(c) for c in ci):
        return f"{v:.4f} ({ci[0]:.3f}-{ci[1]:.3f})"
    return f"{v:.4f}"


def markdown_report(bench: Benchmark, run: EvaluationRun, info: dict) -> str:
    m = run.metrics
    lines = [f"# Zero-shot evaluation: {bench.title}", "",
             f"Model `{info['model']}`; split **{info['split']}** of `{info['split_file']}`; "
             f"{m['images']} images scored, {m['failed_images']} unreadable, {info['label_errors']} label rows "
             "unusable (see errors.jsonl). 95% bootstrap CIs in brackets.", ""]
    cls_rows = m["classification"]
    if cls_rows:
        by_name = [k for k in cls_rows if k.endswith("(name)")]
        if by_name:  # an unseen disease: the paper's Table 2 layout
            lines += ["## Classification (cf. the paper's Table 2)", "",
                      markdown_table(["prompt", "AUC", "F1", "ACC"], [
                          ("direct (name)" if k.endswith("(name)") else "description",
                           _fmt_ci(v, "auc"), _fmt_ci(v, "f1"), _fmt_ci(v, "accuracy")) for k, v in cls_rows.items()]), ""]
        else:
            macro = m.get("macro", {})
            title = "macro average over the classes" if len(cls_rows) > 1 else next(iter(cls_rows))
            lines += ["## Classification (cf. the paper's Table 1)", "",
                      markdown_table(["dataset", "AUC", "F1", "ACC"], [
                          (f"{bench.title} ({title})", macro.get("auc", float("nan")), macro.get("f1", float("nan")),
                           macro.get("accuracy", float("nan")))]), ""]
            if len(cls_rows) > 1:
                lines += ["### Per class (cf. the paper's Table 11)", "",
                          markdown_table(["class", "entity", "AUC", "F1", "ACC", "positives", "images"], [
                              (k, bench.classes.get(k, k), _fmt_ci(v, "auc"), _fmt_ci(v, "f1"),
                               _fmt_ci(v, "accuracy"), v["positives"], v["n"]) for k, v in cls_rows.items()]), ""]
    if m.get("grading"):
        for prompt, g in m["grading"].items():
            lines += [f"## Severity grades: mean `{prompt}` probability per grade", "",
                      markdown_table(["grade", "images", "mean probability"], [
                          (k, g["images_per_grade"][k], v) for k, v in g["mean_probability_per_grade"].items()]), ""]
    if m["grounding"]:
        lines += ["## Grounding (cf. the paper's Tables 3 and 4)", "",
                  markdown_table(["prompt", "Pointing Game", "Recall", "Precision", "IoU", "Dice", "images"], [
                      (k, _fmt_ci(v, "pointing_game"), v["recall"], v["precision"], v["iou"], v["dice"], v["images"])
                      for k, v in m["grounding"].items()]), "",
                  "Recall / precision: connected regions of the heatmap binarised at the Dice-maximising "
                  "threshold, matched to ground-truth regions at IoU 0.1.", ""]
    if run.curves:
        lines += ["![ROC curves](roc_curves.png)", ""]
    lines += [f"![{p.stem}](heatmaps/{p.name})" for p in info.get("overlays", [])]
    return "\n".join(lines) + "\n"


def write_run(bench: Benchmark, run: EvaluationRun, out_dir: Path, assignment: dict[str, str], info: dict) -> dict:
    """Write every output of a run into ``out_dir``; returns the metrics (with the run info)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {**run.metrics, **{k: v for k, v in info.items() if k != "overlays"}}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    write_metrics_csv(metrics, out_dir / "metrics.csv")
    write_predictions(run, assignment, out_dir / "predictions.csv")
    with (out_dir / "errors.jsonl").open("w") as f:
        for e in bench.errors:
            f.write(json.dumps({"kind": "label row", **e}) + "\n")
        for e in run.failures:
            f.write(json.dumps({"kind": "image", **e}) + "\n")
    if run.curves:
        save_roc_curves(run.curves, out_dir / "roc_curves.png", f"Zero-shot ROC: {bench.title}")
    overlays = []
    for sample, prompt, pixels, heat, prob, mask in run.overlays:
        overlays.append(save_overlay(pixels, heat, out_dir / "heatmaps" / f"{_slug(sample.id)}_{_slug(prompt.label)}.png",
                                     prompt.label, prob, mask))
    (out_dir / "report.md").write_text(markdown_report(bench, run, {**info, "overlays": overlays}))
    return metrics
