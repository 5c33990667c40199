"""What both console scripts share: one-line user errors, exit codes, logging to stderr."""

from __future__ import annotations

import errno
import logging
import os
import sys

import click
import typer

from vtl.errors import UserError

EXIT_USER_ERROR = 2
# A write refused for lack of room: the user frees space (or lifts a limit) and reruns.
_NO_ROOM = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def run_app(app: typer.Typer) -> None:
    """Run a typer app; a `UserError` becomes one line on stderr and exit code 2, no traceback."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        result = app(standalone_mode=False)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except OSError as error:
        if error.errno not in _NO_ROOM:
            raise
        print(f"error: {no_room_message(error)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except click.exceptions.Exit as stop:
        sys.exit(stop.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)


def no_room_message(error: OSError) -> str:
    """One line for a write that failed for lack of room (ENOSPC, EFBIG, EDQUOT)."""
    path = error.filename or _path_being_written(error.__traceback__)
    where = f"cannot write {os.fspath(path)}" if path else "cannot write a file"
    reason = os.strerror(error.errno)
    return (
        f"{where}: {reason} (disk full or a file-size limit); free space and rerun the same "
        "command to resume"
    )


def _path_being_written(tb) -> str | None:
    """The file a failed write was writing, when the OSError does not say (a write() on an open
    file raises without a file name): the innermost frame's open file or path variable."""
    found = None
    while tb is not None:
        names = tb.tb_frame.f_locals
        for name in ("tmp", "_tmp", "path", "handle", "self"):
            value = names.get(name)
            if name == "self":
                value = getattr(value, "_tmp", None)
            elif name == "handle":
                value = getattr(value, "name", None)
            if isinstance(value, (str, os.PathLike)) and str(value):
                found = value
                break
        tb = tb.tb_next
    return found
