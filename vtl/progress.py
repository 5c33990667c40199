"""Progress of long work: a tqdm bar on a terminal, a few plain lines in a log file.

On a terminal the bar redraws in place. When stderr is a file or a pipe (a `make` log, a SLURM
output file, CI), a redrawn bar would pile up carriage returns; there the same bar is written as
one plain line when it starts, every `LOG_INTERVAL` seconds while it moves, and when it ends.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

LOG_INTERVAL = 30.0  # seconds between progress lines when stderr is not a terminal
_LOG_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


class _Lines:
    """A stream for tqdm that turns each redraw into one line."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


class _LogBar(tqdm):
    """A bar for log files: postfix changes wait for the next timed line instead of forcing one."""

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s="", refresh=True):
        super().set_postfix_str(s, refresh=False)


def progress_bar(
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    initial: int = 0,
) -> tqdm:
    """A progress bar on stderr for `total` units of work (see the module docstring)."""
    stream = sys.stderr
    options = dict(total=total, desc=desc, unit=unit, initial=initial, disable=disable)
    if disable or stream.isatty():
        return tqdm(file=stream, dynamic_ncols=True, **options)
    return _LogBar(file=_Lines(stream), mininterval=LOG_INTERVAL, bar_format=_LOG_FORMAT, **options)
