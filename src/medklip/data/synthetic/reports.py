"""Radiology reports for synthetic studies: MIMIC-like sections, varied phrasing, positions in
words, hedged mentions, negated absent findings and normal statements.

The generator never names covid-19: its studies are described by their appearance only.
"""
from __future__ import annotations

import numpy as np

from medklip.data.synthetic.findings import Finding

ZONE_WORDS = {
    "upper": ["upper lung", "upper lung zone", "upper zone"],
    "mid": ["mid lung", "midlung", "mid lung zone"],
    "lower": ["lower lung", "lung base", "lower lung zone"],
}
LOBE_WORDS = {
    "upper_right_lobe": "right upper lobe", "middle_right_lobe": "right middle lobe",
    "lower_right_lobe": "right lower lobe", "upper_left_lobe": "left upper lobe", "lower_left_lobe": "left lower lobe",
}
INDICATIONS = ["Cough.", "Shortness of breath.", "Chest pain.", "Fever, evaluate for pneumonia.",
               "___-year-old with dyspnea, eval for effusion.", "Follow-up.", "Preoperative evaluation.",
               "Line placement.", "History of CHF, eval for edema."]


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _where(f: Finding, rng: np.random.Generator) -> str:
    return f"{f.side} {_pick(rng, ZONE_WORDS[f.zone or 'lower'])}"


def noun_phrase(f: Finding, rng: np.random.Generator) -> str:
    """What the finding is and where, without an article: 'small left pleural effusion'."""
    k = f.kind
    if k == "effusion":
        return _pick(rng, [f"{f.size} {f.side} pleural effusion", f"{f.size} {f.side}-sided pleural effusion",
                           f"{f.size} {f.side} effusion with blunting of the {f.side} costophrenic angle"])
    if k == "opacity" and f.side == "both":
        return _pick(rng, ["bilateral hazy opacities", "patchy hazy opacities in both lungs",
                           "faint bilateral airspace opacities"])
    if k == "opacity":
        return _pick(rng, [f"hazy opacity in the {_where(f, rng)}", f"ill-defined {_where(f, rng)} opacity",
                           f"faint airspace opacity in the {_where(f, rng)}"])
    if k == "consolidation":
        return _pick(rng, [f"dense consolidation in the {_where(f, rng)}",
                           f"{_where(f, rng)} consolidation with air bronchograms",
                           f"focal consolidation in the {_where(f, rng)}"])
    if k == "pneumonia":
        lobe = LOBE_WORDS[f.positions[0]]
        return _pick(rng, [f"{lobe} pneumonia", f"patchy multifocal {lobe} pneumonia", f"pneumonia in the {lobe}"])
    if k == "atelectasis":
        if f.side == "both":
            return _pick(rng, ["bibasilar atelectasis", "bibasilar subsegmental atelectasis", "atelectasis at both bases"])
        return _pick(rng, [f"plate-like atelectasis at the {f.side} base", f"{f.side} basilar subsegmental atelectasis",
                           f"linear atelectasis in the {f.side} lung base"])
    if k == "pneumothorax":
        return _pick(rng, [f"{f.size} {f.side} apical pneumothorax", f"{f.size} {f.side} pneumothorax",
                           f"{f.side} pneumothorax with a visible visceral pleural edge at the apex"])
    if k == "cardiomegaly":
        return _pick(rng, [f"{f.size} cardiomegaly", "enlargement of the cardiac silhouette", "cardiomegaly"])
    if k == "nodule":
        return _pick(rng, [f"{f.detail['cm'] / 10:.1f} cm nodule in the {_where(f, rng)}",
                           f"{_where(f, rng)} pulmonary nodule", f"small rounded nodule in the {_where(f, rng)}"])
    if k == "mass":
        return _pick(rng, [f"{f.detail['cm']:.0f} cm mass in the {_where(f, rng)}", f"large {_where(f, rng)} mass",
                           f"lobulated mass in the {_where(f, rng)}"])
    if k == "edema":
        return _pick(rng, ["bilateral perihilar pulmonary edema",
                           "moderate pulmonary edema with Kerley B lines", "interstitial pulmonary edema"])
    if k == "et_tube":
        return _pick(rng, [f"endotracheal tube with the tip {f.detail['cm']:.1f} cm above the carina",
                           "endotracheal tube terminating in the trachea"])
    if k == "ng_tube":
        return _pick(rng, ["nasogastric tube with the tip in the stomach", "enteric tube coursing into the stomach"])
    if k in ("picc", "central_line"):
        where = "cavoatrial junction" if f.positions == ["cavoatrial_junction"] else "SVC"
        if k == "picc":
            return _pick(rng, [f"right PICC line with the tip in the {where}", f"right arm PICC line terminating in the {where}"])
        return _pick(rng, [f"right internal jugular central line with the tip in the {where}",
                           f"right IJ central venous line terminating at the {where}"])
    if k == "pacemaker":
        return _pick(rng, ["left chest wall pacemaker with leads in the right atrium and right ventricle",
                           "dual-lead pacemaker, leads in the right atrium and right ventricle"])
    if k == "fracture":
        return _pick(rng, [f"fracture of the {f.side} {f.detail['rib']}th rib",
                           f"{f.side} {f.detail['rib']}th rib fracture"])
    if k == "hyperinflation":
        if f.detail.get("emphysema"):
            return _pick(rng, ["hyperinflated lungs with emphysema", "hyperexpanded lungs and emphysema"])
        return _pick(rng, ["hyperinflated lungs with flattened hemidiaphragms", "hyperinflation of the lungs"])
    if k == "covid-19":
        return _pick(rng, ["bilateral peripheral lower zone ground-glass opacities",
                           "patchy peripheral ground-glass opacities in both lower lungs"])
    raise ValueError(f"no report phrasing for finding {k!r}")


def sentence(f: Finding, rng: np.random.Generator, hedged: bool) -> str:
    np_ = noun_phrase(f, rng)
    if hedged:
        frame = _pick(rng, ["Possible {np}.", "{Np} cannot be excluded.", "This may represent {np}.",
                            "Questionable {np}."])
    else:
        frame = _pick(rng, ["{Np}.", "There is {a} {np}.", "{Np} is seen.", "{Np} is present."])
    article = "an" if np_[0] in "aeiou" else "a"
    return frame.format(np=np_, Np=np_[0].upper() + np_[1:], a=article)


NEGATIONS = {
    "pneumothorax": ["No pneumothorax.", "There is no pneumothorax.", "No evidence of pneumothorax."],
    "effusion": ["No pleural effusion.", "There is no pleural effusion.", "No effusion is seen."],
    "consolidation": ["No focal consolidation.", "There is no focal consolidation."],
    "pneumonia": ["No evidence of pneumonia.", "No findings to suggest pneumonia."],
    "edema": ["No pulmonary edema.", "There is no pulmonary edema."],
    "cardiomegaly": ["Heart size is normal.", "The heart is not enlarged.", "The cardiac silhouette is normal in size."],
    "fracture": ["No acute rib fracture.", "No displaced fracture is seen."],
    "mass": ["No pulmonary mass.", "No mass is seen."],
    "nodule": ["No pulmonary nodules.", "No suspicious nodule."],
    "atelectasis": ["No atelectasis."],
    "opacity": ["No focal airspace opacity.", "No focal opacity is seen.", "There is no airspace opacity."],
    "hyperinflation": ["The lungs are not hyperinflated.", "No evidence of hyperinflation."],
    "pacemaker": ["No pacemaker.", "No pacemaker or other cardiac device."],
    "tubes": ["No endotracheal or enteric tube.", "No endotracheal or nasogastric tube is seen."],
    "lines": ["No central venous line.", "No central line or PICC."],
}
"""Negated absent findings. Every seen finding has some, so that each has negative examples
under the paper's loss (which leaves unmentioned entities out)."""
NEGATION_GROUPS = {"tubes": {"et_tube", "ng_tube"}, "lines": {"picc", "central_line"}}
"""Negation keys that stand for several finding kinds: said only when none of them is present."""
_LUNG_KINDS = {"effusion", "opacity", "consolidation", "pneumonia", "atelectasis", "pneumothorax", "nodule",
               "mass", "edema", "covid-19"}


def write_report(findings: list[Finding], rng: np.random.Generator, hedge_rate: float = 0.1) -> tuple[str, list[bool]]:
    """The report text and, per finding, whether it was hedged (uncertain in the report)."""
    hedged = [bool(rng.random() < hedge_rate) and f.kind not in ("et_tube", "ng_tube", "picc", "central_line",
                                                                  "pacemaker") for f in findings]
    body = [sentence(f, rng, h) for f, h in zip(findings, hedged)]
    present = {f.kind for f in findings}
    absent = [k for k in NEGATIONS if not NEGATION_GROUPS.get(k, {k}) & present]
    for k in rng.permutation(absent)[: int(rng.integers(4, 9))]:
        body.append(_pick(rng, NEGATIONS[str(k)]))
    if not present & _LUNG_KINDS:
        body.insert(0, _pick(rng, ["The lungs are clear.", "Lungs are clear bilaterally.",
                                   "The lungs are well expanded and clear."]))
    if "fracture" not in present and rng.random() < 0.4:
        body.append("The osseous structures are intact.")
    order = rng.permutation(len(body))
    findings_text = " ".join(body[i] for i in order)
    if findings:
        impression = " ".join(sentence(f, rng, h) for f, h in zip(findings, hedged))
    else:
        impression = _pick(rng, ["No acute cardiopulmonary process.", "No acute cardiopulmonary abnormality.",
                                 "Normal chest radiograph."])
    comparison = _pick(rng, ["None.", "Chest radiograph from ___."])
    text = (f"EXAMINATION: CHEST (PA AND LAT)\n\nINDICATION: {_pick(rng, INDICATIONS)}\n\n"
            f"COMPARISON: {comparison}\n\nFINDINGS:\n{findings_text}\n\nIMPRESSION:\n{impression}\n")
    return text, hedged
