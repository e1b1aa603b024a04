"""The report's figures as inline SVG text, drawn by the plot modules into a scratch folder."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Callable

METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)


def svg_text(path: Path) -> str:
    """An SVG file as an element to put in HTML: the XML prolog and doctype dropped, fixed
    pixel sizes kept as the figure's size (scaled down by CSS on narrow screens)."""
    text = path.read_text(encoding="utf-8")
    start = text.find("<svg")
    text = text[start:] if start >= 0 else ""
    return METADATA.sub("", text)  # matplotlib's RDF block: links to licence and schema pages, not needed


def drawn(draw: Callable[[Path], list[Path]]) -> list[str]:
    """Run `draw(folder)` (which writes figures there and returns their paths) in a scratch
    folder; the SVG ones as text."""
    with tempfile.TemporaryDirectory(prefix="ticketlab-report-") as folder:
        return [svg_text(path) for path in draw(Path(folder)) if path.suffix == ".svg"]


def lth_figure(store, run_ids: list[str]) -> list[str]:
    """Accuracy and early-stop iteration against weights remaining (`ticketlab plot`'s figure)."""
    from ticketlab.plots import plot_runs

    return drawn(lambda folder: plot_runs(store, run_ids, folder / "lth", formats=("svg",)))


def study_figure(store, title: str, runs: dict[str, str]) -> list[str]:
    """Several runs' tickets on one axis (`ticketlab deconstruct`'s figure), labelled by variant."""
    from ticketlab.plots.deconstruct import plot_study

    return drawn(lambda folder: plot_study(store, title, runs, folder / "study", formats=("svg",)))


def stability_figures(run_dir: Path) -> list[str]:
    """The run's instability figures (`ticketlab stability`'s), when it has a study."""
    from ticketlab.plots.stability import plot_stability

    return drawn(lambda folder: plot_stability(run_dir, out_dir=folder, suffix=".svg"))


def curves_figure(store, run_id: str, seed: int, branch: str = "imp") -> list[str]:
    """Test accuracy against iteration, one line per level of `branch` for `seed`: how training
    goes as the network thins (from the store's evaluations)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ticketlab.plots.lth import save_figure

    levels = sorted(r.level for r in store.levels(run_id) if r.seed == seed and r.branch == branch)
    if not levels:
        return []
    fig, ax = plt.subplots(figsize=(7, 3.6))
    cmap = plt.get_cmap("viridis")
    for index, level in enumerate(levels):
        points = sorted((step, value) for step, name, value in store.metrics(run_id, seed, branch, level)
                        if name == "test_acc")
        row = store.level(run_id, seed, branch, level)
        ax.plot([s for s, _ in points], [100 * v for _, v in points], color=cmap(index / max(1, len(levels) - 1)),
                label=f"level {level} ({row.density:.1%})", linewidth=1.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{branch}, seed {seed}: test accuracy while training, per level", fontsize=10)
    ax.grid(alpha=0.3)
    if len(levels) <= 12:
        ax.legend(fontsize=7, ncol=2)
    return drawn(lambda folder: save_figure(fig, folder / "curves", ("svg",)))

