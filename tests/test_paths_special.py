"""Paths said as they are: a named pipe, a device, a socket or a folder where a video (or the
manifest) should be is one line saying what it is, before any work, and nothing ever opens it
(opening a named pipe blocks until a writer comes; /dev/zero never ends)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from extract.decoder import Decoder, Failure
from extract.video import VideoError, VideoSource
from vtl.errors import ManifestError
from vtl.headers import header_frames
from vtl.manifest import read_manifest, special_file

BIN = Path(sys.executable).parent
SAYS = {
    "fifo": "is a named pipe (FIFO), not a video file",
    "zero": "is a device (/dev/zero), not a video file",
    "socket": "is a socket, not a video file",
    "folder": "is a folder, not a video file",
}


@pytest.fixture
def specials(tmp_path) -> dict[str, Path]:
    """A named pipe, a link to /dev/zero, a socket and a folder, each named like a video."""
    os.mkfifo(tmp_path / "pipe.mp4")
    (tmp_path / "zero.mp4").symlink_to("/dev/zero")
    (tmp_path / "folder.mp4").mkdir()
    paths = {"fifo": tmp_path / "pipe.mp4", "zero": tmp_path / "zero.mp4"}
    paths["folder"] = tmp_path / "folder.mp4"
    server = socket.socket(socket.AF_UNIX)
    try:  # a socket path is limited to ~107 bytes: a bound socket where the name fits
        server.bind(str(tmp_path / "s.mp4"))
        paths["socket"] = tmp_path / "s.mp4"
    except OSError:
        pass
    yield paths
    server.close()


@contextlib.contextmanager
def no_hang(seconds: int = 20):
    """Fail (instead of hanging the test run) when the block blocks, as opening a FIFO would."""

    def alarm(signum, frame):
        raise TimeoutError(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def manifest(folder: Path, video: Path) -> Path:
    for name in ("a", "b"):
        (folder / f"{name}.mp4").write_bytes(b"x")
    path = folder / "m.csv"
    rows = [f"v,{video},1,train", "a,a.mp4,0,val", "b,b.mp4,1,test"]
    path.write_text("\n".join(["video_id,path,action,split0", *rows]) + "\n")
    return path


def test_special_file_names_what_a_path_is(specials, tmp_path):
    assert special_file(specials["fifo"]) == "a named pipe (FIFO)"
    assert special_file(specials["zero"]) == "a device (/dev/zero)"
    assert special_file(specials["folder"]) == "a folder"
    if "socket" in specials:
        assert special_file(specials["socket"]) == "a socket"
    (tmp_path / "real.mp4").write_bytes(b"x")
    assert special_file(tmp_path / "real.mp4") is None
    assert special_file(tmp_path / "missing.mp4") is None


@pytest.mark.parametrize("kind", list(SAYS))
def test_the_manifest_says_what_the_path_is(specials, tmp_path, kind):
    if kind not in specials:
        pytest.skip("the temporary folder's path is too long for a socket")
    path = manifest(tmp_path, specials[kind])
    with no_hang(), pytest.raises(ManifestError) as error:
        read_manifest(path)
    assert str(error.value) == (
        f"{path}, row 2, column path: {specials[kind]} {SAYS[kind]}; give the path of a video file"
    )
    assert read_manifest(path, check_files=False).paths[0] == specials[kind].resolve()


def test_a_manifest_that_is_a_pipe_or_a_folder(specials):
    with no_hang(), pytest.raises(ManifestError, match="is a named pipe .FIFO., not a manifest"):
        read_manifest(specials["fifo"])
    with pytest.raises(ManifestError, match="is a folder, not a manifest"):
        read_manifest(specials["folder"])


@pytest.mark.parametrize("kind", list(SAYS))
def test_the_decoder_says_what_the_path_is(specials, kind):
    if kind not in specials:
        pytest.skip("the temporary folder's path is too long for a socket")
    with no_hang():
        with pytest.raises(VideoError) as error:
            VideoSource(specials[kind])
        assert str(error.value) == SAYS[kind]
        assert header_frames(specials[kind]) == 0


def test_the_decoder_process_fails_the_video_and_goes_on(specials):
    with Decoder([(0, specials["fifo"]), (1, specials["zero"])], min_seconds=1.0) as decoder:
        reasons = [item.reason for item in decoder if isinstance(item, Failure)]
    assert reasons == [SAYS["fifo"], SAYS["zero"]]


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_extract_run_stops_with_one_line(specials, tmp_path, kind):
    path = manifest(tmp_path, specials[kind])
    run = subprocess.run(
        [BIN / "extract", "run", "-m", path, "-b", "efficientnet_lite0", "-o", tmp_path / "out"],
        capture_output=True,
        text=True,
        timeout=300,  # a hang fails the test
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        f"error: {path}, row 2, column path: {specials[kind]} {SAYS[kind]}; "
        "give the path of a video file"
    ]
    assert not (tmp_path / "out").exists()
