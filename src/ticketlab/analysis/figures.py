"""Figures of a comparison: the three pairwise matrices and the surviving-input maps."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ticketlab.analysis.compare import Comparison  # noqa: E402


def plot_comparison(c: Comparison, out: Path, formats=("png",)) -> list[Path]:
    """`<out>_matrices.<fmt>` (IoU, Hamming, Spearman) and `<out>_inputs.<fmt>` (one map per ticket)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    labels = [t.label for t in c.tickets]
    n = len(labels)
    size = max(4.0, 0.45 * n + 2)
    fig, axes = plt.subplots(1, 3, figsize=(3 * size, size))
    for ax, (title, mat, vmin, vmax) in zip(axes, (("IoU of kept weights", c.iou, 0, 1),
                                                   ("Hamming / prunable weights", c.hamming, 0, None),
                                                   (f"Spearman rho ({c.criterion}, both kept)", c.spearman, -1, 1))):
        image = ax.imshow(mat, vmin=vmin, vmax=vmax, cmap="viridis")
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels, fontsize=7)
        if n <= 12:
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=6, color="w")
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    written = []
    for fmt in formats:
        path = out.with_name(out.name + f"_matrices.{fmt}")
        fig.savefig(path, dpi=120 if n <= 12 else 80)
        written.append(path)
    plt.close(fig)
    maps = [(t, m) for t, m in zip(c.tickets, c.input_counts) if m is not None]
    if maps:
        cols = min(len(maps), 6)
        rows = -(-len(maps) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, (t, m) in zip(axes.flat, maps):
            image = ax.imshow(m.float().numpy(), cmap="magma", vmin=0)
            dead = (m == 0).nonzero().tolist()
            if dead:
                ax.scatter([x for _, x in dead], [y for y, _ in dead], marker="x", s=8, c="c")
            ax.set_title(f"{t.label}\n{int((m > 0).sum())}/{m.numel()} inputs kept", fontsize=7)
            fig.colorbar(image, ax=ax, fraction=0.046)
        fig.suptitle("kept first-layer weights per input pixel (x: none, the pixel is cut off)", fontsize=9)
        fig.tight_layout()
        for fmt in formats:
            path = out.with_name(out.name + f"_inputs.{fmt}")
            fig.savefig(path, dpi=120)
            written.append(path)
        plt.close(fig)
    return written
