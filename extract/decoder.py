"""Decoding in a process of its own: whatever one video does to the decoder, it is that video's
failure, never the run's.

A run over thousands of downloaded videos meets files that crash a decoder (a segmentation fault
in a codec), make it spin forever on corrupted data, or block its reads. Browsers and media
servers isolate their decoders in separate processes for the same reason. Here the extraction
process starts one decoder process (``python -m extract.decoder``, PyAV and numpy, no torch),
gives it the videos to decode in order, and reads their frames from a socket:

    decoder process --("video", info) ("chunk", frames[, small])... ("end", concealed) per video
        --> socket
        --> reader thread (allocates each chunk, pinned when CUDA is used)
        --> bounded queue (DECODE_AHEAD chunks) --> the pipeline's main loop

The main loop waits on the queue in short steps, so that it notices at once:

- a stop request (SIGTERM / Ctrl-C): `StopRequested`;
- the video's decoding time limit passed (`timeout`, seconds the main loop spent waiting for that
  video's frames), or its decoder stopped making progress (`stall`, seconds without a chunk once
  its frames started): the decoder process is killed, the video fails, a new decoder process
  takes the videos after it;
- the decoder process died (a crash in a codec, or killed for memory): the video it was on fails
  with the signal or exit code, a new process takes the videos after it;
- any exception in the reader thread: the same, with its type and message.

Nothing ever waits on a producer that has died. Errors the decoder reports for a video (a
truncated file, no video stream, an undecodable stream) come as that video's failure reason and
the same process goes on with the next video. A stream damaged within the concealment budget is
decoded around the damage (`extract.video`, unless `strict`); its "end" message says how many
frames were concealed, and `Video.concealed` holds the count.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, Pipe
from pathlib import Path

from extract.video import VideoError, VideoInfo, VideoSource

log = logging.getLogger("extract")

DECODE_AHEAD = 3  # decoded chunks queued for the pipeline (decoding is far faster than models)
POLL_SECONDS = 0.2  # how often a waiting main loop looks at stop requests and time limits
_START_FAILURES = 2  # decoder processes dying in a row before they start: a broken setup


class StopRequested(Exception):
    """A stop was requested (SIGTERM / Ctrl-C); the video in hand is dropped, not committed."""


class DecodeFailed(Exception):
    """A video could not be decoded; the message is the reason (the caller adds the file)."""


def failure_reason(error: BaseException) -> str:
    """One line for a video's failure: a `VideoError`'s own message, or the exception's type,
    message and the place it was raised (an error nobody anticipated: where to look)."""
    if isinstance(error, VideoError | DecodeFailed):
        return str(error)
    where = ""
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        last = frames[-1]
        where = f" (at {Path(last.filename).name}:{last.lineno} in {last.name})"
    message = " ".join(str(error).split())[:200]
    return f"{type(error).__name__}: {message}{where}" if message else type(error).__name__ + where


# ------------------------------------------------------------------ the decoder process


def _die_with_parent() -> None:
    """Linux: the kernel kills this process when the extraction process dies (even by SIGKILL),
    so a decoder stuck in a codec never outlives its run."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def serve(conn: Connection) -> None:
    """The decoder process: decode the videos of one ("decode", [(index, path), ...],
    min_seconds, strict, small) request in order and stream them back."""
    conn.send(("ready", None, None))
    _, videos, min_seconds, strict, small = conn.recv()
    for index, path in videos:
        try:
            source = VideoSource(path, strict=strict, small=small)
            info = source.info
            if info.seconds < min_seconds:
                raise VideoError(
                    f"shorter than one clip ({info.n_frames} frames at {info.fps:g} fps "
                    f"< {min_seconds:g} s)"
                )
            conn.send(("video", index, info))
            for start, frames, shot_frames in source.chunks():
                shapes = (frames.shape, None if shot_frames is None else shot_frames.shape)
                conn.send(("chunk", start, shapes))
                conn.send_bytes(frames.reshape(-1))  # flat: a connection counts rows
                if shot_frames is not None:
                    conn.send_bytes(shot_frames.reshape(-1))
            conn.send(("end", index, source.concealed))
        except (BrokenPipeError, ConnectionResetError):
            return  # the extraction process is gone
        except Exception as error:  # any failure is this video's; go on with the next one
            conn.send(("failed", index, failure_reason(error)))
    conn.send(("done", None, None))


def main(argv: list[str]) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the extraction process to handle
    conn = Connection(int(argv[1]))
    try:
        serve(conn)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the extraction process closed the connection: nothing left to do
    finally:
        conn.close()


# ------------------------------------------------------------------ the extraction process side


@dataclass
class Failure:
    """A video that failed before its frames started (cannot open, too short, decoder died)."""

    index: int
    reason: str


class Video:
    """One video being decoded: its `info` and its frames, chunk by chunk, from `chunks()`;
    once they are all consumed, `concealed` is the number of frames concealed where the stream
    was damaged (0 for a clean decode)."""

    def __init__(self, decoder: Decoder, index: int, info: VideoInfo) -> None:
        self.decoder = decoder
        self.index = index
        self.info = info
        self.finished = False
        self.concealed = 0

    def chunks(self) -> Iterator[tuple[int, object, object]]:
        """(first frame index, uint8 [T, H, W, 3] tensor, uint8 [T, 27, 48, 3] tensor or None
        unless the decoder was asked for `small` frames) per chunk.

        Raises:
            DecodeFailed: decoding broke, timed out or its process died mid-video.
            StopRequested: a stop was requested while waiting.
        """
        while not self.finished:
            try:
                kind, first, payload = self.decoder._next_message(self.index, self.info)
            except (DecodeFailed, StopRequested):
                self.finished = True  # its process was killed, or the run is stopping
                raise
            if kind == "chunk":
                yield first, *payload
                continue
            self.finished = True
            if kind == "failed":  # the decoder reported it and goes on with the next video
                raise DecodeFailed(payload)
            self.concealed = int(payload or 0)  # "end"

    def discard(self) -> None:
        """Skip this video's remaining chunks (the pipeline gave up on it)."""
        if self.finished:
            return
        with contextlib.suppress(DecodeFailed):
            for _ in self.chunks():
                pass


class Decoder:
    """Decodes `videos` ((index, path) in order) in a decoder process; iterate for `Video` or
    `Failure` items, one per video, in order.

    Args:
        videos: (manifest index, path) of each video to decode, in order.
        min_seconds: videos shorter than this (one clip) fail without being decoded.
        timeout: seconds of waiting for a video's frames before it fails, given its index and its
            info (None before the decoder has opened it); None for no limit.
        stall: seconds of waiting without any chunk, once a video's frames have started, before
            it fails (a decoder spinning or blocked); None for no limit.
        stop: returns True when the run should stop (checked while waiting).
        pin_memory: allocate chunks in pinned memory (faster copies to a GPU).
        strict: fail a video at its first frame that cannot be decoded (`--strict-decode`)
            instead of concealing damage within the budget of `extract.video`.
        small: send each frame also at TransNetV2's input size, made in the decoder process
            from the decoded picture as the TransNetV2 package makes it (`extract.video`).
    """

    def __init__(
        self,
        videos: list[tuple[int, Path]],
        min_seconds: float,
        timeout: Callable[[int, VideoInfo | None], float | None] = lambda i, info: None,
        stop: Callable[[], bool] = lambda: False,
        pin_memory: bool = False,
        stall: float | None = None,
        strict: bool = False,
        small: bool = False,
    ) -> None:
        self._todo = list(videos)
        self._strict = strict
        self._small = small
        self._min_seconds = min_seconds
        self._timeout = timeout
        self._stall = stall
        self._stop = stop
        self._pin = pin_memory
        self._process: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=DECODE_AHEAD)
        self._reader: threading.Thread | None = None
        self._closing = threading.Event()
        self._stderr = None
        self._waited = 0.0  # seconds waited for the current video's messages
        self._silent = 0.0  # of which since its last message
        self._ready = False  # the current process has started (sent "ready")
        self._start_failures = 0  # processes in a row that died before they started
        self.started = 0  # decoder processes started (1 unless some video killed one)
        self.opened = 0  # videos the decoder opened: each video is decoded once

    # --- process lifecycle

    def _start(self) -> None:
        parent, child = Pipe(duplex=True)
        self._stderr = tempfile.TemporaryFile()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "extract.decoder", str(child.fileno())],
            pass_fds=[child.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env=env,
        )
        child.close()
        self._conn = parent
        self._ready = False
        self._closing = threading.Event()
        self._queue = queue.Queue(maxsize=DECODE_AHEAD)
        self._reader = threading.Thread(
            target=_read, args=(parent, self._queue, self._closing, self._pin), daemon=True
        )
        self._reader.start()
        self.started += 1
        with contextlib.suppress(OSError):  # died at start-up: the reader reports it
            videos = [(i, str(p)) for i, p in self._todo]
            parent.send(("decode", videos, self._min_seconds, self._strict, self._small))

    def _stop_process(self) -> None:
        """Kill the decoder process (it may be stuck in a codec) and retire its reader."""
        self._closing.set()
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            try:  # a process in uninterruptible I/O (a hung file system) ends only when it returns
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log.warning("decoder process %d does not end; leaving it behind", self._process.pid)
        if self._conn is not None:
            self._conn.close()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._stderr is not None:
            self._stderr.close()
        self._process = self._conn = self._reader = self._stderr = None

    def _death_reason(self) -> str:
        try:
            code = self._process.wait(timeout=5) if self._process else None
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            what = "it closed its connection"
        elif code < 0:
            what = f"killed by {signal.Signals(-code).name}"
            if -code == signal.SIGKILL:
                what += ", out of memory?"
        else:
            what = f"exit code {code}"
        detail = ""
        if self._stderr is not None:
            self._stderr.seek(0)
            lines = self._stderr.read().decode(errors="replace").strip().splitlines()
            detail = f": {lines[-1][:200]}" if lines else ""
        return f"the decoder process died ({what}){detail}"

    def close(self) -> None:
        self._stop_process()

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- iteration

    def __iter__(self) -> Iterator[Video | Failure]:
        while self._todo:
            if self._process is None:
                self._start()
            index = self._todo[0][0]
            self._waited, self._silent = 0.0, 0.0
            try:
                kind, _, payload = self._next_message(index, None)
            except DecodeFailed as failed:
                self._todo.pop(0)
                yield Failure(index, str(failed))
                continue
            self._todo.pop(0)
            if kind == "failed":
                yield Failure(index, payload)
            elif kind == "video":
                self.opened += 1
                video = Video(self, index, payload)
                yield video
                video.discard()  # whatever the caller did, the next message is the next video's
            else:
                raise RuntimeError(f"decoder protocol: {kind!r} where a video was expected")
        self.close()

    def _next_message(self, index: int, info: VideoInfo | None) -> tuple[str, object, object]:
        """The next message of video `index`, waiting in short steps (see the module docstring).

        Raises:
            DecodeFailed: the time limit passed or the decoder process died (it is restarted
                for the videos after this one).
            StopRequested: a stop was requested.
        """
        limit = self._timeout(index, info)
        while True:
            if self._stop():
                raise StopRequested
            started = time.monotonic()
            try:
                message = self._queue.get(timeout=POLL_SECONDS)
            except queue.Empty:
                waited = time.monotonic() - started
                self._waited += waited
                self._silent += waited
                if limit is not None and self._waited > limit:
                    self._stop_process()  # stuck in a codec: only killing it stops it
                    raise DecodeFailed(
                        f"timed out: {self._waited:.0f} s of decoding, beyond its limit of "
                        f"{limit:.0f} s (--video-timeout)"
                    ) from None
                if self._stall is not None and info is not None and self._silent > self._stall:
                    self._stop_process()
                    raise DecodeFailed(
                        f"timed out: the decoder made no progress for {self._silent:.0f} s "
                        "(--video-timeout)"
                    ) from None
                continue
            self._waited += time.monotonic() - started
            self._silent = 0.0
            kind, first, payload = message
            if kind == "ready":
                self._ready, self._start_failures = True, 0
                continue
            if kind == "died":
                reason = payload or self._death_reason()
                started = self._ready
                self._stop_process()
                if not started:
                    self._start_failures += 1
                    if self._start_failures >= _START_FAILURES:  # not a video's fault
                        raise RuntimeError(f"the decoder process cannot start: {reason}")
                raise DecodeFailed(reason)
            if kind == "done":
                raise RuntimeError("decoder protocol: 'done' before every video was decoded")
            if kind in ("video", "failed") and first != index:
                raise RuntimeError(f"decoder protocol: video {first} where {index} was expected")
            return kind, first, payload


def _read(conn: Connection, out: queue.Queue, closing: threading.Event, pin: bool) -> None:
    """Reader thread: messages from the decoder process into `out`, each chunk read straight
    into a buffer of its own. Any failure, even an exception nobody anticipated, is sent on as a
    ("died", None, reason) message: the main loop never waits for a reader that has stopped."""

    def put(message) -> None:
        while not closing.is_set():
            try:
                out.put(message, timeout=POLL_SECONDS)
                return
            except queue.Full:
                continue

    try:
        while not closing.is_set():
            kind, first, payload = conn.recv()
            if kind == "chunk":
                payload = tuple(None if shape is None else _buffer(shape, pin) for shape in payload)
                for frames in payload:
                    if frames is not None:  # flat: a connection counts rows
                        conn.recv_bytes_into(frames.numpy().reshape(-1))
            put((kind, first, payload))
            if kind == "done":
                return
    except (EOFError, OSError):
        if not closing.is_set():
            put(("died", None, None))
    except BaseException as error:  # noqa: BLE001 - reported to the main loop, never lost
        put(("died", None, f"decoder connection failed: {failure_reason(error)}"))


def _buffer(shape: tuple[int, ...], pin: bool):
    import torch  # the extraction process only; the decoder process never imports torch

    return torch.empty(shape, dtype=torch.uint8, pin_memory=pin)


if __name__ == "__main__":
    main(sys.argv)
