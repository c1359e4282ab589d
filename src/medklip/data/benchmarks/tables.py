"""What every adapter needs to read a publisher's label table: find the file, read it as text
columns, and assemble the :class:`Benchmark` (with its unusable rows and its exclusions)."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from medklip.data.benchmarks.base import Benchmark, BenchmarkError, Sample
from medklip.extras import require

pd = require("pandas", "eval")

if TYPE_CHECKING:  # pragma: no cover
    import pandas

logger = logging.getLogger(__name__)

SUFFIXES = ("", ".gz", ".zip")


def find_optional(root: Path, names: Iterable[str]) -> Path | None:
    """The first of ``names`` (also ``.gz`` / ``.zip``; a name may include folders) under ``root``,
    ``None`` when there is none."""
    for name in names:
        for suffix in SUFFIXES:
            if (root / (name + suffix)).is_file():
                return root / (name + suffix)
    return None


def find_file(root: Path, names: Iterable[str], what: str, dataset: str) -> Path:
    """Like :func:`find_optional`; none is an error naming what was looked for."""
    names = list(names)
    found = find_optional(root, names)
    if found is None:
        raise BenchmarkError(f"{root}: no {what} found for {dataset} (looked for {', '.join(names)}, also .gz / "
                             ".zip); see `medklip evaluate --list` for the layout each dataset needs")
    return found


def read_table(path: Path, required: Iterable[str] = ()) -> pandas.DataFrame:
    """A CSV (plain, .gz or .zip) as text columns (blank cells stay ``""``), header names stripped."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises many kinds for a broken file
        raise BenchmarkError(f"{path}: cannot read as CSV ({exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise BenchmarkError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    return df


def build_benchmark(name: str, spec: Mapping, samples: list[Sample], errors: list[dict], *,
                    classes: Mapping[str, str] | None = None, official_split: dict[str, str] | None = None,
                    excluded: Mapping[str, int] | None = None) -> Benchmark:
    """The benchmark of ``samples``; an empty one is an error naming the first failed row."""
    if not samples:
        raise BenchmarkError(f"{name}: no usable images ({len(errors)} rows failed; first: "
                             f"{errors[0]['error'] if errors else 'the label file is empty or every row was excluded'})")
    if errors:
        logger.warning("%s: %d label rows could not be used (listed in the run's errors file)", name, len(errors))
    for reason, count in (excluded or {}).items():
        logger.info("%s: %d rows left out by the protocol: %s", name, count, reason)
    chosen = dict(classes if classes is not None else spec["classes"])
    return Benchmark(name, spec["title"], spec["task"], chosen, samples, tuple(spec["split"]), errors,
                     list(spec.get("grades", [])), spec.get("grade_class", next(iter(chosen))),
                     spec.get("segment_class", next(iter(chosen)) if len(chosen) == 1 else None),
                     official_split=official_split, groups=dict(spec.get("groups", {})),
                     excluded=dict(excluded or {}))
