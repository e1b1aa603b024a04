"""Mask analytics: how alike two tickets are, and what a ticket kept.

Every function here is pure (masks and weight tensors in, numbers out); reading tickets
from the store is `analysis.tickets`. Masks are compared over the weights both cover,
which must be the same names with the same shapes (the same network).

Definitions (A, B are the *kept* sets of two masks over the same N prunable weights):

- `iou(a, b)` = |A ∩ B| / |A ∪ B|, the intersection over union of the kept sets; 1.0 when
  both keep nothing (the masks are equal).
- `hamming(a, b)` = |A △ B| / N, the number of weights kept by exactly one mask divided by
  the total number N of prunable weights the masks cover (not by the kept count): 0 for
  equal masks, 1 for complementary ones. Two independent random masks of densities p and
  q are expected at p(1-q) + q(1-p).
- `distance_matrix(masks)` = the matrix D[i][j] = hamming(masks[i], masks[j]) of a
  sequence of masks of one network (symmetric, zero diagonal): You et al. 2020's
  mask-distance figure between training epochs. `pack(mask)` keeps a mask as its bits
  (8 to a byte, sorted layer order) so many epochs' masks of a large network fit in
  memory; `packed_distance_matrix(packed, total)` is the same matrix from packed masks.
- `rank_correlation(sa, sb, where)` = Spearman's rho (scipy's, ties ranked by their mean
  rank) between two score tensors over the entries in `where`; NaN when fewer than two
  entries, or when one side is constant there.
- `density_profile(mask)` = per layer (kept, total, kept / total).
- `movement(mask, w_i, w_f)`: over the kept and the pruned entries separately, the mean
  of |w_f - w_i| (how far training moved them) and the fraction whose sign stayed
  (sign(w_i) == sign(w_f), sign(0) = 0).
- `surviving_inputs(first_layer_keep, input_shape)`: per input pixel, whether at least one
  kept weight of the first layer reads it (any unit; any channel for colour inputs);
  `input_connections` counts those weights per pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ticketlab.errors import TicketlabError
from ticketlab.masks import LayerDensity, Mask
from ticketlab.masks.criteria import same_sign


def _check_same_layout(a: Mask, b: Mask) -> None:
    if set(a.keys()) != set(b.keys()):
        raise TicketlabError(f"the masks cover different weights ({sorted(a.keys())} vs {sorted(b.keys())}): "
                             "compare tickets of the same network")
    for name in a:
        if a[name].shape != b[name].shape:
            raise TicketlabError(f"mask entry {name!r} has shape {tuple(a[name].shape)} in one mask and "
                                 f"{tuple(b[name].shape)} in the other: compare tickets of the same network")


def _flat(mask: Mask) -> torch.Tensor:
    return torch.cat([mask[name].flatten() for name in sorted(mask.keys())])


def hamming(a: Mask, b: Mask) -> float:
    """|A △ B| / N: weights kept by exactly one mask, over all N prunable weights covered.

    Reusable wherever two masks of one network are compared (e.g. Early-Bird's mask
    distance between consecutive epochs)."""
    _check_same_layout(a, b)
    fa, fb = _flat(a), _flat(b)
    return int((fa ^ fb).sum()) / fa.numel() if fa.numel() else 0.0


def pack(mask: Mask) -> np.ndarray:
    """The mask's keep bits over every covered weight (layers in sorted name order), packed
    8 to a byte (`numpy.packbits`): N/8 bytes instead of N."""
    return np.packbits(_flat(mask).numpy())


def packed_distance_matrix(packed: Sequence[np.ndarray], total: int) -> list[list[float]]:
    """D[i][j] = |A_i △ A_j| / total for masks packed by `pack` over the same `total` weights."""
    n = len(packed)
    matrix = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            differ = int(np.unpackbits(np.bitwise_xor(packed[i], packed[j])).sum()) if total else 0
            matrix[i][j] = matrix[j][i] = differ / total if total else 0.0
    return matrix


def distance_matrix(masks: Sequence[Mask]) -> list[list[float]]:
    """D[i][j] = hamming(masks[i], masks[j]) for every pair: symmetric, zero diagonal."""
    for other in masks[1:]:
        _check_same_layout(masks[0], other)
    total = sum(masks[0][name].numel() for name in masks[0]) if masks else 0
    return packed_distance_matrix([pack(mask) for mask in masks], total)


def iou(a: Mask, b: Mask) -> float:
    """|A ∩ B| / |A ∪ B| of the kept sets; 1.0 when both keep nothing."""
    _check_same_layout(a, b)
    fa, fb = _flat(a), _flat(b)
    union = int((fa | fb).sum())
    return int((fa & fb).sum()) / union if union else 1.0


def rank_correlation(scores_a: dict[str, torch.Tensor], scores_b: dict[str, torch.Tensor], where: Mask) -> float:
    """Spearman's rho between two score maps over the entries `where` marks (NaN if undefined)."""
    from scipy.stats import spearmanr

    names = sorted(where.keys())
    pick = [where[n].flatten() for n in names]
    xa = torch.cat([scores_a[n].flatten()[p] for n, p in zip(names, pick)]).double().numpy()
    xb = torch.cat([scores_b[n].flatten()[p] for n, p in zip(names, pick)]).double().numpy()
    if len(xa) < 2 or xa.min() == xa.max() or xb.min() == xb.max():
        return math.nan
    return float(spearmanr(xa, xb).statistic)


def density_profile(mask: Mask) -> list[LayerDensity]:
    """Per layer: kept, total and density (kept / total), in the mask's order."""
    return mask.layers()


@dataclass(frozen=True)
class Movement:
    """How far training moved kept and pruned weights, and how many kept their sign."""

    kept: int
    pruned: int
    kept_distance: float  # mean |w_f - w_i| over kept weights (NaN if none)
    pruned_distance: float
    kept_same_sign: float  # fraction of kept weights with sign(w_f) == sign(w_i) (NaN if none)
    pruned_same_sign: float


def movement(mask: Mask, w_i: dict[str, torch.Tensor], w_f: dict[str, torch.Tensor]) -> Movement:
    """Movement and sign statistics of the weights `mask` keeps vs those it prunes, for a
    training from `w_i` to `w_f` in which every weight took part (e.g. the dense level)."""
    sums = {True: [0, 0.0, 0], False: [0, 0.0, 0]}  # count, distance sum, same-sign count
    for name, keep in mask.items():
        if w_i[name].shape != keep.shape or w_f[name].shape != keep.shape:
            raise TicketlabError(f"weights {name!r} do not have the mask's shape {tuple(keep.shape)}")
        distance = (w_f[name].double() - w_i[name].double()).abs()
        kept_sign = same_sign(w_i[name], w_f[name])
        for side, where in ((True, keep), (False, ~keep)):
            sums[side][0] += int(where.sum())
            sums[side][1] += float(distance[where].sum())
            sums[side][2] += int(kept_sign[where].sum())

    def ratio(value, count):
        return value / count if count else math.nan

    (nk, dk, sk), (np_, dp, sp) = sums[True], sums[False]
    return Movement(nk, np_, ratio(dk, nk), ratio(dp, np_), ratio(sk, nk), ratio(sp, np_))


def input_shape_of(in_features: int) -> tuple[int, int, int]:
    """(C, H, W) of a square image flattened to `in_features` inputs (1 or 3 channels)."""
    for channels in (1, 3):
        side = math.isqrt(in_features // channels)
        if side * side * channels == in_features:
            return channels, side, side
    raise TicketlabError(f"cannot tell the image shape of {in_features} inputs (not 1 or 3 channels of a square)")


def input_connections(first_layer_keep: torch.Tensor, input_shape: tuple[int, int, int] | None = None) -> torch.Tensor:
    """(H, W) int map: how many kept first-layer weights read each pixel (summed over channels);
    `surviving_inputs` is this map > 0."""
    if first_layer_keep.dim() != 2:
        raise TicketlabError(f"input maps need a fully connected first layer; its mask has shape "
                             f"{tuple(first_layer_keep.shape)}")
    shape = input_shape or input_shape_of(first_layer_keep.shape[1])
    return first_layer_keep.sum(dim=0).reshape(shape).sum(dim=0)


def surviving_inputs(first_layer_keep: torch.Tensor, input_shape: tuple[int, int, int] | None = None) -> torch.Tensor:
    """(H, W) bool map: True where at least one kept first-layer weight reads the pixel.

    `first_layer_keep` is the keep mask of a fully connected first layer, shape
    (units, C*H*W) over inputs flattened channel-first (as `nn.Flatten` does)."""
    if first_layer_keep.dim() != 2:
        raise TicketlabError(f"surviving inputs need a fully connected first layer; its mask has shape "
                             f"{tuple(first_layer_keep.shape)}")
    shape = input_shape or input_shape_of(first_layer_keep.shape[1])
    return first_layer_keep.any(dim=0).reshape(shape).any(dim=0)
