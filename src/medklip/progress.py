"""Progress of long jobs: a bar on a terminal, one line per interval in a log.

``make demo > log`` or a batch scheduler's log file show periodic lines such as
``pre-training: 300/1500 step (20%), 2.1 step/s, 9 min left`` instead of nothing; on a terminal a
tqdm bar is drawn as usual.
"""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

T = TypeVar("T")

logger = logging.getLogger("medklip.progress")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Counts work done out of ``total``.

    Args:
        total: the amount of work (steps, images...); 0 when unknown (a stream).
        desc: what is being done.
        unit: the unit of ``total``.
        enabled: False shows nothing.
        interval: seconds between log lines when ``stream`` is not a terminal.
        stream: where to write (default stderr); a terminal gets a tqdm bar.
        initial: work already done (a resumed run).
    """

    def __init__(self, total: int, desc: str, unit: str = "it", enabled: bool = True, interval: float = 30.0,
                 stream: IO[str] | None = None, initial: int = 0) -> None:
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.interval = interval
        self.stream = stream if stream is not None else sys.stderr
        self.done = initial
        self.start = self.last = time.perf_counter()
        self.postfix: dict[str, str] = {}
        self._bar = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total or None, initial=initial, desc=desc, unit=unit, file=self.stream)
        elif enabled:
            self._line(force=True)

    def set_postfix(self, **values: object) -> None:
        """Extra values shown with the count (loss, images/s...)."""
        self.postfix = {k: str(v) for k, v in values.items()}
        if self._bar is not None:
            self._bar.set_postfix(self.postfix)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled:
            self._line()

    def _line(self, force: bool = False, final: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        left = f", {_duration((self.total - self.done) / rate)} left" if rate > 0 and self.total and not final else ""
        extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
        word = "done in " + _duration(elapsed) if final else f"{rate:.1f} {self.unit}/s"
        print(f"{self.desc}: {count} {self.unit}{share}, {word}{left}{extra}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            self._line(force=True, final=True)
        self.enabled = False


def track(items: Iterable[T], total: int, desc: str, unit: str = "it", enabled: bool = True,
          interval: float = 30.0, stream: IO[str] | None = None) -> Iterator[T]:
    """``items``, counted by a :class:`Progress` (a bar on a terminal, a line per interval in a log)."""
    bar = Progress(total, desc, unit=unit, enabled=enabled, interval=interval, stream=stream)
    try:
        for item in items:
            yield item
            bar.update()
    finally:
        bar.close()
