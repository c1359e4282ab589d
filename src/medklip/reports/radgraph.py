"""Import RadGraph output (the MIMIC-CXR RadGraph release or ``radgraph`` inference JSON).

RadGraph annotates observations (``OBS-DP`` present, ``OBS-DA`` absent, ``OBS-U`` uncertain)
and anatomy (``ANAT-DP``) with ``located_at`` (observation -> anatomy) and ``modify``
relations. Each observation becomes triplets: its entity (from the report-filter vocabulary;
an unknown finding is ``tail_abnorm_obs``), the positions of the anatomy it is located at
(that anatomy's words plus the anatomy words modifying it, e.g. "left" + "lower" + "lobe"),
and its existence.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from medklip.errors import RadGraphFormatError
from medklip.labels import ABSENT, PRESENT, UNCERTAIN
from medklip.reports.filter import UNSPECIFIED, ReportFilter, Triplet

TAIL_ENTITY = "tail_abnorm_obs"
_EXIST = {
    "OBS-DP": PRESENT, "OBS-DA": ABSENT, "OBS-U": UNCERTAIN,
    "Observation::definitely present": PRESENT, "Observation::definitely absent": ABSENT,
    "Observation::uncertain": UNCERTAIN,
    "Observation::measurement::definitely present": PRESENT,
}
_ANATOMY = {"ANAT-DP", "Anatomy::definitely present", "Anatomy::measurement::definitely present"}


def iter_radgraph_documents(path: str | Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(doc id, document)`` from a RadGraph JSON file ({id: doc}, [doc, ...]) or JSONL.

    A document has ``text`` and ``entities`` (or ``labeler_1`` / ``labeler_2`` with
    ``entities``, as the RadGraph test split: the first labeler is used).
    """
    path = Path(path)
    raw = path.read_text(encoding="utf-8")
    docs: list[tuple[str, Any]] = []
    try:
        data = json.loads(raw)
        docs = list(data.items()) if isinstance(data, Mapping) else [(str(i), d) for i, d in enumerate(data)]
    except json.JSONDecodeError:
        for n, line in enumerate(raw.splitlines(), start=1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RadGraphFormatError(f"{path}:{n}: not JSON ({exc.msg})") from exc
                docs.append((str(obj.get("id", obj.get("doc_key", n))), obj))
    for key, doc in docs:
        if not isinstance(doc, Mapping):
            raise RadGraphFormatError(f"{path}: document {key!r} is not an object")
        if "entities" not in doc and "labeler_1" in doc:
            doc = {**doc, "entities": doc["labeler_1"].get("entities", {})}
        if "entities" not in doc:
            raise RadGraphFormatError(f"{path}: document {key!r} has no 'entities'")
        yield str(doc.get("id", key)), doc


def _char_spans(text: str) -> list[tuple[int, int]]:
    spans, i = [], 0
    for word in text.split():
        i = text.index(word, i)
        spans.append((i, i + len(word)))
        i += len(word)
    return spans


def radgraph_to_triplets(doc: Mapping[str, Any], report_filter: ReportFilter) -> list[Triplet]:
    """Triplets of one RadGraph document."""
    entities: Mapping[str, Mapping[str, Any]] = doc["entities"]
    text = doc.get("text") or ""
    spans = _char_spans(text) if text else []
    modifiers: dict[str, list[str]] = {}
    for eid, ent in entities.items():
        for rel, target in ent.get("relations", []):
            if rel == "modify" and ent.get("label") in _ANATOMY:
                modifiers.setdefault(str(target), []).append(eid)
    out: list[Triplet] = []
    seen: set[tuple[str, str, int]] = set()
    for ent in entities.values():
        exist = _EXIST.get(ent.get("label", ""))
        if exist is None:
            continue
        names = report_filter.entities_of(str(ent.get("tokens", ""))) or [TAIL_ENTITY]
        anatomy_ids = [str(t) for rel, t in ent.get("relations", []) if rel == "located_at"]
        start_ix, end_ix = int(ent.get("start_ix", 0)), int(ent.get("end_ix", 0))
        start = spans[start_ix][0] if start_ix < len(spans) else -1
        end = spans[end_ix][1] if end_ix < len(spans) else -1
        for name in names:
            positions: set[str] = set()
            for aid in anatomy_ids:
                parts = sorted(_with_modifiers(aid, modifiers, entities),
                               key=lambda p: int(entities[p].get("start_ix", 0)))
                phrase = " ".join(str(entities[p].get("tokens", "")) for p in parts)
                positions.update(report_filter.positions_of(phrase, name))
            where = sorted(positions) or [UNSPECIFIED]
            found = [(name, exist)] + report_filter.implied(name, positions, exist)
            for entity, label in found:
                for position in where:
                    if (entity, position, label) not in seen:
                        seen.add((entity, position, label))
                        out.append(Triplet(entity, position, label, 0, start, end))
    return out


def _with_modifiers(aid: str, modifiers: Mapping[str, list[str]], entities: Mapping[str, Any]) -> set[str]:
    """An anatomy entity and every anatomy entity that modifies it, directly or in a chain."""
    found, todo = set(), [aid]
    while todo:
        cur = todo.pop()
        if cur in found or cur not in entities:
            continue
        found.add(cur)
        todo.extend(modifiers.get(cur, []))
    return found
