"""Figures drawn only from stored results."""

from ticketlab.plots.lth import plot_runs

__all__ = ["plot_runs"]
