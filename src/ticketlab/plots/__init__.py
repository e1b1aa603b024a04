"""Figures drawn only from stored results."""

from ticketlab.plots.early_bird import plot_distance_matrix, plot_early_bird
from ticketlab.plots.lth import plot_runs

__all__ = ["plot_distance_matrix", "plot_early_bird", "plot_runs"]
