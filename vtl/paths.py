"""Output paths checked at the boundary, before any work: one line naming the option and the fix."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from vtl.errors import UserError


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _check_writable(folder: Path, option: str, target: Path) -> None:
    # Create (and remove) a file there: the only check that holds for every user, root
    # included, and for read-only file systems.
    try:
        handle, name = tempfile.mkstemp(prefix=".vtl-write-check-", dir=folder)
    except OSError as error:
        raise UserError(
            f"{option} {target}: cannot write in {folder} ({error.strerror or error}); "
            "choose a folder you can write to"
        ) from None
    os.close(handle)
    os.unlink(name)


def check_output_dir(path: str | Path, option: str = "--out") -> Path:
    """`path` is a folder we can create or write in; nothing is created.

    Raises:
        UserError: `path` (or a folder above it) is a file, or the folder is not writable.
    """
    path = Path(path)
    found = _existing_ancestor(path)
    if not found.is_dir():
        if found == path:
            raise UserError(
                f"{option} {path}: is a file, not a folder; give a folder path (it is created "
                "if missing)"
            )
        raise UserError(f"{option} {path}: {found} is a file, so no folder can be made under it")
    _check_writable(found, option, path)
    return path


def check_output_file(path: str | Path, option: str = "--out") -> Path:
    """`path` is a file we can create or replace; nothing is created.

    Raises:
        UserError: `path` is a folder, a folder above it is a file, or it is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path}: is a folder; give a file name")
    check_output_dir(path.parent, option)
    return path
