"""Decision-boundary polytopes on hand-computed networks."""

import numpy as np
import pytest

from ticketlab.analysis.polytopes import (
    TwoClassNet, boundary_points, convex_hull_2d, tropical_form, tropical_r, tropical_sides, zonotope, zonotopes,
)

# A = [[1, 0], [0, 2]] (A+ = A, A- = 0) would make every segment start at 0; a negative entry
# makes A- matter: A = [[1, -1], [0, 2]], A+ = [[1, 0], [0, 2]], A- = [[0, 1], [0, 0]].
# B = [[1, 2], [-1, -1]]: B+ = [[1, 2], [0, 0]], B- = [[0, 0], [1, 1]].
HAND = TwoClassNet(A=[[1, -1], [0, 2]], c1=[0, -1], B=[[1, 2], [-1, -1]], c2=[0, 0.5])


def hand_margin(x, y):
    """f1 - f2 by hand: z1 = max(x - y, 0), z2 = max(2y - 1, 0);
    f1 = z1 + 2 z2, f2 = -z1 - z2 + 0.5, so f1 - f2 = 2 z1 + 3 z2 - 0.5."""
    return 2 * max(x - y, 0) + 3 * max(2 * y - 1, 0) - 0.5


def test_network_matches_the_hand_computation():
    pts = np.array([[0, 0], [1, 0], [0.25, 0], [0, 0.75], [2, -1], [-1, 3]], dtype=float)
    assert np.allclose(HAND.margin(pts), [hand_margin(*p) for p in pts])


def test_each_logit_is_h_minus_q_and_the_sides_tie_exactly_where_the_logits_tie():
    pts = np.random.default_rng(0).uniform(-3, 3, size=(500, 2))
    form = tropical_form(HAND)
    z = HAND.logits(pts)
    assert np.allclose(form["H1"](pts) - form["Q1"](pts), z[:, 0])
    assert np.allclose(form["H2"](pts) - form["Q2"](pts), z[:, 1])
    first, second = tropical_sides(HAND)
    assert np.allclose(first(pts) - second(pts), HAND.margin(pts))
    # H1 by hand: B+_1 = (1, 2), B-_1 A- = 0, c2_1 = 0:
    # max(x, y) + 2 max(2y - 1, 0) -> monomials (0,(1,0)) (0,(0,1)) (-2,(1,4)) (-2,(0,5))
    got = sorted((c, e) for c, e in form["H1"].monomials())
    assert got == sorted([(0.0, (1.0, 0.0)), (0.0, (0.0, 1.0)), (-2.0, (1.0, 4.0)), (-2.0, (0.0, 5.0))])


def test_boundary_points_of_the_construction_are_those_of_the_network():
    # the boundary by hand: where x <= y and 2y - 1 <= 0 nothing is positive (margin -0.5);
    # on y = 0 (so z2 = 0) it is 2x = 0.5, x = 0.25; on x = 0 with y > 1/2: 3(2y - 1) = 0.5, y = 7/12
    lim = (-2.0, 2.0)
    first, second = tropical_sides(HAND)
    predicted = boundary_points(lambda p: first(p) - second(p), lim, lim, 80)
    actual = boundary_points(HAND.margin, lim, lim, 80)
    assert len(actual) > 20
    assert np.allclose(predicted, actual)
    assert np.allclose(HAND.margin(actual), 0, atol=1e-9)  # the margin is linear between grid points here
    for point in ([0.25, 0.0], [0.0, 7 / 12]):
        assert abs(hand_margin(*point)) < 1e-12
        assert np.allclose(first(np.array([point])), second(np.array([point])))
    # Theorem 2, part 1: every boundary point lies on T(R) (the max attained at least twice)
    assert (tropical_r(HAND).attaining(actual, tol=1e-9) >= 2).all()
    off = np.array([[-1.0, 0.0], [1.5, 1.0]])  # margin -0.5 and 3.5, off the units' kinks: attained once
    assert (tropical_r(HAND).attaining(off) == 1).all()


def test_zonotope_of_two_segments_is_the_hand_parallelogram():
    # Z_G1: segments (B+_1j + B-_2j)[A+_j, A-_j] = 2[(1,0),(0,1)] and 3[(0,2),(0,0)],
    # shift (B-_1 + B+_2) A- = 0: {(2,0),(0,2)} + {(0,6),(0,0)} -> (2,0), (2,6), (0,8), (0,2)
    z = zonotopes(HAND)
    assert sorted(map(tuple, z.g1.round(12))) == sorted([(2.0, 0.0), (2.0, 6.0), (0.0, 8.0), (0.0, 2.0)])
    # Z_G2: both weights B-_1j + B+_2j are 0, so only the shift (B+_1 + B-_2) A- = 2 (0,1) = (0,2)
    assert z.g2.tolist() == [[0.0, 2.0]]
    assert sorted(map(tuple, z.hull.round(12))) == sorted(map(tuple, z.g1.round(12)))
    # δ(R) is the convex hull of R's exponents
    assert np.allclose(sorted(map(tuple, tropical_r(HAND).newton_polytope())), sorted(map(tuple, z.hull)))


def test_zonotope_general_segments_and_degenerate_cases():
    square = zonotope([[0, 0], [0, 0]], [[1, 0], [0, 1]])
    assert sorted(map(tuple, square)) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    collinear = zonotope([[0, 0], [1, 1]], [[1, 1], [3, 3]], shift=[5, 0])  # [0,1]+[1,3] on y = x
    assert sorted(map(tuple, collinear)) == [(6.0, 1.0), (9.0, 4.0)]
    hexagon = zonotope(np.zeros((3, 2)), [[1, 0], [0, 1], [1, 1]])
    assert len(hexagon) == 6
    # same as the hull of all 2^k sums
    rng = np.random.default_rng(1)
    starts, ends = rng.normal(size=(5, 2)), rng.normal(size=(5, 2))
    sums = [sum(ends[j] if (s >> j) & 1 else starts[j] for j in range(5)) for s in range(32)]
    assert np.allclose(sorted(map(tuple, zonotope(starts, ends))), sorted(map(tuple, convex_hull_2d(np.array(sums)))))


def random_net(seed, p=5):
    rng = np.random.default_rng(seed)
    return TwoClassNet(rng.normal(size=(p, 2)), rng.normal(size=p), rng.normal(size=(2, p)), rng.normal(size=2))


@pytest.mark.parametrize("seed", [0, 3, 4])  # seeds whose boundary crosses the window
def test_theorem_2_on_random_networks(seed):
    net = random_net(seed)
    z, r = zonotopes(net), tropical_r(net)
    assert np.allclose(sorted(map(tuple, r.newton_polytope())), sorted(map(tuple, z.hull)))
    pts = boundary_points(net.margin, (-3, 3), (-3, 3), 60)
    # interpolated points sit on the boundary up to a kink between grid points: keep exact ones
    on = pts[np.abs(net.margin(pts)) < 1e-9]
    assert len(on) > 10
    assert (r.attaining(on, tol=1e-7) >= 2).all()


def test_positive_scaling_keeps_the_boundary_and_scales_the_zonotopes():
    net = random_net(3)
    lim = (-3.0, 3.0)
    base, z = boundary_points(net.margin, lim, lim, 50), zonotopes(net)
    # (A, c1, B, c2) -> (aA, a c1, bB, ab c2), a, b > 0: f scales by ab, so the boundary is the
    # same; every segment and shift scales by ab (powers of 2: the float products are exact too)
    for a, b in ((2.0, 1.0), (1.0, 4.0), (0.5, 8.0)):
        scaled = TwoClassNet(a * net.A, a * net.c1, b * net.B, a * b * net.c2)
        assert np.allclose(boundary_points(scaled.margin, lim, lim, 50), base)
        zs = zonotopes(scaled)
        for mine, theirs in ((zs.g1, z.g1), (zs.g2, z.g2), (zs.hull, z.hull)):
            assert np.allclose(sorted(map(tuple, mine)), sorted(map(tuple, a * b * theirs)))
    # swapping the two classes swaps Z_G1 and Z_G2
    swapped = zonotopes(TwoClassNet(net.A, net.c1, net.B[::-1], net.c2[::-1]))
    assert np.allclose(swapped.g1, z.g2) and np.allclose(swapped.g2, z.g1)


def test_biases_move_the_boundary_not_the_polytope():
    net = random_net(4)
    moved = TwoClassNet(net.A, net.c1 + 0.7, net.B, net.c2 - 0.3)
    z, zm = zonotopes(net), zonotopes(moved)
    assert np.allclose(z.hull, zm.hull)
    assert not np.allclose(net.margin(np.array([[0.3, 0.2]])), moved.margin(np.array([[0.3, 0.2]])))


def test_polytopes_command_trains_the_toy_ticket_and_draws(tmp_path, capsys):
    from ticketlab.cli import main

    assert main(["polytopes", "--out", str(tmp_path), "--steps", "30", "--levels", "1", "--hidden", "6"]) == 0
    text = capsys.readouterr().out
    assert "ticket init" in text and "trained ticket" in text
    assert (tmp_path / "polytopes_seed0.png").stat().st_size > 0
