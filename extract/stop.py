"""A stop that always stops: SIGTERM / Ctrl-C end a run within `GRACE_SECONDS`.

The first signal asks the run to stop at its next safe point: the main loop checks `requested`
between chunks and forward passes, drops the video in hand (it is redone on resume), keeps every
committed one and says how to resume. That takes well under a second unless a thread is stuck
where Python cannot reach it (a C call that never returns, a hung file system). For that case a
watchdog thread, woken by the signal itself through `signal.set_wakeup_fd` (the C-level handler
writes to it from whatever thread receives the signal, even while the main thread is blocked),
ends the process with the resume hint when `GRACE_SECONDS` pass; a second Ctrl-C or SIGTERM ends
it at once. Committed videos are never at risk: every commit is a rename.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import sys
import threading
import time

log = logging.getLogger("extract")

GRACE_SECONDS = 20.0
RESUME_HINT = "rerun the same command to resume"
_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_NUMBERS = {int(sig) for sig in _SIGNALS}
EXIT_STOPPED = 130


class StopGuard:
    """Installs the handlers above for a `with` block (main thread only; elsewhere a no-op)."""

    def __init__(self, grace: float = GRACE_SECONDS) -> None:
        self.grace = grace
        self.requested = False
        self._previous: dict = {}
        self._previous_fd = -1
        self._sockets: tuple[socket.socket, socket.socket] | None = None
        self._watchdog: threading.Thread | None = None
        self._done = threading.Event()

    def __enter__(self) -> StopGuard:
        if threading.current_thread() is not threading.main_thread():
            return self
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        self._sockets = (reader, writer)
        self._previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        for sig in _SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        self._watchdog = threading.Thread(target=self._watch, name="stop-watchdog", daemon=True)
        self._watchdog.start()
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second signal: stop at once (the watchdog ends the process)
            raise KeyboardInterrupt
        self.requested = True
        log.warning(
            "%s: stopping; the video in hand is dropped and redone on resume",
            signal.Signals(signum).name,
        )

    def check(self) -> bool:
        return self.requested

    def _watch(self) -> None:
        reader = self._sockets[0]
        received, deadline = 0, None
        while not self._done.is_set():
            timeout = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            ready, _, _ = select.select([reader], [], [], timeout)
            if ready:
                try:  # one byte per signal received: its number
                    received += sum(b in _NUMBERS for b in reader.recv(64))
                except OSError:
                    pass
                if received and deadline is None:
                    deadline = time.monotonic() + self.grace
            if self._done.is_set():
                return
            if received >= 2 or (deadline is not None and time.monotonic() >= deadline):
                self._hard_exit(received >= 2)

    def _hard_exit(self, second_signal: bool) -> None:
        why = "a second stop signal" if second_signal else f"still busy after {self.grace:.0f} s"
        sys.stderr.write(f"stopped ({why}); {RESUME_HINT}\n")
        sys.stderr.flush()
        os._exit(EXIT_STOPPED)

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self._sockets is None:
            return
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._previous_fd)
        if self._watchdog is not None:
            self._watchdog.join(timeout=2)
        for sock in self._sockets:
            sock.close()
