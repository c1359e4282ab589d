"""Report text: sections (FINDINGS / IMPRESSION), sentences and word tokens with character spans."""
from __future__ import annotations

import re
from dataclasses import dataclass

KEEP_SECTIONS = frozenset({
    "FINDINGS", "FINDING", "IMPRESSION", "IMPRESSIONS", "CONCLUSION", "CONCLUSIONS",
    "FINDINGS AND IMPRESSION", "IMPRESSION AND FINDINGS", "FINDINGS IMPRESSION", "OPINION",
    "SUMMARY", "PROVISIONAL FINDINGS IMPRESSION", "PFI", "INTERPRETATION", "RESULT", "RESULTS",
})
IGNORE_SECTIONS = frozenset({
    "INDICATION", "INDICATIONS", "HISTORY", "CLINICAL HISTORY", "CLINICAL INDICATION",
    "CLINICAL INFORMATION", "CLINICAL DATA", "REASON FOR EXAM", "REASON FOR EXAMINATION",
    "REASON FOR STUDY", "REASON FOR REFERRAL", "COMPARISON", "COMPARISONS", "TECHNIQUE",
    "EXAMINATION", "EXAM", "PROCEDURE", "STUDY", "TYPE OF EXAMINATION", "NOTIFICATION",
    "RECOMMENDATION", "RECOMMENDATIONS", "WET READ", "FINAL REPORT", "ADDENDUM", "DATE",
    "REFERRING PHYSICIAN", "PATIENT", "CLINICAL NOTES", "HX", "CC", "VIEWS", "VIEW", "PRIOR",
    "PRIORS", "CLINICAL", "REPORT", "STATUS", "PROVIDER", "TIME",
})
_HEADER = re.compile(r"(?:^|(?<=[.!?\n]))[ \t]*([A-Za-z][A-Za-z /&()-]{0,40}?)[ \t]*:", re.M)
_SPACES = re.compile(r"[\s/&()-]+")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")

TOKEN = re.compile(r"\d+(?:\.\d+)+|[a-z0-9]+(?:['\u2019][a-z]+)?|[.;:,()?/!]|\n[ \t]*\n|\n(?=[ \t]*\d+[.)])")
ABBREVIATIONS = frozenset({"vs", "dr", "approx", "e", "g", "i", "mr", "mrs", "st", "fig", "cf", "etc", "ie", "eg"})
BREAKS = frozenset({".", "!"})


@dataclass(frozen=True)
class Section:
    name: str  # upper case; "" for text before any header
    start: int
    end: int


def split_sections(text: str) -> list[Section]:
    """Sections by their headers (known header names only; the preamble is section "").

    A blank line after some text ends an INDICATION-like section: what follows is an
    unnamed section (in MIMIC-CXR the last paragraph is often a header-less impression).
    """
    marks: list[tuple[int, int, str]] = []
    for m in _HEADER.finditer(text):
        name = _SPACES.sub(" ", m.group(1).upper()).strip()
        if name in KEEP_SECTIONS or name in IGNORE_SECTIONS:
            marks.append((m.start(1), m.end(), name))
    sections = []
    prev_end, prev_name = 0, ""
    for start, body, name in marks + [(len(text), len(text), "")]:
        if prev_name in IGNORE_SECTIONS:
            for gap in _BLANK_LINE.finditer(text, prev_end, start):
                if text[prev_end:gap.start()].strip():
                    sections.append(Section(prev_name, prev_end, gap.start()))
                    prev_end, prev_name = gap.end(), ""
                    break
        sections.append(Section(prev_name, prev_end, start))
        prev_end, prev_name = body, name
    return [s for s in sections if text[s.start:s.end].strip()]


def select_sections(text: str) -> list[Section]:
    """FINDINGS and IMPRESSION; else the last section that is not INDICATION-like; else nothing.

    A report with no recognised header at all is one section: the whole text.
    """
    sections = split_sections(text)
    kept = [s for s in sections if s.name in KEEP_SECTIONS]
    if kept:
        return kept
    usable = [s for s in sections if s.name not in IGNORE_SECTIONS]
    return usable[-1:]


@dataclass
class Sentence:
    tokens: list[str]
    spans: list[tuple[int, int]]


def sentences(text: str, start: int = 0, end: int | None = None) -> list[Sentence]:
    """Lower-cased word tokens of ``text[start:end]`` split into sentences; spans index ``text``.

    Line breaks inside a sentence are spaces; a blank line or a numbered-list item starts a
    new sentence; de-identification masks (``___``) are dropped, ``XXXX`` is a plain word.
    """
    end = len(text) if end is None else end
    chunk = text[start:end]
    lowered = chunk.lower()
    if len(lowered) != len(chunk):  # a rare character whose lower case has another length
        lowered = "".join(c.lower()[:1] or c for c in chunk)
    matches = list(TOKEN.finditer(lowered))
    toks = [m.group() for m in matches]
    if "'" in lowered or "\u2019" in lowered:
        toks = [t.replace("'", "").replace("\u2019", "") for t in toks]
    out: list[Sentence] = []
    first = 0
    for i in [i for i, t in enumerate(toks) if t in BREAKS or t[0] == "\n"]:
        if toks[i] == "." and i > first and toks[i - 1] in ABBREVIATIONS:
            continue
        if i > first:
            out.append(Sentence(toks[first:i], [(start + m.start(), start + m.end()) for m in matches[first:i]]))
        first = i + 1
    if first < len(toks):
        out.append(Sentence(toks[first:], [(start + m.start(), start + m.end()) for m in matches[first:]]))
    return [s for s in out if any(t[0].isalpha() for t in s.tokens)]
