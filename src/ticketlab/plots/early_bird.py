"""You et al. 2020 ("Drawing Early-Bird Tickets", ICLR 2020), Figure 3: the pairwise mask
distances between training epochs as a heatmap (`early_bird_distances.json`, written by the
`early_bird` method in its level folder, holds the matrix and the epochs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_distance_matrix(matrix: Sequence[Sequence[float]], path: str | Path, epochs: Sequence[float] | None = None,
                         stop_epoch: float | None = None, title: str | None = None) -> Path:
    """Draw D[i][j] (normalised Hamming distance between the masks of epochs i and j) as a
    heatmap, epochs on both axes (default 0, 1, ...), a dashed cross at `stop_epoch` when the
    rule fired; write it to `path` (its suffix picks the format) and return the path."""
    n = len(matrix)
    epochs = list(epochs) if epochs is not None else list(range(n))
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    image = ax.imshow(matrix, cmap="viridis", origin="upper", interpolation="nearest", vmin=0)
    fig.colorbar(image, ax=ax, label="mask distance (normalised Hamming)")
    ticks = range(0, n, max(1, n // 8))
    labels = [f"{epochs[i]:g}" for i in ticks]
    ax.set_xticks(list(ticks), labels)
    ax.set_yticks(list(ticks), labels)
    ax.set_xlabel("epoch")
    ax.set_ylabel("epoch")
    if stop_epoch is not None and stop_epoch >= 0 and stop_epoch in epochs:
        where = epochs.index(stop_epoch)
        ax.axvline(where, color="white", linestyle="--", linewidth=1)
        ax.axhline(where, color="white", linestyle="--", linewidth=1)
    ax.set_title(title or "Early-Bird mask distances between epochs", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_early_bird(document: dict | str | Path, path: str | Path) -> Path:
    """`plot_distance_matrix` of an `early_bird_distances.json` document (or its file)."""
    if not isinstance(document, dict):
        document = json.loads(Path(document).read_text())
    kind = document.get("mask_kind", "weights")
    title = f"Early-Bird mask distances ({kind}), stop at epoch {document['stop_epoch']}"
    return plot_distance_matrix(document["distances"], path, document["epochs"], document["stop_epoch"], title)
