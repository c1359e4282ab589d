"""Writing an evaluation run: metrics.json / metrics.csv, a markdown report laid out like the
paper's Tables 1-4 (and 11), the per-image predictions file, the errors file and ROC curves."""
from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np

from medklip.data.benchmarks import Benchmark, Sample
from medklip.evaluation.plots import markdown_table, save_reliability_diagram, save_roc_curves
from medklip.evaluation.scoring import EvaluationRun, Prompt
from medklip.io_utils import atomic_write_text


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
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
        for group in [k for k in metrics if k.startswith("macro")]:
            for key, value in metrics[group].items():
                w.writerow([metrics["dataset"], "classification", group, key, value, "", ""])
        for key, value in metrics.get("grounding_overall", {}).items():
            if isinstance(value, (int, float)):
                ci = metrics["grounding_overall"].get(f"{key}_ci", ["", ""])
                w.writerow([metrics["dataset"], "grounding", "overall", key, value, *ci])


class PredictionsWriter:
    """``predictions.csv``, one row per image, written as each batch finishes."""

    def __init__(self, file: IO[str], prompts: Sequence[Prompt], assignment: dict[str, str]) -> None:
        self.labels = list(dict.fromkeys(p.cls for p in prompts))
        self.assignment = assignment
        self.writer = csv.writer(file)
        self.file = file
        self.writer.writerow(["id", "image", "split", *[f"label:{c}" for c in self.labels],
                              *[f"prob:{p.label}" for p in prompts]])

    def write(self, samples: Sequence[Sample], probs: np.ndarray) -> None:
        for s, row in zip(samples, probs):
            self.writer.writerow([s.id, str(s.image), self.assignment.get(s.id, ""),
                                  *[s.labels.get(c, "") for c in self.labels], *[f"{v:.9g}" for v in row]])
        self.file.flush()


def _fmt_ci(values: dict, key: str) -> str:
    v, ci = values.get(key, float("nan")), values.get(f"{key}_ci")
    if ci and not any(math.isnan(c) for c in ci):
        return f"{v:.4f} ({ci[0]:.3f}-{ci[1]:.3f})"
    return f"{v:.4f}"


def _operating_note(op: dict) -> str:
    if op.get("available"):
        missing = op.get("missing") or {}
        extra = (" No threshold for " + "; ".join(f"{k} ({v})" for k, v in missing.items()) + ".") if missing else ""
        return (f"**F1 / ACC (val. t)**, the headline: each class scored at the threshold that maximises its F1 on "
                f"the {op['source']}, chosen before the test set was seen (thresholds in metrics.json). **Paper "
                "protocol**: the threshold tuned on the test set itself, as the release and the paper do "
                "(optimistic; not an operating point anyone can reuse)." + extra)
    return (f"No operating point from validation data: {op.get('reason', 'not computed')}. F1 / ACC follow the "
            "paper's protocol only (threshold tuned on the test set itself; optimistic).")


def _calibration_section(cal: dict | None, diagram: bool) -> list[str]:
    if not cal or "seen" not in cal:
        return []
    seen, nan = cal["seen"], float("nan")
    rows = [("raw (model)" if "ece_raw" not in seen else "calibrated", seen["ece"], seen["brier"])]
    if "ece_raw" in seen:
        rows.insert(0, ("raw (before calibration)", seen.get("ece_raw", nan), seen.get("brier_raw", nan)))
    source = (f"calibrated on the {cal['source']} ({len(cal['calibrated'])} findings); "
              f"uncalibrated: {', '.join(cal['uncalibrated']) or 'none'}" if cal.get("source")
              else "the model's probabilities are not calibrated (`medklip calibrate`)")
    return ["## Calibration (seen findings, mean over findings)", "",
            markdown_table(["probabilities", "ECE", "Brier"], rows), "",
            f"ECE: {cal['binning']}. Brier: mean squared difference to the 0/1 label. Here {source}.", "",
            *(["![reliability diagram](reliability.png)", ""] if diagram else [])]


def _op_cells(values: dict, has_op: bool) -> list:
    return [values.get("operating_f1", float("nan")), values.get("operating_accuracy", float("nan"))] if has_op else []


def markdown_report(bench: Benchmark, run: EvaluationRun, info: dict) -> str:
    m = run.metrics
    lines = [f"# Zero-shot evaluation: {bench.title}", "",
             f"Model `{info['model']}`; split **{info['split']}** of `{info['split_file']}`; "
             f"{m['images']} images scored, {m['failed_images']} unreadable, {info['label_errors']} label rows "
             "unusable (see errors.jsonl). 95% bootstrap CIs in brackets.", ""]
    if info.get("listed_images_not_found"):
        lines += [f"{info['listed_images_not_found']} of the {info['listed_images']} images of the list were not found "
                  "under the root (each named in errors.jsonl); the rest were scored.", ""]
    if info.get("left_out_by_protocol"):
        lines += ["Left out by the dataset's protocol: " + "; ".join(
            f"{count} rows: {reason}" for reason, count in info["left_out_by_protocol"].items()) + ".", ""]
    cls_rows = m["classification"]
    op = m.get("operating_points", {})
    has_op = bool(op.get("available"))
    nan = float("nan")
    if cls_rows:
        lines += [_operating_note(op), ""]
        head = (["F1 (val. t)", "ACC (val. t)"] if has_op else []) + ["F1 (paper protocol)", "ACC (paper protocol)"]
        by_name = [k for k in cls_rows if k.endswith("(name)")]
        if by_name and len(bench.classes) == 1:  # one unseen disease: the paper's Table 2 layout
            lines += ["## Classification (cf. the paper's Table 2)", "",
                      markdown_table(["prompt", "AUC", *head], [
                          ("direct (name)" if k.endswith("(name)") else "description", _fmt_ci(v, "auc"),
                           *_op_cells(v, has_op), _fmt_ci(v, "f1"), _fmt_ci(v, "accuracy"))
                          for k, v in cls_rows.items()]), ""]
        else:
            macro = m.get("macro", {})
            title = "macro average over the classes" if len(cls_rows) > 1 else next(iter(cls_rows))
            lines += ["## Classification (cf. the paper's Table 1)", "",
                      markdown_table(["dataset", "AUC", *head], [
                          (f"{bench.title} ({title})", macro.get("auc", nan), *_op_cells(macro, has_op),
                           macro.get("f1", nan), macro.get("accuracy", nan))]), ""]
            if len(cls_rows) > 1:
                lines += ["### Per class (cf. the paper's Table 11)", "",
                          markdown_table(["class", "entity", "AUC", *head, *(["val. t"] if has_op else []),
                                          "positives", "images"], [
                              (k, bench.classes.get(k, k), _fmt_ci(v, "auc"), *_op_cells(v, has_op),
                               _fmt_ci(v, "f1"), _fmt_ci(v, "accuracy"),
                               *([v.get("operating_threshold", nan)] if has_op else []), v["positives"], v["n"])
                              for k, v in cls_rows.items()]), ""]
    summaries = [k for k in m if k.startswith("macro") and k != "macro"]
    if summaries and cls_rows:
        names = {"macro_seen": "seen classes (description)", "macro_unseen": "unseen classes (description)",
                 "macro_unseen_name": "unseen classes (name only)"}
        lines += ["### Macro averages by group", "",
                  markdown_table(["group", "AUC", *head], [
                      (names.get(k, k.removeprefix("macro_") + " classes"), m[k]["auc"], *_op_cells(m[k], has_op),
                       m[k]["f1"], m[k]["accuracy"])
                      for k in ["macro", *summaries]]), ""]
    if m.get("grading"):
        for prompt, g in m["grading"].items():
            lines += [f"## Severity grades: mean `{prompt}` probability per grade", "",
                      markdown_table(["grade", "images", "mean probability"], [
                          (k, g["images_per_grade"][k], v) for k, v in g["mean_probability_per_grade"].items()]), ""]
    if m["grounding"]:
        lines += ["## Grounding (cf. the paper's Tables 3 and 4)", "",
                  markdown_table(["prompt", "Pointing Game", "IoU (0.008)", "Dice (0.008)",
                                  *(["IoU (val. t)", "Dice (val. t)", "val. t"] if has_op else []), "IoU (best t)",
                                  "Dice (best t)", "t", "Recall", "Precision", "images"], [
                      (k, _fmt_ci(v, "pointing_game"), v["iou_release"], v["dice_release"],
                       *([v.get("operating_iou", nan), v.get("operating_dice", nan), v.get("operating_threshold", nan)]
                         if has_op else []),
                       v["iou_best"], v["dice_best"], v["best_threshold"], v["recall"], v["precision"], v["images"])
                      for k, v in m["grounding"].items()]), "",
                  "Pointing game: the release's rule (the patch-grid map block-upsampled to the input size; "
                  "a hit when any pixel equal to its maximum lies in the ground-truth mask, resized nearest). "
                  "IoU / Dice (0.008): the release's script, the raw map binarised at > 0.008. IoU / Dice "
                  "(best t): the paper's text, the min-max normalised map binarised at the threshold t "
                  "(0.01 steps) that maximises mean Dice on the test set itself (the paper's protocol); "
                  "IoU / Dice (val. t): at the threshold that maximises it on the validation split. "
                  "Recall / precision: connected regions at t, matched "
                  "to ground-truth regions at IoU 0.1.", ""]
        if any("miou" in v for v in m["grounding"].values()):
            lines += ["### Phrase grounding (cf. BioViL on MS-CXR)", "",
                      markdown_table(["category", "pairs", "Pointing Game", "mIoU", "CNR"], [
                          (k, v["images"], _fmt_ci(v, "pointing_game"), _fmt_ci(v, "miou"), _fmt_ci(v, "cnr"))
                          for k, v in m["grounding"].items()]), "",
                      "mIoU: the normalised map binarised at 0.1, 0.2, 0.3, 0.4 and 0.5, IoU with the phrase's boxes "
                      "averaged over the thresholds; CNR: |mean inside - mean outside| / sqrt(var inside + var "
                      "outside) of the normalised map.", ""]
        overall = m.get("grounding_overall")
        if overall and len(m["grounding"]) > 1:
            lines += [f"Over all {overall['instances']} grounded instances: pointing game "
                      f"**{_fmt_ci(overall, 'pointing_game')}** (macro over findings "
                      f"{overall['pointing_game_macro']:.4f}); Dice (best t), macro {overall['dice_best_macro']:.4f}.",
                      ""]
    lines += _calibration_section(m.get("calibration"), bool(run.reliability))
    if run.curves:
        lines += ["![ROC curves](roc_curves.png)", ""]
    lines += [f"![{p.stem}](heatmaps/{p.name})" for p in info.get("overlays", [])]
    return "\n".join(lines) + "\n"


def write_run(bench: Benchmark, run: EvaluationRun, out_dir: Path, info: dict) -> dict:
    """Write metrics.json, metrics.csv, errors.jsonl, roc_curves.png and report.md into
    ``out_dir`` (predictions.csv and the overlays are written while the run goes); returns the
    metrics with the run info."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {**run.metrics, **info}
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=1))
    write_metrics_csv(metrics, out_dir / "metrics.csv")
    lines = [json.dumps({"kind": "label row", **e}, ensure_ascii=False) for e in bench.errors]
    lines += [json.dumps({"kind": "image", **e}, ensure_ascii=False) for e in run.failures]
    atomic_write_text(out_dir / "errors.jsonl", "".join(line + "\n" for line in lines))
    if run.curves:
        save_roc_curves(run.curves, out_dir / "roc_curves.png", f"Zero-shot ROC: {bench.title}")
    if run.reliability:
        save_reliability_diagram(run.reliability, out_dir / "reliability.png", f"Seen findings: {bench.title}")
    atomic_write_text(out_dir / "report.md", markdown_report(bench, run, {**info, "overlays": run.overlays}))
    return metrics
