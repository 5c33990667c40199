"""Per-video commits: what makes a killed run resumable.

Each finished video is written as one small file under a work folder next to the feature file
(temporary name, then rename), so SIGKILL at any moment loses at most the videos in flight. When
every video of the shard is done, the work folder is assembled into the feature file in manifest
order and removed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from vtl.atomic import replacing
from vtl.errors import UserError


def _key(video_id: str) -> str:
    # Video ids may hold any character; the file name must not.
    return hashlib.sha1(video_id.encode()).hexdigest()[:20]


def _write_atomic(path: Path, write) -> None:
    # A full disk, say, names the file and leaves no partial one (`vtl.atomic`).
    with replacing(path) as tmp, open(tmp, "wb") as handle:
        write(handle)


def work_folder(output: Path) -> Path:
    """The work folder of a feature file (or part file): `.<stem>.work` next to it. It is what
    a run locks (`vtl.lock`): one owner per output."""
    output = Path(output)
    return output.with_name(f".{output.stem}.work")


class WorkStore:
    """Committed per-video results of one feature file being built.

    Args:
        folder: the work folder (created).
        fingerprint: everything that determines the arrays (backbone, weights, configuration).
            A folder made with another fingerprint is refused, never mixed.
    """

    def __init__(self, folder: Path, fingerprint: dict):
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        stamp = self.folder / "fingerprint.json"
        if stamp.is_file():
            saved = json.loads(stamp.read_text())
            if saved != fingerprint:
                changed = sorted(
                    k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k)
                )
                if {"recipe", "software_version"} & set(changed):  # this code cannot resume it
                    raise UserError(
                        f"{self.folder}: an unfinished run of other code is here (recipe "
                        f"{saved.get('recipe', 'none recorded')}, this code's "
                        f"{fingerprint.get('recipe')}): its videos' arrays would not match this "
                        "code's; delete that folder to start over"
                    )
                raise UserError(
                    f"{self.folder}: a run with another configuration is in progress here "
                    f"(differs in {', '.join(changed)}); rerun with the same options to resume, "
                    "or delete that folder to start over"
                )
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            payload = json.dumps(fingerprint, sort_keys=True, indent=1).encode()
            _write_atomic(stamp, lambda handle: handle.write(payload))
        for leftover in self.folder.glob(".*.tmp-*"):  # writes cut short by a kill
            leftover.unlink(missing_ok=True)
        self._done = {p.stem for p in self.folder.glob("*.npz")}
        self._failed = {p.stem for p in self.folder.glob("*.failed.json")}
        self._failed = {name.removesuffix(".failed") for name in self._failed}

    def is_done(self, video_id: str) -> bool:
        """True when the video is committed, as features or as a failure."""
        key = _key(video_id)
        return key in self._done or key in self._failed

    def commit(self, video_id: str, arrays: dict[str, np.ndarray]) -> None:
        key = _key(video_id)
        _write_atomic(
            self.folder / f"{key}.npz",
            lambda handle: np.savez(handle, video_id=np.array(video_id), **arrays),
        )
        self._done.add(key)

    def commit_failure(self, video_id: str, failure: dict) -> None:
        key = _key(video_id)
        payload = json.dumps(failure, sort_keys=True).encode()
        _write_atomic(self.folder / f"{key}.failed.json", lambda handle: handle.write(payload))
        self._failed.add(key)

    def load(self, video_id: str) -> dict[str, np.ndarray] | None:
        """The committed arrays of a video, or None if it failed."""
        key = _key(video_id)
        if key in self._failed:
            return None
        with np.load(self.folder / f"{key}.npz") as data:
            return {name: data[name] for name in data.files if name != "video_id"}

    def failure(self, video_id: str) -> dict:
        return json.loads((self.folder / f"{_key(video_id)}.failed.json").read_text())

    def others(self, video_ids) -> int:
        """How many committed videos (features or failures) are not among `video_ids`: an
        earlier run's over more videos, which the run it was cut short of can still take."""
        wanted = {_key(v) for v in video_ids}
        return len((self._done | self._failed) - wanted)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
