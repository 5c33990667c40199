"""One owner per output (`vtl.lock`), with real processes: a second owner is refused with one
line naming the holder, `wait` proceeds once the holder releases, a killed holder's lock is
taken over at once, a lost node's lock once its heartbeat is stale."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vtl.errors import UserError
from vtl.lock import STALE_SECONDS, LockWaitStopped, OutputLock, lock_outputs, lock_path

# A process that takes the lock on argv[1] (waiting when argv[2] == "wait"), says "locked" and
# holds it until its stdin closes; a refusal is the one line on stderr and exit code 2.
HOLDER = """
import sys
from vtl.errors import UserError
from vtl.lock import OutputLock
try:
    lock = OutputLock(sys.argv[1], wait=sys.argv[2] == "wait", command="holder test").acquire()
except UserError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
print("locked", flush=True)
sys.stdin.read()
lock.release()
print("released", flush=True)
"""
ROOT = Path(__file__).resolve().parents[1]


def holder(output: Path, wait: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(output), "wait" if wait else "now"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def until_locked(process: subprocess.Popen) -> None:
    line = process.stdout.readline()
    assert line == "locked\n", process.stderr.read()


def refusal(output: Path) -> str:
    """The stderr of a process refused the lock on `output` (it must be refused)."""
    second = holder(output)
    try:
        _, err = second.communicate(timeout=60)
    finally:
        second.kill()
    assert second.returncode == 2, err
    return err


@pytest.fixture
def output(tmp_path) -> Path:
    return tmp_path / "features" / ".lite0.work"


def test_a_second_owner_is_refused_with_one_line_naming_the_holder(output):
    first = holder(output)
    try:
        until_locked(first)
        err = refusal(output)
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"error: {output}: another run is writing it")
        assert f"pid {first.pid} on host {socket.gethostname()}, since " in lines[0]
        assert "UTC (holder test)" in lines[0] and lines[0].endswith("or pass --wait")
    finally:
        first.communicate("", timeout=60)
    assert not lock_path(output).exists()  # released and removed
    again = holder(output)
    until_locked(again)
    again.communicate("", timeout=60)
    assert again.returncode == 0


def test_wait_proceeds_once_the_holder_releases(output):
    first = holder(output)
    until_locked(first)
    second = holder(output, wait=True)
    try:
        time.sleep(2.0)
        assert second.poll() is None  # still waiting
        first.stdin.close()  # the first owner finishes
        assert first.stdout.readline() == "released\n"
        until_locked(second)
        assert first.wait(timeout=60) == 0
    finally:
        out, err = second.communicate("", timeout=60)
    assert second.returncode == 0 and out == "released\n", err
    assert "waiting for the run that holds it" in err


def test_a_killed_holder_is_taken_over_at_once(output):
    first = holder(output)
    until_locked(first)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    assert json.loads(lock_path(output).read_text())["pid"] == first.pid  # left behind
    started = time.monotonic()
    second = holder(output)
    until_locked(second)
    assert time.monotonic() - started < 30  # no waiting for a timeout
    assert json.loads(lock_path(output).read_text())["pid"] == second.pid
    second.communicate("", timeout=60)
    assert second.returncode == 0


@pytest.mark.parametrize("left_behind", ["nothing", "a dead holder's record"])
def test_a_run_refused_while_the_holder_starts_names_the_new_holder(output, left_behind):
    # The holder has taken the flock but not yet written its record: the file is empty, or
    # still holds the record of a killed run. The refused run must name the new holder.
    output.parent.mkdir(parents=True)
    path = lock_path(output)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait(timeout=60)
    stale = {"pid": ended.pid, "host": socket.gethostname(), "since": time.time() - 60}
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, json.dumps(stale).encode() if left_behind != "nothing" else b"")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

        def write_record():
            time.sleep(0.3)
            record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)

        writer = threading.Thread(target=write_record)
        writer.start()
        with pytest.raises(UserError) as refused:
            OutputLock(output).acquire()
        writer.join()
    finally:
        os.close(fd)
    assert f"another run is writing it (pid {os.getpid()} on host " in str(refused.value)


def test_outputs_of_shards_do_not_exclude_each_other(tmp_path):
    with (
        OutputLock(tmp_path / ".lite0.part0of2.work"),
        OutputLock(tmp_path / ".lite0.part1of2.work"),
    ):
        with pytest.raises(UserError, match="another run is writing it"):
            OutputLock(tmp_path / ".lite0.part0of2.work").acquire()


def test_a_stop_ends_the_wait(output):
    first = holder(output)
    try:
        until_locked(first)
        calls = []

        def stop() -> bool:
            calls.append(1)
            return len(calls) > 3

        with pytest.raises(LockWaitStopped, match="stopped while waiting"):
            OutputLock(output, wait=True, stop=stop).acquire()
    finally:
        first.communicate("", timeout=60)


def test_another_hosts_lock_holds_while_its_heartbeat_is_fresh(output):
    """Where flock does not reach across machines, the record and its heartbeat decide."""
    path = lock_path(output)
    path.parent.mkdir(parents=True)
    record = {"pid": 4242, "host": "node-elsewhere", "since": time.time(), "command": "extract run"}
    path.write_text(json.dumps(record))
    with pytest.raises(
        UserError, match=r"pid 4242 on host node-elsewhere, since .* \(extract run\)"
    ):
        OutputLock(output).acquire()
    old = time.time() - STALE_SECONDS - 60  # its heartbeat stopped: a lost node
    os.utime(path, (old, old))
    with OutputLock(output) as lock:
        assert lock.held
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()


def test_several_outputs_are_locked_together_or_not_at_all(tmp_path):
    a, b = tmp_path / ".a.work", tmp_path / ".b.work"
    with lock_outputs([b, a]) as locks:
        assert [lock.output for lock in locks] == [a, b]  # sorted: no waiting in a circle
        assert lock_path(a).exists() and lock_path(b).exists()
    assert not lock_path(a).exists() and not lock_path(b).exists()
    with OutputLock(b):
        with pytest.raises(UserError, match=f"{b}: another run is writing it"):
            with lock_outputs([a, b]):
                pass
        assert not lock_path(a).exists()  # the one taken was released


def test_an_output_where_nothing_can_be_written_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    output = tmp_path / "notes.txt" / "reports" / "lite0"  # its lock file cannot be created
    with pytest.raises(UserError) as error:
        OutputLock(output).acquire()
    assert str(error.value).startswith(f"{lock_path(output)}: cannot write the lock file of ")
    assert "\n" not in str(error.value)
