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
    """One line for a write that failed for lack of room (ENOSPC, EFBIG, EDQUOT). Our writers
    raise it with the file's final path as `filename`."""
    where = f"cannot write {os.fspath(error.filename)}" if error.filename else "cannot write"
    return (
        f"{where}: {os.strerror(error.errno)} (disk full or a file-size limit); free space and "
        "rerun the same command to resume"
    )
