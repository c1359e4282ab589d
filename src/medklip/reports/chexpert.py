"""Triplets as the CheXpert labeler's output: its 14 observations (1 / 0 / -1 / blank) in its
column order, computed from MedKLIP entities by the mapping in ``data/chexpert.yaml``."""
from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import IO, Any

import yaml

from medklip.labels import ABSENT, PRESENT, UNCERTAIN

NO_FINDING, SUPPORT_DEVICES, CARDIOMEGALY = "No Finding", "Support Devices", "Cardiomegaly"


@dataclass(frozen=True)
class ChexpertMap:
    columns: tuple[str, ...]
    rules: dict[str, list[tuple[str, frozenset[str]]]]  # entity -> [(observation, positions or empty = any)]
    chf: frozenset[str]


@lru_cache(maxsize=1)
def chexpert_map() -> ChexpertMap:
    """The packaged entity -> observation mapping."""
    data = yaml.safe_load(resources.files("medklip.reports").joinpath("data/chexpert.yaml").read_text())
    rules: dict[str, list[tuple[str, frozenset[str]]]] = {}
    for observation, entries in data["observations"].items():
        for entry in entries:
            rules.setdefault(entry["entity"], []).append((observation, frozenset(entry.get("at", []))))
    return ChexpertMap(tuple(data["columns"]), rules, frozenset(data["chf_makes_cardiomegaly_uncertain"]))


def _field(triplet: Any, name: str) -> Any:
    return triplet[name] if isinstance(triplet, dict) else getattr(triplet, name)


def aggregate(values: list[int]) -> int:
    """The labeler's rule for several mentions of one observation."""
    kinds = set(values)
    if PRESENT in kinds:
        return PRESENT
    if UNCERTAIN in kinds:
        return UNCERTAIN
    return ABSENT


def chexpert_labels(triplets: Iterable[Any]) -> dict[str, int | None]:
    """Observation -> 1 / 0 / -1, or None (blank) when the report does not mention it."""
    mapping = chexpert_map()
    found: dict[str, list[int]] = {}
    for t in triplets:
        entity, position, exist = _field(t, "entity"), _field(t, "position"), int(_field(t, "exist"))
        if exist not in (PRESENT, ABSENT, UNCERTAIN):
            continue
        for observation, where in mapping.rules.get(entity, []):
            if not where or position in where:
                found.setdefault(observation, []).append(exist)
        if entity in mapping.chf and exist in (PRESENT, UNCERTAIN):
            found.setdefault(CARDIOMEGALY, []).append(UNCERTAIN)
    labels: dict[str, int | None] = {c: aggregate(found[c]) if c in found else None for c in mapping.columns}
    finding = any(v in (PRESENT, UNCERTAIN) for c, v in labels.items() if c not in (NO_FINDING, SUPPORT_DEVICES))
    labels[NO_FINDING] = None if finding else PRESENT
    return labels


class ChexpertWriter:
    """The labeler's CSV: ``Reports`` then the 14 observations (``1.0`` / ``0.0`` / ``-1.0`` / blank),
    and the report's id as a last column."""

    def __init__(self, out: IO[str]) -> None:
        self.columns = chexpert_map().columns
        self.writer = csv.writer(out, lineterminator="\n")
        self.writer.writerow(["Reports", *self.columns, "id"])

    def write(self, report_id: str, text: str, triplets: Iterable[Any]) -> None:
        labels = chexpert_labels(triplets)
        self.writer.writerow([text, *["" if labels[c] is None else f"{float(labels[c]):.1f}"  # type: ignore[arg-type]
                                      for c in self.columns], report_id])
