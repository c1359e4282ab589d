"""The report filter's vocabulary (``data/vocabulary.yaml``) compiled into phrase matchers."""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from medklip.errors import KnowledgeBaseFileError

_BRACKET = re.compile(r"\[([^\]]*)\]")
WORD = re.compile(r"[a-z0-9]+|\?")


def expand(phrase: str) -> list[str]:
    """``"opacit[y|ies]"`` -> ``["opacity", "opacities"]`` (every bracket is expanded)."""
    m = _BRACKET.search(phrase)
    if not m:
        return [phrase]
    out = []
    for alt in m.group(1).split("|"):
        out.extend(expand(phrase[: m.start()] + alt + phrase[m.end():]))
    return out


def phrase_tokens(phrase: str) -> tuple[str, ...]:
    """Tokens of a vocabulary phrase, split the way report text is split."""
    return tuple(WORD.findall(phrase.lower().replace("'", "")))


class PhraseMatcher:
    """Greedy longest-match of token phrases; a phrase can carry several payloads."""

    def __init__(self) -> None:
        self._by_first: dict[str, list[tuple[tuple[str, ...], list[Any]]]] = {}
        self._index: dict[tuple[str, ...], list[Any]] = {}

    def add(self, phrase: str, payload: Any) -> None:
        for variant in expand(phrase):
            toks = phrase_tokens(variant)
            if not toks:
                continue
            if toks in self._index:
                if payload not in self._index[toks]:
                    self._index[toks].append(payload)
                continue
            payloads = [payload]
            self._index[toks] = payloads
            bucket = self._by_first.setdefault(toks[0], [])
            bucket.append((toks, payloads))
            bucket.sort(key=lambda item: -len(item[0]))

    def lookup(self, tokens: tuple[str, ...]) -> list[Any]:
        """Payloads of exactly this token phrase (empty if unknown)."""
        return self._index.get(tokens, [])

    def __contains__(self, phrase: str) -> bool:
        return phrase_tokens(phrase) in self._index

    def find(self, tokens: list[str]) -> list[tuple[int, int, list[Any]]]:
        """Non-overlapping ``(start, end, payloads)`` matches, leftmost-longest."""
        by_first = self._by_first
        out = []
        pos = 0  # first token not yet covered by a match
        for i in [i for i, t in enumerate(tokens) if t in by_first]:
            if i < pos:
                continue
            for toks, payloads in by_first[tokens[i]]:
                k = len(toks)
                if k == 1 or tuple(tokens[i : i + k]) == toks:
                    out.append((i, i + k, payloads))
                    pos = i + k
                    break
        return out


@dataclass(frozen=True)
class Implication:
    when: str
    at: frozenset[str]
    then: str
    exist: Mapping[int, int]


@dataclass
class Vocabulary:
    """Compiled vocabulary: one matcher for observations, cues and terminators, one for anatomy."""

    entities: list[str]
    observation_matcher: PhraseMatcher
    position_matcher: PhraseMatcher
    predicates: frozenset[str]
    position_table: dict[str, dict[str, str]]
    side_only_anatomy: dict[str, str]
    generic_anatomy: frozenset[str]
    implications: list[Implication]
    conditional: dict[str, frozenset[str]] = field(default_factory=dict)
    """entity -> positions it needs when it came from a conditional phrase."""

    @classmethod
    def load(cls, path: str | Path | None = None) -> Vocabulary:
        """The packaged vocabulary, or a user's file in the same layout."""
        if path is None:
            text = resources.files("medklip.reports").joinpath("data/vocabulary.yaml").read_text("utf-8")
            source = "packaged vocabulary"
        else:
            text = Path(path).read_text("utf-8")
            source = str(path)
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            return cls.from_dict(yaml.load(text, Loader=loader))
        except (KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
            raise KnowledgeBaseFileError(f"{source}: not a valid report-filter vocabulary ({exc})") from exc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vocabulary:
        obs = PhraseMatcher()
        # cues first: a phrase that is both a cue and an entity word is kept as a cue
        for phrase in data.get("pseudo_cues", []):
            obs.add(phrase, ("pseudo", None))
        for kind in ("negation", "uncertainty"):
            for direction, phrases in data[kind].items():
                for phrase in phrases:
                    obs.add(phrase, ("cue", (kind, direction)))
        entities = list(data["entities"])
        for entity, phrases in data["entities"].items():
            for phrase in phrases:
                obs.add(phrase, ("entity", entity))
        conditional = {}
        for entity, spec in data.get("conditional_entities", {}).items():
            conditional[entity] = frozenset(spec["at"])
            for phrase in spec["phrases"]:
                obs.add(phrase, ("conditional", entity))
        pos = PhraseMatcher()
        for side, phrases in data["sides"].items():
            for phrase in phrases:
                pos.add(phrase, ("side", side))
        for anatomy, phrases in data["anatomy"].items():
            for phrase in phrases:
                pos.add(phrase, ("anatomy", anatomy))
        for phrase in data.get("terminators", []):
            obs.add(phrase, ("terminator", None))
        predicates = frozenset(t for p in data.get("predicates", []) for v in expand(p) for t in phrase_tokens(v))
        implications = [
            Implication(i["when"], frozenset(i.get("at", [])), i["then"],
                        {int(k): int(v) for k, v in i.get("exist", {}).items()})
            for i in data.get("implications", [])
        ]
        return cls(
            entities=entities,
            observation_matcher=obs,
            position_matcher=pos,
            predicates=predicates,
            position_table={k: dict(v) for k, v in data["position_table"].items()},
            side_only_anatomy=dict(data.get("side_only_anatomy", {})),
            generic_anatomy=frozenset(data.get("generic_anatomy", [])),
            implications=implications,
            conditional=conditional,
        )

    def check_against(self, entity_names: Iterable[str], position_names: Iterable[str]) -> None:
        """Every entity and position the vocabulary can produce exists in the knowledge base."""
        entity_names, position_names = set(entity_names), set(position_names)
        bad = sorted(set(self.entities) - entity_names)
        bad += sorted({i.then for i in self.implications} - entity_names)
        produced = {p for table in self.position_table.values() for p in table.values()}
        bad += sorted(produced - position_names - {"unspecified"})
        if bad:
            raise KnowledgeBaseFileError(f"vocabulary names unknown entities/positions: {', '.join(bad)}")
