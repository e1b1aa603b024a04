"""Instability figures (Frankle et al. 2020), read only from a run's stability files.

`stability_paths.png`: test error along the linear path between the copies, one panel per
network (dense, each ticket, each baseline), one line per rewind point k (the paper's
interpolation plots, Figures 2-5), mean over pairs and seeds. `stability_barriers.png`: test
error barrier against k, one line per network (the paper's instability-vs-k plots), mean over
seeds, so tickets and their random baselines sit beside the dense network.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter  # noqa: E402

from ticketlab.analysis.stability_study import CSV_NAME, STUDY_FOLDER  # noqa: E402

PATHS_PNG = "stability_paths.png"
BARRIERS_PNG = "stability_barriers.png"


def _label(branch: str, level: int, density: float | None = None) -> str:
    if level == 0:
        return "dense"
    return f"{branch} level {level}" + ("" if density is None else f" ({density:.1%})")


def _order(item) -> tuple:
    """Dense first, then by level, the ticket before its baselines."""
    (branch, level), _ = item
    return level, branch != "imp", branch


def _mean(rows: list[list[float]]) -> list[float]:
    return [sum(column) / len(column) for column in zip(*rows)]


def _paths(run_dir: Path) -> dict[tuple[str, int], dict[int, tuple[list[float], list[float]]]]:
    """(branch, level) -> k -> (alphas, mean test error over every stored pair of every seed)."""
    curves: dict = defaultdict(lambda: defaultdict(list))
    for record in sorted(run_dir.glob(f"seed_*/{STUDY_FOLDER}/*/level_*/k_*/path_*.json")):
        k_dir = record.parent
        branch, level, k = k_dir.parent.parent.name, int(k_dir.parent.name[6:]), int(k_dir.name[2:])
        curves[(branch, level)][k].append(json.loads(record.read_text()))
    return {subject: {k: (paths[0]["alphas"], _mean([p["test_error"] for p in paths
                                                     if len(p["alphas"]) == len(paths[0]["alphas"])]))
                      for k, paths in sorted(by_k.items())}
            for subject, by_k in sorted(curves.items(), key=_order)}


def plot_stability(run_dir: str | Path, out_dir: str | Path | None = None, suffix: str = ".png") -> list[Path]:
    """Write both figures into `run_dir` (or `out_dir`; `suffix` picks the format) from its
    stability files; returns their paths (none when the run has no stability rows)."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir
    table = run_dir / CSV_NAME
    if not table.is_file():
        return []
    rows = list(csv.DictReader(io.StringIO(table.read_text())))
    paths = _paths(run_dir)
    written = []
    if paths:
        fig, axes = plt.subplots(1, len(paths), figsize=(4 * len(paths), 3.4), squeeze=False, sharey=True)
        for ax, ((branch, level), by_k) in zip(axes[0], paths.items()):
            for k, (alphas, errors) in by_k.items():
                ax.plot(alphas, [100 * e for e in errors], marker=".", label=f"k = {k}")
            ax.set_title(_label(branch, level))
            ax.set_xlabel("interpolation α")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel("test error (%)")
        fig.tight_layout()
        written.append(_save(fig, (out / PATHS_PNG).with_suffix(suffix)))
    series: dict = defaultdict(lambda: defaultdict(list))
    densities = {}
    for row in rows:
        subject = (row["branch"], int(row["level"]))
        series[subject][int(row["k"])].append(100 * float(row["test_barrier"]))
        densities[subject] = float(row["density"])
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for subject, by_k in sorted(series.items(), key=_order):
        ks = sorted(by_k)
        ax.plot(ks, [sum(by_k[k]) / len(by_k[k]) for k in ks], marker="o",
                linestyle="-" if subject[0] == "imp" else "--", label=_label(*subject, densities[subject]))
    measured = sorted({k for by_k in series.values() for k in by_k})
    ax.set_xscale("symlog", linthresh=max(1, min((k for k in measured if k > 0), default=1)))
    ax.xaxis.set_major_locator(FixedLocator(measured))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("rewind iteration k")
    ax.set_ylabel("test error barrier (points)")
    ax.set_title("instability")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    written.append(_save(fig, (out / BARRIERS_PNG).with_suffix(suffix)))
    return written


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
