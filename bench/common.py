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

import h5py
import numpy as np

from vtl.defaults import CLIP_FPS
from vtl.features import DATASETS

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


def print_commands(commands: list[list[str]], work: Path) -> None:
    """The commands a table measured, as a reader would type them."""
    for command in commands:
        print(f"  $ {show_command(command, work)}")


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


def ffmpeg_version(ffmpeg: str) -> str:
    """The first line of `ffmpeg -version` (for benchmarks that compare with an ffmpeg)."""
    shown = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, check=True)
    return shown.stdout.splitlines()[0]


def ffmpeg_frames(ffmpeg: str, path: Path, pix_fmt: str, *filters: str) -> bytes:
    """The raw frames `ffmpeg -i PATH [FILTERS] -f rawvideo -pix_fmt PIX_FMT -` writes."""
    command = [ffmpeg, "-v", "error", "-i", str(path), *filters, "-f", "rawvideo"]
    return subprocess.run(
        [*command, "-pix_fmt", pix_fmt, "-"], capture_output=True, check=True
    ).stdout


# ------------------------------------------------------------------ shared by several benchmarks

BACKBONE = "efficientnet_lite0"  # what every extraction part of bench_scale embeds with
FPS = int(CLIP_FPS)  # benchmark videos run at the clip rate, so every frame is a clip frame
MIB = 2**20
# Trailers12k with one backbone: 50-150 clips per video (100 on average), 768-d, 10 labels, 3 splits
TRAILERS12K_SHAPE = dict(clips=(50, 150), feature_dim=768, n_labels=10, n_splits=3)


def write_trailers12k_shaped(path: Path, n_videos: int) -> Path:
    """A learnable synthetic feature file shaped like Trailers12k (`TRAILERS12K_SHAPE`)."""
    from probe.synthetic import write_synthetic_features

    return write_synthetic_features(
        path,
        n_videos=n_videos,
        signal=0.3,
        backbone="synthetic-768",
        **TRAILERS12K_SHAPE,
    )


def extract_command(manifest: Path, out: Path, *options: str) -> list[str]:
    """`extract run` of `BACKBONE` on the CPU, quiet, with more options."""
    return [
        *script("extract"),
        "run",
        "-m",
        str(manifest),
        "-b",
        BACKBONE,
        "-o",
        str(out),
        "--device",
        "cpu",
        "-q",
        *options,
    ]


def write_filler_manifest(folder: Path, name: str) -> Path:
    """`<folder>/<name>.csv`: video `<name>.mp4` (train) with `filler1.mp4` (val) and
    `filler2.mp4` (test), so that a one-video measurement has every split it needs."""
    from vtl.manifest import write_manifest

    return write_manifest(
        folder / f"{name}.csv",
        [name, "filler1", "filler2"],
        [f"{name}.mp4", "filler1.mp4", "filler2.mp4"],
        ["demo"],
        np.array([[1], [0], [1]], np.uint8),
        np.array([[0], [1], [2]], np.uint8),
    )


def compare_feature_files(a: Path, b: Path, chunk_rows: int = 1 << 16) -> str:
    """'identical', or what differs between two feature files (meta, index arrays, features).

    Features are compared a chunk of rows at a time, so files of any size fit in memory."""
    from vtl.features import FeatureFile

    with FeatureFile(a) as fa, FeatureFile(b) as fb:
        if fa.meta != fb.meta:
            return "meta differs"
    with h5py.File(a, "r") as ha, h5py.File(b, "r") as hb:
        for name in (n for n in DATASETS if n != "clips/features"):  # compared in chunks below
            if not np.array_equal(ha[name][:], hb[name][:]):
                return f"/{name} differs"
        da, db = ha["clips/features"], hb["clips/features"]
        if da.shape != db.shape:
            return f"features {da.shape} vs {db.shape}"
        worst, differing = 0.0, 0
        for start in range(0, da.shape[0], chunk_rows):
            xa = da[start : start + chunk_rows].astype(np.float32)
            diff = np.abs(xa - db[start : start + chunk_rows].astype(np.float32))
            worst, differing = max(worst, float(diff.max(initial=0))), differing + (diff > 0).sum()
    if not differing:
        return "identical"
    share = differing / max(da.size, 1)
    return f"index identical; features max |diff| {worst:.2g} ({share:.1%} differ)"
