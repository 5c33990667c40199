"""Files that appear whole or not at all: written under a temporary name next to their final
path, then renamed (`os.replace` is atomic on one file system). A reader, a resumed run or a
shard never sees half a file, and a kill at any moment leaves at most a temporary file behind
(named `.<name>.tmp-<pid>`, which the writers' next run ignores or removes).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def temporary_path(path: str | Path) -> Path:
    """The temporary name `path` is written under: `.<name>.tmp-<pid>` in the same folder."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Write to the yielded temporary path; on success it replaces `path`, on any exception it
    is removed and nothing changes at `path`. An OSError raised inside names `path` (a failed
    write of a temporary file would otherwise name a file the user never asked for)."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
    except OSError as error:
        tmp.unlink(missing_ok=True)
        if error.errno is None:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns `path`."""
    path = Path(path)
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns `path`."""
    return write_bytes(path, text.encode())
