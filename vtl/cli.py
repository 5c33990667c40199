"""What both console scripts share: one-line errors, exit codes, logging to stderr, and the
way a command takes a table of shared options (`shared_options`).

No command ends in a bare traceback. A user error (`UserError`: bad input, bad options, a full
disk) is one line and exit code 2. An error nobody anticipated is one line too, naming the
command, the exception and where in our code it was raised, with the full traceback written to a
log file that the line names (`crash_log_dir`), and exit code 70 (sysexits' EX_SOFTWARE).
"""

from __future__ import annotations

import datetime
import errno
import functools
import inspect
import logging
import os
import platform
import sys
import sysconfig
import tempfile
import traceback
import warnings
from pathlib import Path

import typer

from vtl import __version__
from vtl.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_SOFTWARE = 70
# A write refused for lack of room: the user frees space (or lifts a limit) and reruns.
_NO_ROOM = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# The system refused a path: the user points the command elsewhere or fixes the permissions.
_PATH_REFUSED = {
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ENOENT,
    errno.ENAMETOOLONG,
}
_STDLIB = str(Path(sysconfig.get_paths()["stdlib"]).resolve())
try:  # recent typer carries its own copy of click, whose usage errors derive from this class
    from typer import TyperException as _UsageError
except ImportError:  # older typer uses click's
    from click import ClickException as _UsageError


def run_app(app: typer.Typer) -> None:
    """Run a typer app with the error handling of the module docstring; exits."""
    for info in app.registered_commands:  # help screens wrap at the terminal's width
        if info.help is None and info.callback is not None and info.callback.__doc__:
            info.help = reflow(info.callback.__doc__)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        with warnings.catch_warnings():  # restores the default display after the command
            warnings.showwarning = _show_warning
            result = app(standalone_mode=False)
    except UserError as error:
        _fail(str(error), EXIT_USER_ERROR)
    except OSError as error:
        if error.errno in _NO_ROOM:
            _fail(no_room_message(error), EXIT_USER_ERROR)
        if error.errno in _PATH_REFUSED and error.filename:
            log = write_crash_log(error)
            _fail(
                f"{os.fspath(error.filename)}: {os.strerror(error.errno)} (details in {log})",
                EXIT_USER_ERROR,
            )
        _unexpected(error)
    except typer.Exit as stop:
        sys.exit(stop.exit_code)
    except _UsageError as error:  # a missing or unknown option: click's usage line, exit 2
        error.show()
        sys.exit(error.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as error:  # noqa: BLE001 - the last line of defence, see the docstring
        _unexpected(error)
    sys.exit(result if isinstance(result, int) else 0)


def reflow(docstring: str) -> str:
    """A command's docstring with each paragraph on one line. typer keeps the line breaks of
    the paragraphs after the first, so text wrapped at the source's width broke again on an
    80-column terminal ("... the ridge probe / cross-validated / over ...")."""
    paragraphs = inspect.cleandoc(docstring).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def shared_options(table: dict[str, tuple], names):
    """A decorator that gives a command the options `names` of `table` (option name ->
    (annotation, default)) where its `shared` parameter stands, so `--help` lists them in that
    place; the command receives their values as one dict, `shared`. Each console script keeps
    its own table (`probe.options.SHARED`, `extract.cli.SHARED`)."""
    names = tuple(names)

    def decorate(command):
        signature = inspect.signature(command, eval_str=True)
        params = []
        for param in signature.parameters.values():
            if param.name != "shared":
                params.append(param)
                continue
            for name in names:
                annotation, default = table[name]
                params.append(param.replace(name=name, default=default, annotation=annotation))

        @functools.wraps(command)
        def wrapper(**values):
            shared = {name: values.pop(name) for name in names}
            return command(**values, shared=shared)

        wrapper.__signature__ = signature.replace(parameters=params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line on stderr, "warning: ...": a UserWarning (ours: a label left out, a
    score skipped) as its message alone, any other with its category and the file and line
    that raised it (not Python's two lines with the source of the call)."""
    text = " ".join(str(message).split())
    if not issubclass(category, UserWarning):
        text = f"{category.__name__}: {text} (at {Path(filename).name}:{lineno})"
    print(f"warning: {text}", file=file or sys.stderr)


def _fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def _unexpected(error: BaseException) -> None:
    log = write_crash_log(error)
    message = " ".join(str(error).split())[:300]
    what = f"{type(error).__name__}: {message}" if message else type(error).__name__
    _fail(
        f"{_command()} failed unexpectedly with {what} ({where(error)}); the full traceback is "
        f"in {log} (please include it if you report this)",
        EXIT_SOFTWARE,
    )


def _command() -> str:
    words = [Path(sys.argv[0]).name, *[a for a in sys.argv[1:2] if not a.startswith("-")]]
    return "`" + " ".join(words) + "`"


def where(error: BaseException) -> str:
    """'at FILE:LINE in FUNCTION' of the innermost frame outside the libraries (an error deep in
    torch or h5py is placed at the line of ours that called them)."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "no traceback"
    ours = [f for f in frames if not _is_library(f.filename)]
    frame = (ours or frames)[-1]
    return f"at {Path(frame.filename).name}:{frame.lineno} in {frame.name}"


def _is_library(filename: str) -> bool:
    path = str(Path(filename).resolve())
    return "-packages" in path or path.startswith(_STDLIB)


def crash_log_dir() -> Path:
    """Where tracebacks go: $VTL_LOG_DIR, else the user's cache folder (vtl/logs), else the
    system's temporary folder."""
    if os.environ.get("VTL_LOG_DIR"):
        return Path(os.environ["VTL_LOG_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "vtl" / "logs"


def write_crash_log(error: BaseException) -> Path:
    """Write the command line, versions and the full traceback of `error`; return the file."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"{Path(sys.argv[0]).name}-{stamp}-{os.getpid()}.log"
    text = "".join(
        [
            f"command: {' '.join(sys.argv)}\n",
            f"cwd: {os.getcwd()}\n",
            f"vtl {__version__}, Python {platform.python_version()}, {platform.platform()}\n",
            *(
                f"{m} {getattr(sys.modules[m], '__version__', '?')}\n"
                for m in ("torch", "numpy", "h5py", "av")
                if m in sys.modules
            ),
            "\n",
            *traceback.format_exception(error),
        ]
    )
    for folder in (crash_log_dir(), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(text)
            return path
        except OSError:
            continue
    return Path("(could not write a log file)")


def no_room_message(error: OSError) -> str:
    """One line for a write that failed for lack of room (ENOSPC, EFBIG, EDQUOT). Our writers
    raise it with the file's final path as `filename`."""
    where_ = f"cannot write {os.fspath(error.filename)}" if error.filename else "cannot write"
    return (
        f"{where_}: {os.strerror(error.errno)} (disk full or a file-size limit); free space and "
        "rerun the same command to resume"
    )
