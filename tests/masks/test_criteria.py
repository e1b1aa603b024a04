"""Every criterion of Zhou et al. (2019) on hand-computed tiny layers, and invariants over
the whole registry."""

import pytest
import torch

from ticketlab.masks import CRITERIA, Mask
from ticketlab.masks.allocation import kept_after, prune_layerwise
from ticketlab.masks.thresholding import keep_top

# |w_i| = .5 .1 .3 .4 .2   |w_f| = .1 .6 .9 .2 .75   sign kept: T T F T T
W_I = torch.tensor([0.5, -0.1, 0.3, -0.4, 0.2])
W_F = torch.tensor([0.1, -0.6, -0.9, -0.2, 0.75])
GRAD = torch.tensor([1.0, -4.0, 0.5, 2.0, -1.0])  # |g| = 1 4 .5 2 1 ; |g w_i| = .5 .4 .15 .8 .2
ALL = torch.ones(5, dtype=torch.bool)


def kept(name, count, alive=ALL, seed=0):
    score = CRITERIA.get(name).score(W_I, W_F, alive, GRAD)
    return keep_top(score, alive, count, torch.Generator().manual_seed(seed)).int().tolist()


@pytest.mark.parametrize("name, count, expected", [
    ("large_final", 2, [0, 0, 1, 0, 1]),                 # |w_f| .9, .75
    ("magnitude", 2, [0, 0, 1, 0, 1]),                   # the same criterion
    ("small_final", 2, [1, 0, 0, 1, 0]),                 # |w_f| .1, .2
    ("large_init", 2, [1, 0, 0, 1, 0]),                  # |w_i| .5, .4
    ("small_init", 2, [0, 1, 0, 0, 1]),                  # |w_i| .1, .2
    ("magnitude_increase", 4, [0, 1, 1, 1, 1]),          # |w_f|-|w_i| = -.4 .5 .6 -.2 .55: drop -.4
    ("movement", 4, [1, 1, 1, 0, 1]),                    # |w_f-w_i| = .4 .5 1.2 .2 .55: drop .2
    ("large_final_same_sign", 2, [0, 1, 0, 0, 1]),       # .1 .6 0 .2 .75: the flipped .9 ranks last
    ("large_final_diff_sign", 1, [0, 0, 1, 0, 0]),       # 0 0 .9 0 0
    ("magnitude_increase_same_sign", 3, [0, 1, 1, 0, 1]),  # -.4 .5 0 -.2 .55: flipped (0) above shrunk
    ("snip", 2, [1, 0, 0, 1, 0]),                        # |g w_i| .8, .5
    ("grad", 2, [0, 1, 0, 1, 0]),                        # |g| 4, 2
])
def test_hand_computed_masks(name, count, expected):
    assert kept(name, count) == expected


# Quadrants: rank|w_i| = 4 0 2 3 1, rank|w_f| = 0 2 4 1 3, min = 0 0 2 1 1.
# Keeping 1 is rank >= 2 in both ({0,2,3} & {1,2,4}); keeping 3 is rank >= 1 in both.
@pytest.mark.parametrize("name, count, expected", [
    ("large_init_large_final", 1, [0, 0, 1, 0, 0]),
    ("large_init_large_final", 3, [0, 0, 1, 1, 1]),
    # rank-|w_i| = 0 4 2 1 3, rank-|w_f| = 4 2 0 3 1, min = 0 2 0 1 1
    ("small_init_small_final", 1, [0, 1, 0, 0, 0]),
    ("small_init_small_final", 3, [0, 1, 0, 1, 1]),
])
def test_quadrant_criteria_keep_both_parts_at_one_common_percentile(name, count, expected):
    assert kept(name, count) == expected


def test_quadrant_counts_are_exact_when_the_common_percentile_ties():
    # keeping 2: weight 2 is in, and one of the two weights tied at the next rank (3, 4)
    masks = {tuple(kept("large_init_large_final", 2, seed=s)) for s in range(20)}
    assert masks == {(0, 0, 1, 1, 0), (0, 0, 1, 0, 1)}


def test_quadrant_ranks_count_live_weights_only():
    # weight 4 is dead: live ranks |w_i| = 3 0 1 2, |w_f| = 0 2 3 1, min = 0 0 1 1
    alive = torch.tensor([True, True, True, True, False])
    assert kept("large_init_large_final", 2, alive) == [0, 0, 1, 1, 0]


def test_random_is_seeded_uniform_and_pure():
    alive = torch.ones(400, dtype=torch.bool)
    score = CRITERIA.get("random").score(torch.randn(400), torch.randn(400), alive, None)
    assert torch.equal(score, torch.zeros(400))  # no randomness of its own
    pick = lambda seed: keep_top(score, alive, 100, torch.Generator().manual_seed(seed))
    assert torch.equal(pick(0), pick(0)) and not torch.equal(pick(0), pick(1))
    assert 30 < int(pick(0)[:200].sum()) < 70


def test_gradient_criteria_are_marked():
    needs = {name for name in CRITERIA.names() if CRITERIA.get(name).needs_gradients}
    assert needs == {"snip", "grad"}
    assert not CRITERIA.get("snip").needs_training and not CRITERIA.get("grad").needs_training
    assert CRITERIA.get("large_final_same_sign").needs_training


def test_unknown_criterion_lists_the_valid_names():
    with pytest.raises(ValueError, match="valid names: .*large_final_same_sign"):
        CRITERIA.get("largest")


@pytest.mark.parametrize("name", CRITERIA.names())
def test_every_criterion_is_pure_and_prunes_exactly_inside_the_old_mask(name):
    g = torch.Generator().manual_seed(3)
    w_i, w_f, grad = (torch.randn(20, 30, generator=g) for _ in range(3))
    alive = torch.rand(20, 30, generator=g) < 0.7
    copies = [t.clone() for t in (w_i, w_f, alive, grad)]
    criterion = CRITERIA.get(name)
    score = criterion.score(w_i, w_f, alive, grad)
    assert score.shape == w_i.shape and score.is_floating_point() and not score.isnan().any()
    assert torch.equal(score, criterion.score(w_i, w_f, alive, grad))
    assert all(torch.equal(a, b) for a, b in zip(copies, (w_i, w_f, alive, grad)))
    assert criterion.doc
    if not criterion.needs_gradients:
        assert torch.equal(score, criterion.score(w_i, w_f, alive, None))
    if not criterion.needs_training:
        assert torch.equal(score, criterion.score(w_i, torch.zeros_like(w_f), alive, grad))
    old = Mask({"w": alive})
    prune = lambda seed: prune_layerwise(old, {"w": score}, {"w": 0.3}, torch.Generator().manual_seed(seed))
    new = prune(0)
    assert new.is_inside(old) and new.kept == kept_after(old.kept, 0.3)
    assert new == prune(0)
