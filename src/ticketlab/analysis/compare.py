"""Compare tickets from the store: pairwise matrices and per-ticket statistics.

Pairwise, for tickets a and b (definitions in `analysis.masks`): IoU of the kept sets,
Hamming distance normalised by the number of prunable weights, and Spearman's rho of the
two tickets' scores over the weights both keep. A ticket's *score* is the criterion (default
`magnitude`, |w_f|) applied to its level's start weights (the seed's init) and its trained
weights (`final.safetensors`); the correlation is taken over the weights both tickets keep,
since a pruned weight is held at zero and its score says nothing about training.

Per ticket: density per layer; kept-vs-pruned movement and sign statistics over the seed's
*dense* training (init -> level-0 final weights of the IMP line, the one training in which
every weight moved), split by this ticket's mask; the surviving input pixels.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ticketlab.analysis.masks import (Movement, density_profile, hamming, input_connections, iou, movement,
                                      rank_correlation, surviving_inputs)
from ticketlab.analysis.tickets import Ticket, resolve_all
from ticketlab.errors import TicketlabError
from ticketlab.masks import CRITERIA, LayerDensity
from ticketlab.store import ResultsStore


@dataclass
class Comparison:
    tickets: list[Ticket]
    criterion: str
    iou: np.ndarray  # (n, n)
    hamming: np.ndarray
    spearman: np.ndarray
    layers: list[list[LayerDensity]]
    movements: list[Movement | None]  # None when the seed's dense level is not in the store
    inputs: list[torch.Tensor | None]  # (H, W) bool; None if the first layer is not fully connected
    input_counts: list[torch.Tensor | None]  # (H, W) kept first-layer weights per pixel


def _scores(criterion: str, ticket: Ticket, mask) -> dict[str, torch.Tensor]:
    score = CRITERIA.get(criterion)
    w_i, w_f = ticket.init(), ticket.final()
    return {name: score.score(w_i[name], w_f[name], keep, None) for name, keep in mask.items()}


def compare_tickets(store: ResultsStore, refs: list[str], criterion: str = "magnitude") -> Comparison:
    """Every statistic of the module docstring for the tickets `refs` name (see `analysis.tickets`)."""
    if CRITERIA.get(criterion).needs_gradients:
        raise TicketlabError(f"criterion {criterion!r} needs gradients, which the store does not keep; "
                             "rank tickets by a weight criterion, e.g. magnitude")
    tickets = resolve_all(store, refs)
    if not tickets:
        raise TicketlabError("no tickets to compare")
    masks = [t.mask() for t in tickets]
    scores = [_scores(criterion, t, m) for t, m in zip(tickets, masks)]
    n = len(tickets)
    mat = {k: np.eye(n) for k in ("iou", "spearman")} | {"hamming": np.zeros((n, n))}
    for i in range(n):
        for j in range(i + 1, n):
            both = type(masks[i])({k: masks[i][k] & masks[j][k] for k in masks[i].keys()}) \
                if set(masks[i].keys()) == set(masks[j].keys()) else None
            mat["iou"][i, j] = mat["iou"][j, i] = iou(masks[i], masks[j])
            mat["hamming"][i, j] = mat["hamming"][j, i] = hamming(masks[i], masks[j])
            mat["spearman"][i, j] = mat["spearman"][j, i] = rank_correlation(scores[i], scores[j], both)
        if masks[i].kept < 2:
            mat["spearman"][i, i] = math.nan
    movements, inputs, counts, dense_cache = [], [], [], {}
    for ticket, mask in zip(tickets, masks):
        key = (ticket.run_id, ticket.seed)
        if key not in dense_cache:
            dense = store.level(ticket.run_id, ticket.seed, "imp", 0)
            dense_cache[key] = None if dense is None else load_dense(store, ticket)
        weights = dense_cache[key]
        movements.append(None if weights is None else movement(mask, *weights))
        first = mask[min(mask.keys(), key=_natural)]
        inputs.append(surviving_inputs(first) if first.dim() == 2 else None)
        counts.append(input_connections(first) if first.dim() == 2 else None)
    return Comparison(tickets, criterion, mat["iou"], mat["hamming"], mat["spearman"],
                      [density_profile(m) for m in masks], movements, inputs, counts)


def _natural(name: str):
    """Sort key putting fc2 before fc10 (the first layer is the first name)."""
    import re

    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def load_dense(store: ResultsStore, ticket: Ticket):
    """(init, level-0 final) weights of the ticket's seed: its dense training."""
    from ticketlab.analysis.tickets import _tensors

    return ticket.init(), _tensors(store.level_dir(ticket.run_id, ticket.seed, "imp", 0) / "final.safetensors")


def _matrix(title: str, labels: list[str], values: np.ndarray) -> list[str]:
    width = max(8, *(len(x) for x in labels)) + 1
    lines = [title, " " * width + "".join(f"{x:>{width}}" for x in labels)]
    for label, row in zip(labels, values):
        lines.append(f"{label:<{width}}" + "".join(f"{v:>{width}.3f}" for v in row))
    return lines


def comparison_text(c: Comparison) -> str:
    labels = [t.label for t in c.tickets]
    lines = [f"{len(labels)} tickets (RUN[/BRANCH]:LEVEL@SEED)", ""]
    lines += _matrix("IoU of kept weights  |A∩B| / |A∪B|", labels, c.iou) + [""]
    lines += _matrix("Hamming distance  |A△B| / prunable weights", labels, c.hamming) + [""]
    lines += _matrix(f"Spearman rho of {c.criterion} scores over weights both keep", labels, c.spearman) + [""]
    names = [layer.name for layer in c.layers[0]]
    lines.append("density per layer")
    lines.append(f"{'ticket':<16}" + "".join(f"{n:>14}" for n in names) + f"{'all':>10}")
    for t, layers in zip(c.tickets, c.layers):
        total = sum(x.kept for x in layers) / max(1, sum(x.total for x in layers))
        lines.append(f"{t.label:<16}" + "".join(f"{x.density:>14.2%}" for x in layers) + f"{total:>10.2%}")
    lines += ["", "dense training (init -> level-0 final), split by each ticket's mask",
              f"{'ticket':<16}{'kept |Δw|':>12}{'pruned |Δw|':>13}{'kept same sign':>16}{'pruned same sign':>18}"
              f"{'inputs kept':>13}"]
    for t, m, pixels in zip(c.tickets, c.movements, c.inputs):
        px = "-" if pixels is None else f"{int(pixels.sum())}/{pixels.numel()}"
        if m is None:
            lines.append(f"{t.label:<16}{'(no dense level in the store)':>59}{px:>13}")
        else:
            lines.append(f"{t.label:<16}{m.kept_distance:>12.4f}{m.pruned_distance:>13.4f}{m.kept_same_sign:>16.2%}"
                         f"{m.pruned_same_sign:>18.2%}{px:>13}")
    return "\n".join(lines)


def write_csv(c: Comparison, path: str | Path) -> None:
    """One row per (ticket_a, ticket_b, statistic, value); per-ticket statistics have an empty ticket_b."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ticket_a", "ticket_b", "statistic", "value"])
        labels = [t.label for t in c.tickets]
        for i, a in enumerate(labels):
            for j, b in enumerate(labels):
                for name, mat in (("iou", c.iou), ("hamming", c.hamming), (f"spearman_{c.criterion}", c.spearman)):
                    w.writerow([a, b, name, repr(float(mat[i, j]))])
        for t, layers, m, pixels in zip(c.tickets, c.layers, c.movements, c.inputs):
            for layer in layers:
                w.writerow([t.label, "", f"density:{layer.name}", repr(layer.density)])
            if m is not None:
                for name in ("kept_distance", "pruned_distance", "kept_same_sign", "pruned_same_sign"):
                    w.writerow([t.label, "", name, repr(getattr(m, name))])
            if pixels is not None:
                w.writerow([t.label, "", "inputs_kept", int(pixels.sum())])
                w.writerow([t.label, "", "inputs_total", pixels.numel()])
