"""Progress for long work: a tqdm bar on a terminal or in Jupyter; off them (a log file, CI, a SLURM
job) plain lines, one every ``INTERVAL`` seconds and one at the end, so logs stay short.

    for batch in progress_bar(loader, desc="train", unit="batch"):
        ...
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable

from tqdm.auto import tqdm

INTERVAL = 30.0  # seconds between two lines off a terminal


def _interactive() -> bool:
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             initial: int = 0, enabled: bool = True):
    """A progress bar with tqdm's interface (iterate it, or ``update``, ``set_postfix``, ``close``)."""
    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    if _interactive():
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial)
    return LogLines(iterable, total, desc, unit, initial)


class LogLines:
    """tqdm's interface, written as lines: ``desc: n/total unit (rate/s, elapsed) postfix``."""

    def __init__(self, iterable: Iterable | None, total: int | None, desc: str, unit: str, initial: int = 0,
                 interval: float = INTERVAL, file=None) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n, self.start, self.interval, self.file = initial, time.monotonic(), interval, file
        self.last, self.postfix, self.closed = self.start, "", False

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return self.total or 0

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._line()

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._line(done=self.total is not None and self.n >= self.total)

    def _line(self, done: bool = False) -> None:
        elapsed = time.monotonic() - self.start
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        rate = f"{self.n / elapsed:.1f} {self.unit}/s, " if elapsed > 0 else ""
        tail = f" {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {count} {self.unit} ({rate}{elapsed:.0f} s{', done' if done else ''}){tail}",
              file=self.file or sys.stderr, flush=True)
