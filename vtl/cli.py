"""What both console scripts share: one-line user errors, exit codes, logging to stderr."""

from __future__ import annotations

import logging
import sys

import click
import typer

from vtl.errors import UserError

EXIT_USER_ERROR = 2


def run_app(app: typer.Typer) -> None:
    """Run a typer app; a `UserError` becomes one line on stderr and exit code 2, no traceback."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        result = app(standalone_mode=False)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
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
