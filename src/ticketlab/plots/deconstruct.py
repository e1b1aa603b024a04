"""The figures of Zhou et al. (2019), "Deconstructing Lottery Tickets", read only from the store.

One figure per study: test accuracy at the early-stop iteration vs percent of weights
remaining (log x axis, decreasing to the right), one curve per variant, the mean over
replicates with a min/max band, as the paper draws its FC-network results.
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


def plot_study(store: ResultsStore, title: str, runs: dict[str, str], out: Path,
               formats=("png", "svg")) -> list[Path]:
    """Draw one study ({variant label: run id}) into `out` (a file stem); returns the files."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    # ten colours solid, then dashed: the criteria study has 14 curves
    ax.set_prop_cycle(cycler(linestyle=["-", "--"]) * cycler(color=plt.get_cmap("tab10").colors))
    for label, run_id in runs.items():
        tickets = [s for s in summarise(store.levels(run_id)) if s.branch == "imp"]
        if not tickets:
            continue
        xs, mean, lo, hi = _series(tickets, lambda s: s.early_stop_acc)
        line, = ax.plot(xs, [100 * v for v in mean], marker="o", markersize=3, label=label)
        ax.fill_between(xs, [100 * v for v in lo], [100 * v for v in hi], alpha=0.2, color=line.get_color())
    percent_axis(ax)
    ax.set_ylabel("test accuracy at early stop (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, handlelength=3, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title(f"{title} (mean over replicates; band: min to max)", fontsize=10)
    return save_figure(fig, out, formats)
