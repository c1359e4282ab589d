from __future__ import annotations

from medklip.reports.text import select_sections, sentences, split_sections


def test_findings_and_impression_are_kept() -> None:
    text = "INDICATION: Positive TB test\nFINDINGS: The heart is normal.\nIMPRESSION: Normal chest x-XXXX."
    names = [s.name for s in select_sections(text)]
    assert names == ["FINDINGS", "IMPRESSION"]


def test_mimic_layout() -> None:
    text = ("                                 FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n\n"
            " INDICATION:  ___F with cough  // eval for pneumonia\n\n TECHNIQUE:  Chest PA and lateral\n\n"
            " COMPARISON:  None.\n\n FINDINGS:\n \n The lungs are clear.\n \n IMPRESSION:\n \n No acute process.\n")
    kept = select_sections(text)
    assert [s.name for s in kept] == ["FINDINGS", "IMPRESSION"]
    assert "pneumonia" not in "".join(text[s.start:s.end] for s in kept)


def test_fallback_last_usable_section() -> None:
    text = "HISTORY: cough\n\nWET READ: none\n\nThe lungs are clear."
    [only] = select_sections(text)
    assert "lungs are clear" in text[only.start:only.end]
    assert select_sections("INDICATION: eval for pneumonia") == []
    [whole] = select_sections("No acute disease.")
    assert (whole.start, whole.end) == (0, len("No acute disease."))


def test_header_must_be_known() -> None:
    # "Note: ..." and ratios with colons are not section headers
    assert [s.name for s in split_sections("Cardiothoracic ratio: 0.6. Findings: clear lungs.")] == ["", "FINDINGS"]


def test_sentences_spans_and_breaks() -> None:
    text = "Small left\neffusion. 1. No pneumothorax; 2.5 cm nodule.\n\nHeart normal"
    sents = sentences(text)
    assert [s.tokens for s in sents] == [
        ["small", "left", "effusion"],
        ["no", "pneumothorax", ";", "2.5", "cm", "nodule"],
        ["heart", "normal"],
    ]
    s = sents[0]
    assert text[s.spans[2][0]:s.spans[2][1]] == "effusion"


def test_abbreviations_and_apostrophes() -> None:
    [s] = sentences("Atelectasis vs. pneumonia can't be excluded.")
    assert s.tokens == ["atelectasis", "vs", ".", "pneumonia", "cant", "be", "excluded"]
