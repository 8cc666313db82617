"""Curves and metrics on hand-computed examples (every expected number is worked out in a comment)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from thrifty.offline.curves import integrate_linear, integrate_log, majorant
from thrifty.offline.metrics import (
    aiq,
    apgr,
    bootstrap_ci,
    cpt,
    oracle_gap_closed,
    quality_at_best_single_cost,
    resample_weights,
    savings_at_parity,
    share_curve,
)


def _num_log_integral(f, lo, hi, n=400_001):
    """Reference: trapezoid over a very fine log10 grid (independent of the closed form)."""
    t = np.linspace(math.log10(lo), math.log10(hi), n)
    y = f(10**t)
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(t)))


# ---- majorant ------------------------------------------------------------------------------------


def test_majorant_drops_dominated_and_interior_points_and_is_flat_after_max():
    # (1, .2) (2, .6) (3, .5) (4, .9) (5, .8) (2, .3): (3,.5) is under chord (2,.6)-(4,.9) (=.75);
    # (5,.8) is after the max; (2,.3) is a worse duplicate of x=2.
    c = majorant([(1, 0.2), (2, 0.6), (3, 0.5), (4, 0.9), (5, 0.8), (2, 0.3)])
    assert c.x.tolist() == [1, 2, 4]
    assert c.y.tolist() == [0.2, 0.6, 0.9]
    assert c.quality_at(3.0) == pytest.approx(0.75)
    assert c.quality_at(100.0) == 0.9  # flat: budget may be left unspent
    assert math.isnan(c.quality_at(0.5))  # undefined below the cheapest point


def test_majorant_removes_concave_violation():
    # (0,0) (1,.1) (2,1): (1,.1) lies below chord (0,0)-(2,1) at .5 → removed
    c = majorant([(0, 0), (1, 0.1), (2, 1)])
    assert c.x.tolist() == [0, 2]
    assert c.quality_at(1.0) == pytest.approx(0.5)


def test_majorant_of_one_point_and_nan_points():
    c = majorant([(3.0, 0.4), (float("nan"), 0.9)])
    assert c.x.tolist() == [3.0] and c.y.tolist() == [0.4]
    assert c.quality_at(5.0) == 0.4
    with pytest.raises(ValueError):
        majorant([(float("nan"), 1.0)])


def test_majorant_when_cheapest_point_is_best_is_a_single_flat_vertex():
    c = majorant([(1, 0.9), (2, 0.5), (3, 0.9)])
    assert c.x.tolist() == [1] and c.y.tolist() == [0.9]


def test_cost_for():
    c = majorant([(1, 0.2), (2, 0.6), (4, 0.9)])
    assert c.cost_for(0.1) == 1.0  # already reached at the cheapest point
    assert c.cost_for(0.4) == pytest.approx(1.5)  # halfway from .2 to .6
    assert c.cost_for(0.75) == pytest.approx(3.0)
    assert c.cost_for(0.9) == 4.0
    assert c.cost_for(0.9000001) is None
    assert c.cost_for(float("nan")) is None


# ---- integrals -----------------------------------------------------------------------------------


def test_integrate_log_closed_forms():
    one, zero = majorant([(1, 1.0)]), majorant([(1, 0.0)])
    # ∫_1^10 1 dlog10 x = 1
    assert integrate_log(one, zero, 1, 10) == pytest.approx(1.0)
    # y = x on [1, 10]: ∫ x dlog10 x = (10 - 1) / ln 10
    ident = majorant([(1, 1.0), (10, 10.0)])
    assert integrate_log(ident, zero, 1, 10) == pytest.approx(9 / math.log(10))
    # upper undefined below x = 10 → only [10, 100] counts: 1
    late = majorant([(10, 1.0)])
    assert integrate_log(late, zero, 1, 100) == pytest.approx(1.0)


def test_integrate_log_positive_part_matches_fine_numeric_integral():
    upper = majorant([(1, 0.0), (10, 1.0)])  # y = (x - 1) / 9, crosses .5 at 5.5
    lower = majorant([(1, 0.5)])
    exact = integrate_log(upper, lower, 1, 100)
    ref = _num_log_integral(lambda x: np.maximum(0, np.minimum((x - 1) / 9, 1.0) - 0.5), 1, 100)
    assert exact == pytest.approx(ref, rel=1e-6)
    assert exact > 0


def test_integrate_linear():
    c = majorant([(1, 0.5), (3, 0.9)])
    # ∫_1^5: trapezoid (.5+.9)/2*2 = 1.4, then flat .9*2 = 1.8 → 3.2
    assert integrate_linear(c, 1, 5) == pytest.approx(3.2)
    late = majorant([(2, 0.5)])
    assert integrate_linear(late, 1, 3) == pytest.approx(0.5)  # [1,2] undefined → 0


# ---- headline metrics ----------------------------------------------------------------------------


def test_savings_and_quality_at_best_single_cost():
    policy = majorant([(1.5, 0.6), (3.0, 0.8)])
    # best single: quality .7333.. at cost 4. Policy reaches it at 1.5 + 1.5*(.1333/.2) = 2.5
    assert savings_at_parity(policy, 2.2 / 3, 4.0) == pytest.approx(1 - 2.5 / 4)
    assert quality_at_best_single_cost(policy, 4.0) == pytest.approx(0.8)
    assert quality_at_best_single_cost(policy, 1.0) is None  # cheaper than the policy's cheapest point
    assert savings_at_parity(policy, 0.81, 4.0) is None  # never reaches it
    # needing more than the best model's cost gives negative savings: reaches .7 at 2.25 > 2
    assert savings_at_parity(policy, 0.7, 2.0) == pytest.approx(1 - 2.25 / 2.0)


def test_oracle_gap_closed_hand_cases():
    hull = majorant([(1, 0.0)])
    oracle = majorant([(1, 1.0)])
    # policy defined only from 10 on, at the oracle's level, over log range [1, 100] → half the area
    assert oracle_gap_closed(majorant([(10, 1.0)]), hull, oracle, 1, 100) == pytest.approx(0.5)
    assert oracle_gap_closed(oracle, hull, oracle, 1, 100) == pytest.approx(1.0)
    assert oracle_gap_closed(hull, hull, oracle, 1, 100) == 0.0
    # at a quarter of the oracle's height everywhere → .25
    assert oracle_gap_closed(majorant([(1, 0.25)]), hull, oracle, 1, 100) == pytest.approx(0.25)
    assert oracle_gap_closed(hull, hull, hull, 1, 100) is None  # nothing to close


def test_oracle_gap_closed_gives_no_penalty_below_the_hull():
    hull = majorant([(1, 0.5)])
    oracle = majorant([(1, 1.0)])
    below_then_above = majorant([(1, 0.0), (10, 1.0)])
    flat_above = majorant([(1, 0.5), (10, 1.0)])
    g1 = oracle_gap_closed(below_then_above, hull, oracle, 1, 100)
    num = _num_log_integral(lambda x: np.maximum(0, np.minimum((x - 1) / 9, 1) - 0.5), 1, 100)
    assert g1 == pytest.approx(num / (0.5 * 2), rel=1e-6)  # oracle area: .5 × 2 decades
    assert 0 < g1 < oracle_gap_closed(flat_above, hull, oracle, 1, 100)


def test_aiq():
    c = majorant([(1, 0.5), (3, 0.9)])
    assert aiq(c, 1, 5) == pytest.approx(3.2 / 4)
    assert aiq(majorant([(2, 0.5)]), 1, 3) == pytest.approx(0.25)
    assert aiq(c, 2, 2) is None


def test_apgr_cpt_random_line_and_a_router():
    qw, qs = 0.2, 0.6
    line = share_curve([0.5], [0.4], qw, qs)  # a random 50/50 mix lies on the weak→strong line
    assert apgr(line, qw, qs) == pytest.approx(0.5)
    assert cpt(line, qw, qs, 0.5) == pytest.approx(0.5)
    assert cpt(line, qw, qs, 0.8) == pytest.approx(0.8)
    # router point (.25, .5): PGR .75 at s=.25 → area .25*.75/2 + .75*(.75+1)/2 = .75
    router = share_curve([0.25], [0.5], qw, qs)
    assert apgr(router, qw, qs) == pytest.approx(0.75)
    assert cpt(router, qw, qs, 0.5) == pytest.approx(0.25 * 0.5 / 0.75)
    assert cpt(router, qw, qs, 0.8) == pytest.approx(0.25 + 0.75 * 0.05 / 0.25)
    assert apgr(router, 0.6, 0.6) is None and cpt(router, 0.6, 0.2, 0.5) is None


# ---- bootstrap -----------------------------------------------------------------------------------


def test_resample_weights_are_seeded_counts():
    w = resample_weights(50, n_boot=30, seed=7)
    assert w.shape == (30, 50)
    assert (w.sum(axis=1) == 50).all()
    assert np.array_equal(w, resample_weights(50, n_boot=30, seed=7))
    assert not np.array_equal(w, resample_weights(50, n_boot=30, seed=8))


def test_bootstrap_ci_of_a_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 1.0, size=400)
    w = resample_weights(len(x), 300, seed=1)
    ci = bootstrap_ci(lambda r: {"mean": float(r @ x / r.sum()), "never": None}, w)
    lo, hi = ci["mean"]
    se = x.std() / math.sqrt(len(x))
    assert lo < x.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.25)
    assert ci["never"] is None
