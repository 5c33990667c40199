"""What the benchmarks share: measured child processes, tables, the machine's description.

Every measured command runs in a fresh process started by a small launcher (see `_LAUNCHER`),
which reports the command's wall time, user and system CPU time, minor page faults and peak RSS
(its own and those of the descendants it waited for, such as the extraction's decoder process),
and the peak of the whole process tree's RSS summed (sampled every 50 ms).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass
class Child:
    command: list[str]
    seconds: float  # wall time, process start to exit
    peak_mib: float  # the largest peak RSS of the command and its waited-for descendants
    tree_peak_mib: float  # the peak of the RSS of the whole process tree, summed (sampled)
    user_seconds: float  # user CPU time of it and the descendants it waited for
    sys_seconds: float  # system (kernel) CPU time, likewise
    minor_faults: int
    rc: int
    out: str
    err: str

    @property
    def cpu_seconds(self) -> float:
        return self.user_seconds + self.sys_seconds

    @property
    def sys_share(self) -> float:
        """Kernel time as a share of all CPU time."""
        return self.sys_seconds / self.cpu_seconds if self.cpu_seconds else 0.0


# A process started by this (large) benchmark process would inherit its peak RSS: Linux keeps the
# RSS high-water mark of the image replaced by exec (and fork/vfork share or copy the parent's
# pages), so ru_maxrss of a direct child is never below the benchmark's own. This small launcher
# starts the command instead, so the command's peak RSS is its own.
_LAUNCHER = """
import json, os, subprocess, sys, threading, time

def tree_rss(root):
    total, todo = 0, [root]
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
    return total

started = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:])
peak, done = [0], threading.Event()
def sample():
    while not done.wait(0.05):
        peak[0] = max(peak[0], tree_rss(proc.pid))
sampler = threading.Thread(target=sample, daemon=True)
if os.path.isdir("/proc"):
    sampler.start()
_, status, usage = os.wait4(proc.pid, 0)
done.set()
proc.returncode = os.waitstatus_to_exitcode(status)
seconds = time.perf_counter() - started
with open(sys.argv[1], "w") as handle:
    json.dump({"seconds": seconds, "user": usage.ru_utime, "sys": usage.ru_stime,
               "minflt": usage.ru_minflt, "maxrss_kib": usage.ru_maxrss,
               "tree_peak": peak[0], "rc": proc.returncode}, handle)
"""


def run_child(
    command: list[str], threads: int | None = None, check: bool = True, env: dict | None = None
) -> Child:
    """Run a command in a fresh process; return its times, faults and its own peak RSS."""
    environment = dict(os.environ)
    environment.update(env or {})
    if threads is not None:
        environment["OMP_NUM_THREADS"] = environment["MKL_NUM_THREADS"] = str(threads)
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.NamedTemporaryFile("r", suffix=".json") as report,
    ):
        subprocess.run(
            [sys.executable, "-c", _LAUNCHER, report.name, *command],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            check=True,
        )
        usage = json.loads(Path(report.name).read_text())
        out.seek(0)
        err.seek(0)
        child = Child(
            command,
            usage["seconds"],
            usage["maxrss_kib"] / 1024,
            max(usage["tree_peak"], usage["maxrss_kib"] * 1024) / 2**20,
            usage["user"],
            usage["sys"],
            usage["minflt"],
            usage["rc"],
            out.read(),
            err.read(),
        )
    if check and child.rc != 0:
        raise RuntimeError(
            f"exit {child.rc}: {shlex.join(command)}\n{child.err[-3000:]}\n{child.out[-1000:]}"
        )
    return child


def script(name: str) -> list[str]:
    """A console script of this environment, or `python -m` its module."""
    path = BIN / name
    return [str(path)] if path.is_file() else [sys.executable, "-m", f"{name}.cli"]


def show_command(command: list[str], work: Path) -> str:
    return shlex.join(command).replace(str(work), "$WORK").replace(str(BIN) + "/", ".venv/bin/")


def table(title: str, header: list[str], rows: list[list]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.ljust(w) if i == 0 else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    print(f"\n## {title}")
    print(line(header))
    for row in cells:
        print(line(row))


def machine() -> list[str]:
    import h5py
    import torch

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
        memory = f"{int(mem) / 2**20:.1f} GiB"
    except (OSError, IndexError, ValueError):
        memory = "unknown"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no"
    return [
        f"cpu: {model}; {os.cpu_count()} logical cores, {usable} usable; memory {memory}",
        f"python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads by default), h5py {h5py.__version__}, "
        f"{platform.platform()}",
        f"cuda: {gpu}",
    ]


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def report_json(path: Path | None, data: dict) -> None:
    """Also write the figures as JSON (--json) for notes and READMEs."""
    if path is not None:
        Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")
