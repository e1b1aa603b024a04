"""The LTH paper's two classic figures, read only from the store.

Figure A: test accuracy at early stop vs percent of weights remaining (log x axis,
decreasing to the right as in Frankle & Carbin 2019, Figure 3), mean over replicates with a
band of ± one standard deviation (the spread `ticketlab show` prints), baselines on the same
axes. Figure B: early-stop iteration vs percent
remaining.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter  # noqa: E402

from ticketlab.store.db import ResultsStore  # noqa: E402
from ticketlab.store.report import Summary, summarise  # noqa: E402


def _series(summaries: list[Summary], pick):
    """x, mean, mean - sd, mean + sd (sd is 0 for one seed: no band)."""
    xs = [100 * s.density for s in summaries]
    stats = [pick(s) for s in summaries]
    return xs, [m for m, _, _, _ in stats], [m - sd for m, sd, _, _ in stats], [m + sd for m, sd, _, _ in stats]


PERCENT_TICKS = (100, 70, 50, 30, 20, 10, 7, 5, 3.5, 2, 1, 0.5, 0.2, 0.1)


def percent_axis(ax) -> None:
    """A log x axis of percent of weights remaining, decreasing to the right as in the papers."""
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.xaxis.set_major_locator(FixedLocator(PERCENT_TICKS))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("percent of weights remaining")


def plot_runs(store: ResultsStore, run_ids: list[str], out: Path, formats=("png", "svg")) -> list[Path]:
    """Draw both figures for `run_ids` into `out` (a file stem); returns the files written."""
    fig, (ax_acc, ax_iter) = plt.subplots(1, 2, figsize=(12, 4.5))
    for run_id in run_ids:
        summaries = summarise(store.levels(run_id))
        spec = store.run_spec(run_id) or {}
        name = f"{spec.get('model', {}).get('name', '?')}/{spec.get('data', {}).get('name', '?')} {run_id[:6]}"
        branches = sorted({s.branch for s in summaries}, key=lambda b: (b != "imp", b))
        for branch in branches:
            rows = [s for s in summaries if s.branch == branch]
            label = name if branch == "imp" else f"{name} {branch}"
            style = "-o" if branch == "imp" else "--s"
            for ax, pick in ((ax_acc, lambda s: s.early_stop_acc), (ax_iter, lambda s: s.early_stop_iteration)):
                xs, mean, lo, hi = _series(rows, pick)
                scale = 100 if ax is ax_acc else 1
                line, = ax.plot(xs, [v * scale for v in mean], style, markersize=3, label=label)
                ax.fill_between(xs, [v * scale for v in lo], [v * scale for v in hi], alpha=0.2, color=line.get_color())
    for ax, ylabel in ((ax_acc, "test accuracy at early stop (%)"), (ax_iter, "early-stop iteration")):
        percent_axis(ax)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_acc.legend(fontsize=8)
    fig.suptitle("mean over seeds; band: ± 1 standard deviation over seeds")
    return save_figure(fig, out, formats)


def save_figure(fig, out: Path, formats) -> list[Path]:
    """Write `fig` to `out` (a file stem) in each format, close it, return the files."""
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = out.with_suffix(f".{fmt}")
        fig.savefig(path, dpi=120)
        written.append(path)
    plt.close(fig)
    return written
