"""The model card (``README.md``) written into every saved model folder."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from medklip.models.medklip import MedKLIP

SYNTHETIC_NOTICE = ("trained on synthetic images (medklip's embedded world) - not meaningful on real "
                    "radiographs")
RESEARCH_USE = "Research use only; not for clinical decisions."


def trained_on_synthetic(training: dict[str, Any] | None) -> bool:
    """Whether a model's training record says it saw only the synthetic world."""
    return training is not None and str(training.get("data", "")).startswith("synthetic")


def _table(rows: list[tuple[str, Any]]) -> str:
    return "\n".join(["| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]])


def model_card(model: MedKLIP) -> str:
    """Markdown: architecture, text encoder, preprocessing, training data / config / metrics,
    intended use and limitations."""
    c, text, pre = model.config, model.text_encoder_info or {}, model.preprocess_cfg
    training = model.training_info or {}
    h, w = c.patch_grid
    trunk = "local CNN (35 px seen per patch feature)" if c.backbone == "local" else f"{c.backbone} up to layer3"
    lines = [
        "---", "library_name: medklip", "tags: [medklip, chest-x-ray, zero-shot, grounding]", "---", "",
        "# MedKLIP model", "",
        f"> {RESEARCH_USE}", "",
    ]
    if trained_on_synthetic(training):
        lines += [f"> **Note:** {SYNTHETIC_NOTICE}.", ""]
    lines += [
        "MedKLIP (Wu et al., ICCV 2023): image patches attended by entity-description queries give the "
        "existence of each finding and a grounding heatmap. Load with "
        "`medklip.create_model(PATH_OR_REPO)`.", "",
        "## Architecture", "",
        _table([("image encoder", f"{trunk}, {c.image_size} px input, {h}x{w} patches"),
                ("fusion", f"{c.num_layers} decoder layer(s), d_model {c.d_model}, {c.num_heads} heads, "
                           f"feed-forward {c.dim_feedforward}"),
                ("queries", f"{len(model.entity_names)} entity descriptions"),
                ("positions", f"{len(model.position_names)} position prompts"),
                ("initialisation", c.init if c.query_init == "release" else f"{c.init}, query projection: {c.query_init}")]), "",
        "## Text encoder", "",
        _table([("encoder", text.get("name", "unknown")), ("revision", text.get("revision") or "local files"),
                ("pooling", text.get("pooling", "cls")),
                ("special tokens", text.get("special_tokens", "cls-sep")),
                ("max_length (stored embeddings)", text.get("max_length", "")),
                ("max_length (added queries)", text.get("query_max_length", ""))]), "",
        "## Preprocessing", "",
        _table([("profile", pre.profile), ("image size", pre.image_size), ("max pixels", pre.max_pixels)]), "",
        "## Training", "",
        _table([("data", training.get("data", "not recorded")),
                ("description", training.get("description", ""))]), "",
    ]
    if training.get("config"):
        lines += ["<details><summary>resolved configuration</summary>", "", "```json",
                  json.dumps(training["config"], indent=1), "```", "</details>", ""]
    if training.get("metrics"):
        lines += ["## Metrics", "", _table([(k, v) for k, v in training["metrics"].items()]), ""]
    cal = model.calibration
    if cal:
        lines += ["## Calibration", "",
                  _table([("method", cal.get("method", "")), ("fitted on", cal.get("data", "")),
                          ("when", cal.get("fitted", "")), ("findings", len(cal.get("parameters", {}))),
                          ("ECE before / after (seen findings, mean)",
                           f"{cal.get('ece_before', float('nan')):.4f} / {cal.get('ece_after', float('nan')):.4f} "
                           f"({cal.get('binning', '')})")]), "",
                  "Probabilities of the findings listed in `config.json` (`calibration.parameters`) are "
                  "calibrated; any other query (an added description, a name the model was not trained on) "
                  "is not.", ""]
    lines += [
        "## Intended use and limitations", "",
        f"- {RESEARCH_USE}",
        ("- Probabilities are calibrated on the data named above for the listed findings only; elsewhere "
         "they are not, and they depend on the wording of the descriptions." if cal else
         "- Zero-shot probabilities are not calibrated (see `medklip calibrate`) and depend on the wording of "
         "the descriptions."),
        "- Heatmaps are cross-attention, not segmentation; they are coarse (one value per patch).",
    ]
    if trained_on_synthetic(training):
        lines.append(f"- {SYNTHETIC_NOTICE[0].upper()}{SYNTHETIC_NOTICE[1:]}.")
    return "\n".join(lines) + "\n"
