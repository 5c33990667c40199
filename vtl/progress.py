"""Progress of long work: a tqdm bar on a terminal, one plain line every 30 s in a log file.

On a terminal the bar redraws in place. When stderr is a file or a pipe (a `make` log, a SLURM
output file, CI), a redrawn bar would pile up carriage returns; there `LogProgress` writes one
line when the stage starts, one every `LOG_INTERVAL` seconds while it runs (whether or not it
advanced: a long item still shows the clock moving, never a silent stall) and one when it ends.
"""

from __future__ import annotations

import sys
import threading
import time

from tqdm import tqdm

LOG_INTERVAL = 30.0  # seconds between progress lines when stderr is not a terminal


class LogProgress:
    """The part of tqdm's interface our loops use, written as timed lines."""

    def __init__(self, total: int | None, desc: str, unit: str, initial: int = 0, stream=None):
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self._first = initial
        self.postfix = ""
        self.stream = stream or sys.stderr
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._write()
        self._clock = threading.Thread(target=self._tick, name=f"progress-{desc}", daemon=True)
        self._clock.start()

    def _write(self) -> None:
        elapsed = time.monotonic() - self._started
        rate = (self.n - self._first) / elapsed if elapsed > 0 else 0.0
        line = tqdm.format_meter(
            self.n,
            self.total,
            elapsed,
            prefix=self.desc,
            unit=self.unit,
            rate=rate or None,
            postfix=self.postfix or None,
            bar_format="{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, "
            "{rate_fmt}{postfix}]",
        )
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last = time.monotonic()

    def _tick(self) -> None:
        while not self._closed.wait(1.0):
            if time.monotonic() - self._last >= LOG_INTERVAL:
                self._write()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh=True) -> None:
        self.postfix = s

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._write()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    initial: int = 0,
):
    """A progress indicator on stderr for `total` units of work (see the module docstring)."""
    stream = sys.stderr
    if disable or stream.isatty():
        shown = {"disable": disable, "file": stream, "dynamic_ncols": True}  # how, not what
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, **shown)
    return LogProgress(total, desc, unit, initial, stream)
