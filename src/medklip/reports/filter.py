"""The report filter: radiology report -> {entity, position, exist} triplets.

Rule-based and offline: sections -> sentences -> vocabulary matches (entities, existence
cues, anatomy) -> existence by cue scope -> positions by clause. All words live in
``data/vocabulary.yaml``; this module only holds the mechanics.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path

from medklip.labels import ABSENT, PRESENT, UNCERTAIN
from medklip.reports.text import select_sections, sentences
from medklip.reports.vocabulary import Vocabulary

UNSPECIFIED = "unspecified"
HARD_BOUNDARIES = frozenset({";", ":", "(", ")"})
SOFT_BOUNDARIES = frozenset({",", "and"})
ALWAYS_CONTINUE = frozenset({"or", "nor", "/"})
SINGULAR_VERBS = frozenset({"is", "was", "has"})
RELATIVE_PRONOUNS = frozenset({"which", "who"})
CHUNK_BOUNDARIES = frozenset({",", "and", "with", "without"})
COORDINATORS = frozenset({"and", "or"})
REFERENCE_OPENERS = frozenset({"compared", "relative"})
ZONE_WORDS = frozenset({"upper", "lower", "middle", "mid"})
_LABEL = {"negation": ABSENT, "uncertainty": UNCERTAIN}


def _relative_clause(toks: list[str], comma: int) -> int:
    """The opening comma of the relative clause that the comma at ``comma`` closes (", which ... ,"
    / ", who ... ,"), or -1: in "atelectasis, which is mild, is not excluded" the cue's subject lies
    before the clause."""
    if toks[comma] != ",":
        return -1
    for k in range(comma - 1, 0, -1):
        if toks[k] == ",":
            return k if toks[k + 1] in RELATIVE_PRONOUNS else -1
        if toks[k] in SOFT_BOUNDARIES or toks[k] in ALWAYS_CONTINUE:
            return -1
    return -1


@dataclass(frozen=True)
class Triplet:
    """One extracted fact. ``start``/``end`` index the report text (the entity mention)."""

    entity: str
    position: str
    exist: int
    sentence: int
    start: int
    end: int

    def to_dict(self) -> dict:
        return {"entity": self.entity, "position": self.position, "exist": self.exist,
                "sentence": self.sentence, "start": self.start, "end": self.end}


@dataclass
class _Cue:
    start: int
    end: int
    label: int
    scope_start: int
    scope_end: int
    direction: str


class ReportFilter:
    """Extract triplets from reports. Thread-safe after construction; cheap to pickle.

    Args:
        vocabulary: a :class:`Vocabulary` or a path to a vocabulary YAML (default: packaged).
    """

    def __init__(self, vocabulary: Vocabulary | str | Path | None = None, cache_size: int = 200_000) -> None:
        self.vocab = vocabulary if isinstance(vocabulary, Vocabulary) else Vocabulary.load(vocabulary)
        self.cache_size = cache_size
        self._cache: dict[tuple[str, ...], list[tuple[str, str, int, int, int]]] = {}
        """sentence tokens -> (entity, position, exist, first token, end token): reports repeat
        the same sentences ("No pneumothorax."), so each distinct sentence is analysed once."""

    def __getstate__(self) -> dict:  # worker processes start with an empty cache
        return {"vocab": self.vocab, "cache_size": self.cache_size, "_cache": {}}

    # ------------------------------------------------------------------ public
    def extract(self, text: str) -> list[Triplet]:
        """Triplets of one report (FINDINGS + IMPRESSION, or the fallback section)."""
        out: list[Triplet] = []
        seen: set[tuple] = set()
        index = 0
        for section in select_sections(text):
            for sent in sentences(text, section.start, section.end):
                key = tuple(sent.tokens)
                found = self._cache.get(key)
                if found is None:
                    found = self._sentence(sent.tokens)
                    if len(self._cache) >= self.cache_size:
                        self._cache.clear()
                    self._cache[key] = found
                spans = sent.spans
                for entity, position, exist, s, e in found:
                    dedup = (entity, position, exist)
                    if (dedup, index) not in seen:
                        seen.add((dedup, index))
                        out.append(Triplet(entity, position, exist, index, spans[s][0], spans[e - 1][1]))
                index += 1
        return out

    # ---------------------------------------------------------------- internals
    def _sentence(self, toks: list[str]) -> list[tuple[str, str, int, int, int]]:
        """(entity, position, exist, first token, end token) for one sentence."""
        mentions: list[tuple[int, int, str, bool]] = []  # start, end, entity, conditional
        hard: list[int] = []  # clause boundaries
        cues: list[tuple[int, int, str, str]] = []  # start, end, kind, direction
        for s, e, payloads in self.vocab.observation_matcher.find(toks):
            for kind, value in payloads:
                if kind == "entity":
                    mentions.append((s, e, value, False))
                elif kind == "conditional":
                    mentions.append((s, e, value, True))
                elif kind == "cue":
                    cues.append((s, e, value[0], value[1]))
                elif kind == "terminator":
                    hard.append(s)
        if not mentions:
            return []
        hard.extend(i for i, t in enumerate(toks) if t in HARD_BOUNDARIES)
        hard.sort()
        scopes = [self._scope(toks, hard, *c) for c in cues]
        for cue in scopes:  # a two-sided cue reaches back over one mention only
            if cue.direction == "both":
                before = [m[0] for m in mentions if m[1] <= cue.start]
                if len(before) > 1:
                    cue.scope_start = max(cue.scope_start, sorted(before)[-2] + 1)
        positions = self._chunk_positions(toks, hard, mentions)
        out: list[tuple[str, str, int, int, int]] = []
        for (s, e, entity, conditional), pos in zip(mentions, positions):
            if conditional and not (pos & self.vocab.conditional[entity]):
                continue
            exist = self._existence(s, e, scopes)
            where = sorted(pos) or [UNSPECIFIED]
            out.extend((entity, position, exist, s, e) for position in where)
            for implied, implied_exist in self.implied(entity, pos, exist):
                out.extend((implied, position, implied_exist, s, e) for position in where)
        return out

    def implied(self, entity: str, positions: set[str], exist: int) -> list[tuple[str, int]]:
        """Entities implied by a mention (the vocabulary's ``implications``), with their existence."""
        return [(rule.then, rule.exist.get(exist, exist)) for rule in self.vocab.implications
                if rule.when == entity and (not rule.at or positions & rule.at)]

    def _segment_has_predicate(self, toks: list[str], start: int, end: int) -> bool:
        preds = self.vocab.predicates
        return any(toks[i] in preds for i in range(start, end))

    def _scope(self, toks: list[str], hard: list[int], start: int, end: int, kind: str, direction: str) -> _Cue:
        """The token range a cue covers: up to the clause boundary in its direction(s)."""
        n = len(toks)
        label = _LABEL[kind]
        lo, hi = start, end
        if direction in ("pre", "both"):
            j = bisect.bisect_left(hard, end)
            limit = hard[j] if j < len(hard) else n
            hi = limit
            i = end
            while i < limit:
                t = toks[i]
                if t in SOFT_BOUNDARIES:
                    nxt = i + 1
                    while nxt < limit and toks[nxt] not in SOFT_BOUNDARIES and toks[nxt] not in ALWAYS_CONTINUE:
                        nxt += 1
                    if self._segment_has_predicate(toks, i + 1, nxt):
                        hi = i
                        break
                i += 1
        if direction in ("post", "both"):
            j = bisect.bisect_right(hard, start - 1) - 1
            limit = hard[j] + 1 if j >= 0 else 0
            lo = limit
            # "X, Y is unlikely": a singular verb's subject is the segment just before it, unless
            # the clause joins its items by "or" ("X, Y or Z is not seen")
            singular = toks[start] in SINGULAR_VERBS or (start > limit and toks[start - 1] in SINGULAR_VERBS)
            i = start - 1
            while i >= limit:
                if toks[i] in SOFT_BOUNDARIES:
                    opening = _relative_clause(toks, i)
                    if opening >= 0:  # "X, which is mild, is not excluded": look before the clause,
                        i = opening - 1  # whose "which" is a terminator
                        j = bisect.bisect_right(hard, i) - 1
                        limit = lo = hard[j] + 1 if j >= 0 else 0
                        continue
                    prev = i - 1
                    while prev >= limit and toks[prev] not in SOFT_BOUNDARIES and toks[prev] not in ALWAYS_CONTINUE:
                        prev -= 1
                    own_subject = singular and not any(t in ALWAYS_CONTINUE for t in toks[limit:start])
                    if own_subject or self._segment_has_predicate(toks, prev + 1, i):
                        lo = i + 1
                        break
                i -= 1
        return _Cue(start, end, label, lo, hi, direction)

    @staticmethod
    def _existence(start: int, end: int, scopes: list[_Cue]) -> int:
        best, best_dist = PRESENT, None
        for c in scopes:
            if c.scope_start <= start and end <= c.scope_end and not (c.start <= start < c.end):
                dist = start - c.end if c.end <= start else c.start - end
                if best_dist is None or dist < best_dist:
                    best, best_dist = c.label, dist
        return best

    def _chunk_positions(self, toks: list[str], hard: list[int], mentions: list[tuple[int, int, str, bool]]) -> list[set[str]]:
        """Positions for each mention, from the anatomy and side words of its clause chunk.

        A sentence splits into clauses at hard boundaries and into chunks at , / and / with;
        a chunk's anatomy and sides describe the entities of that chunk. Chunks with anatomy
        but no entity belong to a neighbouring entity chunk of the same clause ("small right
        and left effusions": forward; "atelectasis at the right base and left lower lobe":
        back). A chunk opened by "compared" / "relative" is a reference, not a location.
        """
        n = len(toks)
        hard_set = set(hard)
        chunks: list[_Chunk] = [_Chunk(0, None)]
        for i, t in enumerate(toks):
            if i in hard_set or t in CHUNK_BOUNDARIES or t in REFERENCE_OPENERS:
                chunks[-1].end = i
                chunks.append(_Chunk(i, t, chunks[-1].clause + (i in hard_set)))
        chunks[-1].end = n
        chunk_of = [0] * n
        for ci, ch in enumerate(chunks):
            for i in range(ch.start, ch.end):
                chunk_of[i] = ci
        matches = self.vocab.position_matcher.find(toks)
        for s, e, _p in list(matches):  # "left upper and lower lobes": the upper lobe too
            if s >= 2 and e - s >= 2 and toks[s - 1] in COORDINATORS and toks[s - 2] in ZONE_WORDS:
                elided = self.vocab.position_matcher.lookup((toks[s - 2],) + tuple(toks[s + 1:e]))
                if elided:
                    matches.append((s - 2, s - 1, elided))
        for s, _e, payloads in matches:
            ch = chunks[chunk_of[s]]
            if ch.opener not in REFERENCE_OPENERS:
                ch.add(payloads)
        for s, _e, _entity, _c in mentions:
            chunks[chunk_of[s]].has_entity = True
        for ci, ch in enumerate(chunks):  # "left upper and lower lobes": the side carries over
            if ch.anatomy and not ch.sides and ch.opener in COORDINATORS and ci > 0:
                prev = chunks[ci - 1]
                if prev.clause == ch.clause and prev.sides:
                    ch.sides.update(prev.sides)
            if not ch.sides and ch.plural:
                ch.sides.update(("left", "right"))
        for ci, ch in enumerate(chunks):
            if ch.has_entity or not (ch.anatomy or ch.sides):
                continue
            same = [k for k, c in enumerate(chunks) if c.clause == ch.clause and c.has_entity]
            if not same:
                continue
            after = [k for k in same if k > ci]
            before = [k for k in same if k < ci]
            closer = chunks[ci + 1].opener if ci + 1 < len(chunks) else None
            target = after[0] if after and (closer in COORDINATORS or not before) else before[-1]
            chunks[target].anatomy.extend(ch.anatomy)
            chunks[target].sides.update(ch.sides)
        return [self._resolve(chunks[chunk_of[s]], entity) for s, _e, entity, _c in mentions]

    def _resolve(self, chunk: _Chunk, entity: str) -> set[str]:
        """(sides x anatomy) of a chunk -> positions; a side alone uses the entity's default anatomy."""
        specific = [a for a in chunk.anatomy if a not in self.vocab.generic_anatomy]
        names = specific or chunk.anatomy
        if not names and chunk.sides:
            default = self.vocab.side_only_anatomy.get("default", "lung")
            names = [self.vocab.side_only_anatomy.get(entity, default)]
        pos: set[str] = set()
        for a in dict.fromkeys(names):
            row = self.vocab.position_table[a]
            if chunk.sides:
                pos.update(row[sd] for sd in chunk.sides)
            else:
                pos.add(row["none"])
        return pos

    def positions_of(self, anatomy_text: str, entity: str) -> list[str]:
        """Positions named by an anatomy phrase ("left lower lobe") for ``entity``; used by the
        RadGraph import. Empty when the phrase names no known anatomy or side."""
        chunk = _Chunk(0, None)
        for sent in sentences(anatomy_text):
            for _s, _e, payloads in self.vocab.position_matcher.find(sent.tokens):
                chunk.add(payloads)
        if not chunk.sides and chunk.plural:
            chunk.sides.update(("left", "right"))
        return sorted(self._resolve(chunk, entity))

    def entities_of(self, observation_text: str) -> list[str]:
        """Entities named in an observation phrase (RadGraph import); conditional words need
        anatomy and are left out here."""
        found: list[str] = []
        for sent in sentences(observation_text):
            for _s, _e, payloads in self.vocab.observation_matcher.find(sent.tokens):
                found.extend(v for k, v in payloads if k == "entity" and v not in found)
        return found


@dataclass
class _Chunk:
    start: int
    opener: str | None
    clause: int = 0
    end: int = 0
    anatomy: list[str] = field(default_factory=list)
    sides: set[str] = field(default_factory=set)
    plural: bool = False
    has_entity: bool = False

    def add(self, payloads: list[tuple[str, str]]) -> None:
        """Record a position-matcher match: anatomy, a side, both sides, or a plural (weak both)."""
        for kind, value in payloads:
            if kind == "anatomy":
                self.anatomy.append(value)
            elif value == "both":
                self.sides.update(("left", "right"))
            elif value == "plural":
                self.plural = True
            else:
                self.sides.add(value)
