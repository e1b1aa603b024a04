"""Mask-1 and mask-0 actions of Zhou et al. (2019): hand-computed cases and invariants over
every registry entry."""

import pytest
import torch

from ticketlab.tickets import MASK0_ACTIONS, MASK1_ACTIONS

START = torch.tensor([0.5, -0.2, 0.3, -0.4])
KEEP = torch.tensor([True, True, False, True])
STD = 0.1


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def mask1(name, start=START, keep=KEEP, std=STD, seed=0):
    return MASK1_ACTIONS.get(name).apply(start, keep, std, gen(seed))


def test_rewind_and_signed_constant_hand_computed():
    assert torch.equal(mask1("rewind"), START)
    assert torch.allclose(mask1("constant_same_sign"), torch.tensor([0.1, -0.1, 0.1, -0.1]))


def big_layer():
    g = gen(7)
    return torch.randn(200, 300, generator=g) * 0.05, torch.rand(200, 300, generator=g) < 0.3


def test_reinit_is_a_fresh_draw_from_the_init_distribution():
    start, keep = big_layer()
    values = mask1("reinit", start, keep, std=0.05)
    assert values.mean().abs() < 0.002 and values.std() == pytest.approx(0.05, rel=0.02)
    assert not torch.allclose(values, start)
    signed = mask1("reinit_same_sign", start, keep, std=0.05)
    assert torch.equal(torch.sign(signed), torch.sign(start))
    assert signed.abs().mean() == pytest.approx(0.05 * (2 / torch.pi) ** 0.5, rel=0.02)  # half-normal


def test_reshuffle_permutes_the_kept_initial_values_among_kept_positions():
    start, keep = big_layer()
    values = mask1("reshuffle", start, keep)
    assert torch.equal(values[keep].sort().values, start[keep].sort().values)
    assert (values[keep] != start[keep]).float().mean() > 0.99
    signed = mask1("reshuffle_same_sign", start, keep)
    assert torch.equal(signed[keep].abs().sort().values, start[keep].abs().sort().values)
    assert torch.equal(torch.sign(signed[keep]), torch.sign(start[keep]))


def test_constant_is_plus_or_minus_std_with_random_sign():
    start, keep = big_layer()
    values = mask1("constant", start, keep, std=0.05)
    assert torch.equal(values.unique(), torch.tensor([-0.05, 0.05]))
    agree = (torch.sign(values) == torch.sign(start)).float().mean()
    assert 0.48 < agree < 0.52  # the sign is independent of the initial one


@pytest.mark.parametrize("name", MASK1_ACTIONS.names())
def test_every_mask1_action_is_seeded_and_depends_only_on_kept_values(name):
    start, keep = big_layer()
    before = start.clone()
    values = mask1(name, start, keep, seed=1)
    assert values.shape == start.shape and values.dtype == start.dtype
    assert torch.equal(values, mask1(name, start, keep, seed=1))
    assert torch.equal(start, before)  # inputs untouched
    other = torch.where(keep, start, torch.randn(start.shape, generator=gen(9)))  # pruned values changed
    assert torch.equal(mask1(name, other, keep, seed=1)[keep], values[keep])
    assert MASK1_ACTIONS.get(name).doc


W_I = torch.tensor([0.5, -0.2, 0.3, -0.4])
W_F = torch.tensor([0.1, -0.6, -0.3, 0.0])  # shrank, grew, same size, shrank


@pytest.mark.parametrize("name, expected", [
    ("zero", [0.0, 0.0, 0.0, 0.0]),
    ("freeze_init", [0.5, -0.2, 0.3, -0.4]),
    ("zero_or_freeze_by_movement", [0.0, -0.2, 0.3, 0.0]),
])
def test_mask0_hand_computed(name, expected):
    pruned = torch.zeros(4, dtype=torch.bool)
    assert torch.equal(MASK0_ACTIONS.get(name).apply(pruned, W_I, W_F), torch.tensor(expected))


def test_zero_or_freeze_is_stable_over_levels():
    held = MASK0_ACTIONS.get("zero_or_freeze_by_movement").apply(KEEP, W_I, W_F)
    # next level: the held weights did not train, so their final values are the held ones
    assert torch.equal(MASK0_ACTIONS.get("zero_or_freeze_by_movement").apply(KEEP, W_I, held), held)


@pytest.mark.parametrize("name", MASK0_ACTIONS.names())
def test_every_mask0_action_is_pure(name):
    copies = W_I.clone(), W_F.clone()
    held = MASK0_ACTIONS.get(name).apply(KEEP, W_I, W_F)
    assert held.shape == W_I.shape and held.dtype == W_I.dtype
    assert torch.equal(held, MASK0_ACTIONS.get(name).apply(KEEP, W_I, W_F))
    assert torch.equal(copies[0], W_I) and torch.equal(copies[1], W_F)
    assert MASK0_ACTIONS.get(name).doc


def test_unknown_action_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid names: .*constant_same_sign"):
        MASK1_ACTIONS.get("signed_constant")
    with pytest.raises(ValueError, match="valid names: .*zero_or_freeze_by_movement"):
        MASK0_ACTIONS.get("freeze")
