"""Report triplets -> the training targets of the model (existence labels, positive positions)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from medklip.labels import ABSENT, NUM_POSITION_SAMPLES, PRESENT, UNCERTAIN, UNMENTIONED

_PRIORITY = {PRESENT: 3, UNCERTAIN: 2, ABSENT: 1}


@dataclass
class ReportTargets:
    """Targets for one report over a fixed entity / position vocabulary.

    Attributes:
        exist: ``[Q]`` int8: 1 present, 0 absent, -1 uncertain, 2 unmentioned. An entity
            mentioned several times takes the strongest statement (present > uncertain > absent).
        positives: for each entity, the indices of the positions it is present at (empty
            unless ``exist`` is 1; a present entity with no location has ``unspecified``).
    """

    exist: np.ndarray
    positives: list[list[int]]

    def sample_position_index(self, rng: np.random.Generator, num_positions: int,
                              k: int = NUM_POSITION_SAMPLES) -> np.ndarray:
        """``[Q, k]`` position indices: column 0 a positive, then ``k-1`` negatives drawn from
        positions the entity is not at. Rows of entities that are not present are ignored by the
        loss (the criterion scores present pairs only); they hold ``0, 1, ..., k-1`` instead of the
        release's random draws, which cost a random draw per entity per sample (about half a
        millisecond a sample with 75 entities, in the quick demo's training loop)."""
        out = np.tile(np.arange(k, dtype=np.int64) % max(1, num_positions), (len(self.positives), 1))
        for i, pos in enumerate(self.positives):
            if pos:
                out[i, 0] = pos[rng.integers(len(pos))]
                mask = np.ones(num_positions, dtype=bool)
                mask[pos] = False
                negatives = np.flatnonzero(mask)
                out[i, 1:] = rng.choice(negatives, size=k - 1, replace=len(negatives) < k - 1)
        return out


def report_targets(
    triplets: Iterable[Mapping | object],
    entity_names: Sequence[str],
    position_names: Sequence[str],
    unspecified: str = "unspecified",
) -> ReportTargets:
    """Turn one report's triplets (dicts or :class:`~medklip.reports.Triplet`) into targets.

    Triplets whose entity is not in ``entity_names`` are skipped (a model may use a subset
    of the vocabulary); an unknown position counts as ``unspecified``.
    """
    e_index = {n: i for i, n in enumerate(entity_names)}
    p_index = {n: i for i, n in enumerate(position_names)}
    fallback = p_index.get(unspecified)
    exist = np.full(len(entity_names), UNMENTIONED, dtype=np.int8)
    positives: list[set[int]] = [set() for _ in entity_names]
    for t in triplets:
        get = t.get if isinstance(t, Mapping) else lambda key, _t=t: getattr(_t, key)
        i = e_index.get(str(get("entity")))
        if i is None:
            continue
        raw = get("exist")
        if raw is None:
            raise ValueError(f"triplet of {get('entity')!r} has no exist value")
        label = int(raw)
        if label not in _PRIORITY:
            raise ValueError(f"exist must be 1, 0 or -1, got {label!r}")
        current = int(exist[i])
        if current == UNMENTIONED or _PRIORITY[label] > _PRIORITY[current]:
            exist[i] = label
        if label == PRESENT:
            j = p_index.get(str(get("position")))
            j = fallback if j is None else j
            if j is not None:
                positives[i].add(j)
    return ReportTargets(exist, [sorted(p) if exist[i] == PRESENT else [] for i, p in enumerate(positives)])
