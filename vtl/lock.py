"""One owner per output: an exclusive lock on what a run writes (the work folder of a feature
file, a report folder), so that two runs never write one output at once.

Two runs on one output happen: a job launched twice, a SLURM requeue while the old job still
runs. Without a lock both write the same files and one removes what the other is writing. With
it the second run either stops at once with one line naming the holder (pid, host, since when)
and what to do, or, with `wait=True` (the commands' `--wait`), waits until the output is free.

The lock is `fcntl.flock` on a lock file next to the output, `.<name>.lock`, holding the
holder's JSON record {pid, host, since, command}. The kernel releases a flock when its holder
dies, even by SIGKILL, so a dead holder's lock is taken over at once, without asking anybody.
Where flock does not reach across machines (some shared file systems lock per host), the record
says who holds it: a record from another host is trusted while its heartbeat is fresh (the
holder touches the file every `HEARTBEAT_SECONDS` from a daemon thread), and is stale, and taken
over, once the heartbeat is older than `STALE_SECONDS` (a lost node). On a file system with no
flock at all, a holder on this host counts while its process lives (best effort).

The holder removes the lock file when it releases the lock; a run that opened the file before
then finds on locking that its file is no longer the one at the path, and opens it again.
Shards of one run write different outputs (each shard its own part file and work folder), so
they do not exclude each other.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from vtl.errors import UserError

log = logging.getLogger("vtl")

HEARTBEAT_SECONDS = 30.0  # how often the holder touches its lock file
STALE_SECONDS = 300.0  # a record from another host whose heartbeat is this old is a lost holder
POLL_SECONDS = 0.5  # how often a waiting run tries again (and looks at its stop check)
RECORD_SECONDS = 2.0  # how long a refused run waits for the new holder's record to appear
_COMMAND_CHARS = 120  # of the holder's command line, in the one-line message
# flock failing this way means the file system does not lock (an NFS mount without a lock
# daemon): the record and its heartbeat are all there is, best effort
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL}


class LockWaitStopped(Exception):
    """A stop was requested while waiting for a lock (the caller's `stop` check said so)."""


def lock_path(output: str | Path) -> Path:
    """The lock file of `output` (a file or folder): `.<name>.lock` in the same folder."""
    output = Path(output).absolute()
    return output.with_name(f".{output.name}.lock")


def _command() -> str:
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else []
    return " ".join(argv)


def _since(record: dict) -> str:
    try:
        stamp = datetime.datetime.fromtimestamp(float(record["since"]), datetime.timezone.utc)
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        return "an unknown time"
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


def describe_holder(record: dict) -> str:
    """`pid 123 on host node7, since 2026-12-02 09:41:03 UTC (extract run ...)` from a lock
    file's record (whatever of it could be read)."""
    if not record:  # locked a moment ago, its record not written yet
        return "a run that is starting"
    pid = record.get("pid", "?")
    host = record.get("host", "an unknown host")
    command = " ".join(str(record.get("command", "")).split())[:_COMMAND_CHARS]
    text = f"pid {pid} on host {host}, since {_since(record)}"
    return f"{text} ({command})" if command else text


class OutputLock:
    """An exclusive lock on one output for a `with` block.

    Args:
        output: the folder or file the run writes; the lock file is `lock_path(output)`.
        wait: wait until the output is free instead of stopping with a `UserError`.
        stop: checked while waiting; when it returns True, `LockWaitStopped` is raised.
        command: what the holder runs, for the message a second run prints (default: argv).

    Raises (on entering):
        UserError: another live run holds the output (and `wait` is False): one line naming the
            output, the holder and what to do.
        LockWaitStopped: `stop` returned True while waiting.
    """

    def __init__(
        self,
        output: str | Path,
        *,
        wait: bool = False,
        stop: Callable[[], bool] | None = None,
        command: str | None = None,
    ) -> None:
        self.output = Path(output)
        self.path = lock_path(output)
        self.wait = wait
        self.stop = stop or (lambda: False)
        self.command = _command() if command is None else command
        self._fd: int | None = None
        self._beating = threading.Event()
        self._heart: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> OutputLock:
        """Take the lock (see the class); returns self."""
        if self._fd is not None:
            raise RuntimeError(f"{self.output}: lock already held by this process")
        waiting = False
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                holder = self._try()
            except OSError as error:
                raise self._unwritable(error) from None
            if holder is None:
                break
            if not self.wait:
                holder_text = describe_holder(holder)
                raise UserError(
                    f"{self.output}: another run is writing it ({holder_text}); "
                    "wait for it, or pass --wait"
                )
            if not waiting:
                log.warning(
                    "%s: waiting for the run that holds it (%s)",
                    self.output,
                    describe_holder(holder),
                )
                waiting = True
            deadline = time.monotonic() + POLL_SECONDS
            while time.monotonic() < deadline:
                if self.stop():
                    raise LockWaitStopped(f"{self.output}: stopped while waiting for its lock")
                time.sleep(min(0.1, POLL_SECONDS))
        try:
            self._write_record()
        except OSError as error:
            self.release()
            raise self._unwritable(error) from None
        self._beating.clear()
        self._heart = threading.Thread(
            target=self._heartbeat, name=f"lock-heartbeat {self.path.name}", daemon=True
        )
        self._heart.start()
        return self

    def _unwritable(self, error: OSError) -> UserError:
        reason = error.strerror or type(error).__name__
        return UserError(
            f"{self.path}: cannot write the lock file of {self.output} ({reason}); "
            "write the output where you can create files"
        )

    def _try(self) -> dict | None:
        """Lock the file at the path once: None when this process now holds it, else the
        holder's record (a live process, or another host's fresh heartbeat)."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                kernel = True
            except BlockingIOError:  # a live process holds it (the kernel says so)
                record = _holder_record(fd)
                os.close(fd)
                return record
            except OSError as error:
                if error.errno not in _NO_FLOCK:
                    os.close(fd)
                    raise
                kernel = False  # a file system without flock: the record alone decides
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the holder released and removed it meanwhile: open the new one
        record = _read_record(fd)
        if _held_elsewhere(record, os.fstat(fd).st_mtime, kernel):
            os.close(fd)
            return record
        self._fd = fd
        return None

    def _write_record(self) -> None:
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.time(),
            "command": self.command,
        }
        data = json.dumps(record).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)

    def _heartbeat(self) -> None:
        """Touch the lock file every HEARTBEAT_SECONDS: other hosts see the holder is alive."""
        while not self._beating.wait(HEARTBEAT_SECONDS):
            fd = self._fd
            if fd is None:
                return
            with contextlib.suppress(OSError):  # a file system hiccup: the next beat retries
                os.utime(fd)

    def release(self) -> None:
        """Remove the lock file and release the lock (a no-op when not held)."""
        if self._fd is None:
            return
        self._beating.set()
        if self._heart is not None:
            self._heart.join(timeout=5)
        fd, self._fd = self._fd, None
        try:
            with contextlib.suppress(OSError):  # removed while held: only ever our own file
                if _same_file(fd, self.path):
                    self.path.unlink()
        finally:
            os.close(fd)  # releases the flock

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def lock_outputs(
    outputs: Iterable[str | Path],
    *,
    wait: bool = False,
    stop: Callable[[], bool] | None = None,
) -> Iterator[list[OutputLock]]:
    """Hold the locks of several outputs for a `with` block (see `OutputLock`), taken in sorted
    order so that two runs locking overlapping sets never wait on each other in a circle; a
    refusal releases those already taken."""
    with contextlib.ExitStack() as stack:
        paths = sorted({Path(p).absolute() for p in outputs})
        yield [stack.enter_context(OutputLock(p, wait=wait, stop=stop)) for p in paths]


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _read_record(fd: int) -> dict:
    try:
        size = os.fstat(fd).st_size
        record = json.loads(os.pread(fd, min(size, 64 * 1024), 0).decode() or "{}")
    except (OSError, ValueError):  # half written, or not ours: nothing known of the holder
        return {}
    return record if isinstance(record, dict) else {}


def _holder_record(fd: int) -> dict:
    """The record of the live process that holds `fd`'s lock. A holder writes its record just
    after taking the lock: until then the file is empty, half written, or still names the
    previous (dead) holder, so a record that does not name a live process of this host is read
    again for up to `RECORD_SECONDS` (another host's record is taken as it is)."""
    deadline = time.monotonic() + RECORD_SECONDS
    while True:
        record = _read_record(fd)
        if _names_live_holder(record) or time.monotonic() >= deadline:
            return record
        time.sleep(0.01)


def _names_live_holder(record: dict) -> bool:
    host = record.get("host")
    if not host:
        return False
    if host != socket.gethostname():
        return True
    return _alive(record.get("pid"))


def _alive(pid) -> bool:
    try:
        pid = int(pid)
        if pid <= 0:
            return False
        os.kill(pid, 0)
    except PermissionError:  # another user's live process
        return True
    except (OSError, ValueError, OverflowError, TypeError):
        return False
    return True


def _held_elsewhere(record: dict, touched: float, kernel: bool) -> bool:
    """Whether a record we could lock still names a live holder: one on another host (where
    flock may not reach) whose heartbeat is fresh. A holder on this host that the kernel no
    longer counts is dead; where the file system has no flock at all (`kernel` False), a
    holder on this host is alive while its process is."""
    host = record.get("host")
    if not host:
        return False
    if host != socket.gethostname():
        return time.time() - touched < STALE_SECONDS
    if kernel:
        return False
    return _alive(record.get("pid"))
