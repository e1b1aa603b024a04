"""Mask statistics on hand-computed masks."""

import math

import pytest
import torch

from ticketlab.analysis import density_profile, distance_matrix, hamming, iou, movement, rank_correlation, surviving_inputs
from ticketlab.analysis.masks import input_shape_of, pack, packed_distance_matrix
from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask


def m(**layers):
    return Mask({k: torch.tensor(v, dtype=torch.bool) for k, v in layers.items()})


# A keeps {a0, a1, b0}; B keeps {a1, a2, b0, b1}: N = 6 weights (4 + 2)
A = m(a=[1, 1, 0, 0], b=[1, 0])
B = m(a=[0, 1, 1, 0], b=[1, 1])


def test_iou_is_intersection_over_union_of_kept_sets():
    # A∩B = {a1, b0} (2), A∪B = {a0, a1, a2, b0, b1} (5)
    assert iou(A, B) == pytest.approx(2 / 5)
    assert iou(B, A) == pytest.approx(2 / 5)
    assert iou(A, A) == 1.0
    empty = m(a=[0, 0, 0, 0], b=[0, 0])
    assert iou(empty, empty) == 1.0
    assert iou(A, empty) == 0.0


def test_hamming_is_normalised_by_all_prunable_weights():
    # A△B = {a0, a2, b1}: 3 of 6 weights (not 3 of the 5 kept by either)
    assert hamming(A, B) == pytest.approx(3 / 6)
    assert hamming(A, A) == 0.0
    complement = m(a=[0, 0, 1, 1], b=[0, 1])
    assert hamming(A, complement) == 1.0


def test_masks_of_different_networks_are_refused():
    with pytest.raises(TicketlabError, match="same network"):
        hamming(A, m(a=[1, 1, 0, 0]))
    with pytest.raises(TicketlabError, match="shape"):
        iou(A, m(a=[1, 1, 0], b=[1, 0]))


def test_rank_correlation_over_marked_entries_only():
    sa = {"a": torch.tensor([1.0, 2.0, 3.0, 100.0]), "b": torch.tensor([4.0, -5.0])}
    sb = {"a": torch.tensor([10.0, 20.0, 30.0, -100.0]), "b": torch.tensor([40.0, 7.0])}
    # over a0, a1, a2, b0 the scores rank alike (1, 2, 3, 4): rho = 1; a3 and b1 are left out
    where = m(a=[1, 1, 1, 0], b=[1, 0])
    assert rank_correlation(sa, sb, where) == pytest.approx(1.0)
    # over a0, a1, a3: sa ranks (1, 2, 3), sb ranks (2, 3, 1): rho = 1 - 6*(1+1+4)/(3*8) = -0.5
    assert rank_correlation(sa, sb, m(a=[1, 1, 0, 1], b=[0, 0])) == pytest.approx(-0.5)
    assert math.isnan(rank_correlation(sa, sb, m(a=[1, 0, 0, 0], b=[0, 0])))


def test_density_profile_per_layer():
    profile = density_profile(B)
    assert [(x.name, x.kept, x.total) for x in profile] == [("a", 2, 4), ("b", 2, 2)]
    assert [x.density for x in profile] == [0.5, 1.0]


def test_movement_and_sign_of_kept_vs_pruned():
    w_i = {"a": torch.tensor([1.0, -1.0, 0.5, 0.2]), "b": torch.tensor([0.0, 2.0])}
    w_f = {"a": torch.tensor([3.0, -2.0, -0.5, 0.2]), "b": torch.tensor([1.0, 2.5])}
    got = movement(A, w_i, w_f)  # kept a0, a1, b0; pruned a2, a3, b1
    assert (got.kept, got.pruned) == (3, 3)
    assert got.kept_distance == pytest.approx((2 + 1 + 1) / 3)
    assert got.pruned_distance == pytest.approx((1 + 0 + 0.5) / 3)
    # signs kept: a0 yes, a1 yes, b0 no (0 -> +); a2 no, a3 yes, b1 yes
    assert got.kept_same_sign == pytest.approx(2 / 3)
    assert got.pruned_same_sign == pytest.approx(2 / 3)
    dense = movement(m(a=[1, 1, 1, 1], b=[1, 1]), w_i, w_f)
    assert math.isnan(dense.pruned_distance) and dense.kept == 6


def test_surviving_inputs_any_unit_any_channel():
    # 3 units reading a 2x2 one-channel image (4 inputs, flattened row-major)
    keep = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0]], dtype=torch.bool)
    assert surviving_inputs(keep).tolist() == [[True, False], [True, False]]
    # two channels of 1x2: pixel (0, 1) survives through channel 1 only
    keep2 = torch.tensor([[0, 0, 0, 1]], dtype=torch.bool)
    assert surviving_inputs(keep2, (2, 1, 2)).tolist() == [[False, True]]
    assert input_shape_of(784) == (1, 28, 28) and input_shape_of(64) == (1, 8, 8)
    assert input_shape_of(3072) == (3, 32, 32)
    with pytest.raises(TicketlabError):
        surviving_inputs(torch.ones(2, 3, 3, 3, dtype=torch.bool))


def test_input_connections_count_kept_weights_per_pixel():
    from ticketlab.analysis.masks import input_connections

    keep = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0]], dtype=torch.bool)
    assert input_connections(keep).tolist() == [[2, 0], [1, 0]]


def test_distance_matrix_of_hand_masks():
    # A, B as above; C keeps {a3} only: A△C = {a0, a1, a3, b0} (4), B△C = {a1, a2, a3, b0, b1} (5)
    C = m(a=[0, 0, 0, 1], b=[0, 0])
    d = distance_matrix([A, B, C])
    assert d == [[0.0, 3 / 6, 4 / 6], [3 / 6, 0.0, 5 / 6], [4 / 6, 5 / 6, 0.0]]  # symmetric, zero diagonal
    assert all(d[i][j] == hamming(x, y) for i, x in enumerate([A, B, C]) for j, y in enumerate([A, B, C]))
    assert pack(A).tolist() == [0b11001000]  # sorted layers a, b: bits 1100 10, zero-padded
    assert packed_distance_matrix([pack(A), pack(C)], 6) == [[0.0, 4 / 6], [4 / 6, 0.0]]
    assert distance_matrix([]) == [] and distance_matrix([A]) == [[0.0]]
    with pytest.raises(TicketlabError, match="different weights"):
        distance_matrix([A, m(a=[1, 1, 0, 0])])
