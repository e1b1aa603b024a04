"""The figures of Zhou et al. (2019), "Deconstructing Lottery Tickets", read only from the store.

One figure per study: test accuracy at the early-stop iteration vs percent of weights
remaining (log x axis, decreasing to the right), one curve per variant, the mean over
replicates with a min/max band, as the paper draws its FC-network results. When one curve
collapses (the criteria study's `small_final` falls to chance), a second panel zooms on the
top few points so the curves that matter do not merge into one line.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import cycler  # noqa: E402

from ticketlab.plots.lth import _series, percent_axis, save_figure  # noqa: E402
from ticketlab.store.db import ResultsStore  # noqa: E402
from ticketlab.store.report import summarise  # noqa: E402


ZOOM_POINTS = 6.0


def zoom_limits(means: list[float], points: float = ZOOM_POINTS) -> tuple[float, float] | None:
    """The y range of the zoomed panel: the top `points` below the highest mean (in %), or
    None when every mean already lies within twice that (one panel shows them well)."""
    if not means or max(means) - min(means) <= 2 * points:
        return None
    top = max(means)
    return top - points, top + 0.1 * points


def plot_study(store: ResultsStore, title: str, runs: dict[str, str], out: Path,
               formats=("png", "svg")) -> list[Path]:
    """Draw one study ({variant label: run id}) into `out` (a file stem); returns the files."""
    curves = {}
    for label, run_id in runs.items():
        tickets = [s for s in summarise(store.levels(run_id)) if s.branch == "imp"]
        if tickets:
            xs, mean, lo, hi = _series(tickets, lambda s: s.early_stop_acc)
            curves[label] = (xs, [100 * v for v in mean], [100 * v for v in lo], [100 * v for v in hi])
    zoom = zoom_limits([m for _, mean, _, _ in curves.values() for m in mean])
    fig, axes = plt.subplots(1, 2 if zoom else 1, figsize=(14 if zoom else 9, 4.5), squeeze=False)
    for ax in axes[0]:
        # ten colours solid, then dashed: the criteria study has 14 curves
        ax.set_prop_cycle(cycler(linestyle=["-", "--"]) * cycler(color=plt.get_cmap("tab10").colors))
        for label, (xs, mean, lo, hi) in curves.items():
            line, = ax.plot(xs, mean, marker="o", markersize=3, label=label)
            ax.fill_between(xs, lo, hi, alpha=0.2, color=line.get_color())
        percent_axis(ax)
        ax.set_ylabel("test accuracy at early stop (%)")
        ax.grid(True, which="both", alpha=0.3)
    if zoom:
        axes[0][1].set_ylim(*zoom)
        axes[0][1].set_title(f"zoomed to {zoom[0]:.1f}-{zoom[1]:.1f}%", fontsize=10)
    axes[0][-1].legend(fontsize=7, handlelength=3, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(f"{title} (mean over replicates; band: min to max)", fontsize=10)
    return save_figure(fig, out, formats)
