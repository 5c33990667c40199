"""Pictures of the transferability matrix: a μAP heatmap and μAP against compute.

Both take plain values (row names, probe names, {(row, probe): {"mean", "std"}}), so they know
nothing of how cells were trained. matplotlib runs on the Agg backend (no display needed).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
# Names are drawn as they are: a backbone named "cost $\frac{$" is text, not a formula (with
# mathtext on, such a name failed the report after its runs had been trained).
matplotlib.rcParams["text.parse_math"] = False

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# No software/date stamp in the PNG: the same matrix gives the same bytes.
_PNG_META = {"Software": None}


def plot_heatmap(
    path: Path,
    rows: list[str],
    probes: list[str],
    uap: dict[tuple[str, str], dict],
    within_noise: set[tuple[str, str]] = frozenset(),
) -> Path:
    """Heatmap of test μAP (rows backbones, columns probes), each cell annotated mean ± std;
    each column's best in bold, and the cells in `within_noise` (the best cannot be told apart
    from them) marked ≈."""
    grid = np.full((len(rows), len(probes)), np.nan)
    for i, row in enumerate(rows):
        for j, probe in enumerate(probes):
            value = uap.get((row, probe))
            if value is not None and value["mean"] is not None:
                grid[i, j] = value["mean"]
    width = 3.0 + 1.6 * len(probes) + 0.07 * max((len(r) for r in rows), default=0)
    fig, ax = plt.subplots(figsize=(width, 1.2 + 0.45 * len(rows)))
    finite = grid[np.isfinite(grid)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    image = ax.imshow(
        np.ma.masked_invalid(grid), cmap="viridis", vmin=low, vmax=high, aspect="auto"
    )
    for i, row in enumerate(rows):
        for j, probe in enumerate(probes):
            if not np.isfinite(grid[i, j]):
                continue
            std = uap[(row, probe)]["std"] or 0.0
            # Dark text on the light end of viridis, light text on the dark end.
            light = (grid[i, j] - low) / (high - low) > 0.6
            best = grid[i, j] == np.nanmax(grid[:, j])
            mark = " ≈" if (row, probe) in within_noise and not best else ""
            ax.text(
                j,
                i,
                f"{grid[i, j]:.2f}{mark}\n± {std:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                fontweight="bold" if best else "normal",
                color="black" if light else "white",
            )
    ax.set_xticks(range(len(probes)), probes)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("probe")
    ax.set_title("test μAP (%), mean ± std over splits x seeds\nbold: best; ≈: within noise of it")
    fig.colorbar(image, ax=ax, label="μAP (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata=_PNG_META)
    plt.close(fig)
    return path


def plot_cost(
    path: Path,
    rows: list[str],
    probes: list[str],
    uap: dict[tuple[str, str], dict],
    gflops: dict[str, float | None],
) -> Path:
    """μAP against GFLOPs per clip (log scale), one point per (row, probe) cell, marker by probe.

    Each row is labelled once, at its best point; rows with no known cost are left out and
    counted in the title.
    """
    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    markers = "osD^v<>p*h"
    left_out, plotted = 0, 0
    best: dict[str, tuple[float, float]] = {}  # row -> its best point, where it is labelled
    for j, probe in enumerate(probes):
        xs, ys, names = [], [], []
        for row in rows:
            value = uap.get((row, probe))
            if value is None or value["mean"] is None:
                continue
            cost = gflops.get(row)
            if cost is None or not cost > 0 or not math.isfinite(cost):
                left_out += 1
                continue
            xs.append(cost)
            ys.append(value["mean"])
            names.append(row)
        if xs:
            ax.scatter(xs, ys, marker=markers[j % len(markers)], label=probe, s=40)
            for x, y, name in zip(xs, ys, names, strict=True):
                if name not in best or y > best[name][1]:
                    best[name] = (x, y)
            plotted += len(xs)
    # One label per row (at its best probe): the probes of a row share its x, labels would pile.
    for name, (x, y) in best.items():
        ax.annotate(
            name.replace(" (late fusion)", " (fusion)"),
            (x, y),
            fontsize=7,
            xytext=(4, 3),
            textcoords="offset points",
        )
    title = "test μAP against compute, one point per cell"
    if left_out:
        title += f"\n({left_out} cell(s) without a known GFLOPs figure left out)"
    if plotted:
        ax.set_xscale("log")
        ax.margins(x=0.12, y=0.08)  # room for the labels of the outermost points
        ax.legend(title="probe")
    else:
        ax.text(
            0.5,
            0.5,
            "no backbone with a known GFLOPs figure",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_xlabel("GFLOPs per 24-frame clip (backbone; fusion: sum)")
    ax.set_ylabel("test μAP (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata=_PNG_META)
    plt.close(fig)
    return path


def plot_differences(path: Path, sections: list[tuple[str, list[tuple[str, list, str]]]]) -> Path:
    """Each variant's paired μAP differences from its baseline: one dot per (split, seed) pair,
    their mean with a bar of ± one std, a line at 0; one panel per backbone.

    `sections`: (backbone, [(variant label, differences, verdict)]).
    """
    sections = [(name, rows) for name, rows in sections if rows] or [("(no variants)", [])]
    heights = [max(1, len(rows)) for _, rows in sections]
    fig, axes = plt.subplots(
        len(sections),
        1,
        figsize=(8.0, 1.2 + 0.45 * sum(heights)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    colors = {"distinguishable": "#c0392b", "within noise": "#7f8c8d"}
    for ax, (backbone, rows) in zip(axes[:, 0], sections, strict=True):
        for i, (_, values, verdict) in enumerate(rows):
            values = np.asarray(values, dtype=np.float64)
            color = colors.get(verdict, "black")
            jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else [0.0]
            ax.scatter(values, i + np.asarray(jitter), s=14, color=color, alpha=0.6)
            std = values.std(ddof=1) if len(values) > 1 else 0.0
            ax.errorbar(values.mean(), i, xerr=std, fmt="D", color=color, capsize=4, markersize=6)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(rows)), [label for label, _, _ in rows])
        ax.invert_yaxis()
        ax.set_title(backbone, fontsize=10)
        ax.grid(True, axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("test μAP difference from the baseline (percentage points), per run")
    fig.suptitle(
        "paired differences: dots = split x seed runs, ◆ = mean ± std; red: distinguishable",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata=_PNG_META)
    plt.close(fig)
    return path
