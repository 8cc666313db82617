"""The cascade optimiser: exact on small tables, monotone fronts, primal and dual lookups."""

from __future__ import annotations

import numpy as np
import pytest
from cascade_fixtures import brute_force

from thrifty.offline.optimise import CascadeSpec, candidate_models, optimise, pareto_front, replay_arrays


def _random_problem(P=14, M=4, seed=0):
    rng = np.random.default_rng(seed)
    S = rng.random((P, M)).round(3)
    Q = np.clip(rng.random((P, M)) * np.linspace(0.4, 1.0, M) + 0.3 * S, 0, 1)
    C = np.tile(np.array([1.0, 3.0, 10.0, 30.0])[:M], (P, 1)) * rng.uniform(0.5, 1.5, (P, M))
    return S, Q, C


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_grid_finds_the_brute_force_optimum_at_every_budget(seed):
    S, Q, C = _random_problem(seed=seed)
    front = optimise(S, Q, C, max_tiers=3, grid=None)
    brute = brute_force(S, Q, C, 3)
    for budget in np.quantile(brute[:, 0], np.linspace(0.0, 1.0, 25)):
        best = brute[brute[:, 0] <= budget + 1e-12, 1].max()
        spec = front.for_budget(budget + 1e-12)
        assert spec.cost <= budget + 1e-9
        assert spec.quality == pytest.approx(best, abs=1e-9)
        # the spec really achieves what the front claims
        c, q = replay_arrays(S, Q, C, spec)
        assert c.mean() == pytest.approx(spec.cost) and q.mean() == pytest.approx(spec.quality)


def test_front_is_strictly_monotone_and_non_dominated():
    S, Q, C = _random_problem(P=60, M=4, seed=5)
    front = optimise(S, Q, C, max_tiers=3, grid=16)
    costs = np.array([p.cost for p in front.points])
    quals = np.array([p.quality for p in front.points])
    assert len(front.points) > 5
    assert np.all(np.diff(costs) > 0) and np.all(np.diff(quals) > 0)
    # the coarse grid is within the documented bound of the exact front
    exact = optimise(S, Q, C, max_tiers=3, grid=None)
    for p in exact.points:
        assert front.for_budget(p.cost).quality >= p.quality - 2 * Q.max() / 16 - 1e-9


def test_dual_returns_cheapest_point_reaching_the_quality():
    S, Q, C = _random_problem(P=40, seed=3)
    front = optimise(S, Q, C, max_tiers=2, grid=None)
    target = (front.points[0].quality + front.points[-1].quality) / 2
    spec = front.for_quality(target)
    assert spec.quality >= target
    assert all(p.quality < target for p in front.points if p.cost < spec.cost)
    assert front.for_quality(10.0) is front.points[-1]  # unreachable: the best there is


def test_max_tiers_limits_cascade_length_and_single_tier_is_the_model_front():
    S, Q, C = _random_problem(P=30, seed=4)
    two = optimise(S, Q, C, max_tiers=2, grid=None)
    assert max(len(p.tiers) for p in two.points) <= 2
    one = optimise(S, Q, C, max_tiers=1)
    singles = pareto_front(C.mean(0), Q.mean(0))
    assert [p.tiers for p in one.points] == [(int(j),) for j in singles]
    assert all(p.thresholds == () for p in one.points)


def test_budget_below_every_point_gets_the_cheapest_and_smoothing_keeps_monotone():
    S, Q, C = _random_problem(P=50, seed=6)
    front = optimise(S, Q, C, max_tiers=3, grid=8, smooth=1)
    assert front.for_budget(0.0) is front.points[0]
    costs = [p.cost for p in front.points]
    assert costs == sorted(costs)


def test_candidate_models_keep_best_and_cheapest():
    Q = np.array([[0.1, 0.5, 0.2, 0.9, 0.05]] * 3)
    C = np.array([[1.0, 2.0, 3.0, 50.0, 0.5]] * 3)
    cand = candidate_models(Q, C, max_candidates=3)
    assert 3 in cand and 4 in cand and len(cand) == 3
    assert candidate_models(Q, C, max_candidates=None) == [0, 1, 2, 3, 4]


def test_missing_pairs_are_skipped_free_of_charge():
    S = np.array([[0.1, np.nan, 0.2]])
    Q = np.array([[0.2, np.nan, 0.9]])
    C = np.array([[1.0, np.nan, 5.0]])
    c, q = replay_arrays(S, Q, C, CascadeSpec((0, 1, 2), (0.5, 0.5), 0, 0))
    assert c[0] == pytest.approx(6.0) and q[0] == pytest.approx(0.9)
