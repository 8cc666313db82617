"""Baselines and the harness on a 3-prompt × 3-model table computed by hand.

    cost (every prompt): A = 1, B = 2, C = 4
    quality      A     B     C
      p0        0.2   0.6   1.0     hull A→B→C, slopes .4, .2
      p1        0.8   0.4   0.9     hull A→C, slope .1/3 (B is under it)
      p2        0.0   0.9   0.3     hull A→B, slope .9 (C is worse than B)

Singles: A (1, 1/3), B (2, 1.9/3), C (4, 2.2/3) → best single C; hull A, B, C (slopes .3, .05).
Oracle: base (1, 1/3); segments by slope: .9 (p2: +1, +.9), .4 (p0: +1, +.4), .2 (p0: +2, +.4),
.1/3 (p1: +3, +.1), each divided by 3 prompts →
(1, 1/3) (4/3, 1.9/3) (5/3, 2.3/3) (7/3, 2.7/3) (10/3, 2.8/3).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from thrifty.data.table import RoutingTable
from thrifty.offline.api import OperatingPoint
from thrifty.offline.baselines import (
    OraclePolicy,
    RandomPolicy,
    SinglePolicy,
    mixture,
    oracle_choice,
    oracle_curve,
    random_point,
    single_hull,
)
from thrifty.offline.evaluate import evaluate
from thrifty.offline.registry import get_policy

Q = np.array([[0.2, 0.6, 1.0], [0.8, 0.4, 0.9], [0.0, 0.9, 0.3]])
C = np.tile([1.0, 2.0, 4.0], (3, 1))
ORACLE = [(1, 1 / 3), (4 / 3, 1.9 / 3), (5 / 3, 2.3 / 3), (7 / 3, 2.7 / 3), (10 / 3, 2.8 / 3)]


def table(q=Q, c=C, folds=True) -> RoutingTable:
    n = len(q)
    return RoutingTable(
        prompt_ids=tuple(f"p{i}" for i in range(n)),
        prompts=tuple(f"prompt {i}" for i in range(n)),
        models=("A", "B", "C"),
        quality=np.array(q, dtype=float),
        cost=np.array(c, dtype=float),
        folds=tuple(np.array([i]) for i in range(n)) if folds else None,
    )


def test_single_hull_and_best_single():
    t = table()
    h = single_hull(t.model_stats())
    assert h.models == ("A", "B", "C")
    assert h.curve.x.tolist() == [1, 2, 4]
    assert h.curve.y.tolist() == pytest.approx([1 / 3, 1.9 / 3, 2.2 / 3])
    assert t.best_single().model == "C"


def test_oracle_curve_is_exact():
    oc = oracle_curve(table())
    assert np.column_stack([oc.curve.x, oc.curve.y]) == pytest.approx(np.array(ORACLE))
    assert oc.curve.quality_at(4.0) == pytest.approx(2.8 / 3)  # flat after max quality
    assert oc.curve.quality_at(2.0) == pytest.approx(2.3 / 3 + (2.7 - 2.3) / 3 * (2 - 5 / 3) / (7 / 3 - 5 / 3))
    # counting p1 twice (bootstrap weights): base (4/4, 1.8/4), then +.9, +.4, +.4, +.2 (p1 twice)
    r = oc.resampled(np.array([1.0, 2.0, 1.0]))
    assert np.column_stack([r.x, r.y]) == pytest.approx(
        np.array([(1, 1.8 / 4), (5 / 4, 2.7 / 4), (6 / 4, 3.1 / 4), (8 / 4, 3.5 / 4), (14 / 4, 3.7 / 4)])
    )


def test_oracle_choice_by_lambda():
    t = table()
    assert oracle_choice(t, 0.0).tolist() == [2, 2, 1]  # max quality
    assert oracle_choice(t, math.inf).tolist() == [0, 0, 0]  # cheapest
    assert oracle_choice(t, 0.3).tolist() == [1, 0, 1]  # p0: .2 < .3 < .4 → B; p1: 1/30 < .3 → A; p2: .9 > .3 → B


def test_oracle_ignores_missing_pairs_and_ties_go_to_the_cheaper():
    q = Q.copy()
    q[2, 1] = np.nan  # p2 loses B: its hull becomes A(1,0) → C(4,.3)
    q[1, 2] = 0.8  # p1: C ties A on quality → the cheaper A at λ = 0
    t = table(q)
    assert oracle_choice(t, 0.0).tolist() == [2, 0, 2]
    oc = oracle_curve(t)
    assert oc.curve.y[-1] == pytest.approx((1.0 + 0.8 + 0.3) / 3)
    assert oc.curve.x[-1] == pytest.approx((4 + 1 + 4) / 3)


def test_random_point_and_mixture():
    # uniform: cost 7/3; quality per prompt 1.8/3, 2.1/3, 1.2/3 → mean 1.7/3
    assert random_point(table()) == pytest.approx((7 / 3, 1.7 / 3))
    q = Q.copy()
    q[0, 2] = np.nan  # p0 chooses between A and B only: cost 1.5, quality .4
    assert random_point(table(q)) == pytest.approx(((1.5 + 7 / 3 + 7 / 3) / 3, (0.4 + 2.1 / 3 + 1.2 / 3) / 3))
    # 25% to C, rest to A: cost .75*1 + .25*4, quality .75/3 + .25*2.2/3
    assert mixture(table(), "A", "C", 0.25) == pytest.approx((1.75, 0.75 / 3 + 0.55 / 3))


def test_registry_names():
    assert isinstance(get_policy("oracle"), OraclePolicy)
    assert isinstance(get_policy("random"), RandomPolicy)
    p = get_policy("single:B")
    assert isinstance(p, SinglePolicy) and p.model == "B" and p.name == "single:B"


def test_evaluate_oracle_pools_folds_into_exact_points():
    rep = evaluate(table(), "oracle", n_boot=0)
    assert rep.n_folds == 3
    # pooled points at equal λ are exact oracle vertices; the λ grid passes every breakpoint
    assert rep.metrics["quality_at_best_single_cost"] == pytest.approx(2.8 / 3)
    assert rep.metrics["oracle_quality_at_best_single_cost"] == pytest.approx(2.8 / 3)
    assert rep.metrics["oracle_gap_closed"] == pytest.approx(1.0, abs=1e-3)
    # the oracle reaches C's quality 2.2/3 between (4/3, 1.9/3) and (5/3, 2.3/3): at 4/3 + 1/3 * .3/.4 = 1.5833
    assert rep.metrics["savings_at_parity"] == pytest.approx(1 - (4 / 3 + 0.25) / 4, abs=1e-3)


def test_evaluate_single_and_random():
    rep = evaluate(table(), "single:C", n_boot=0)
    assert np.array([(p.mean_cost, p.mean_quality) for p in rep.points]) == pytest.approx(np.array([(4.0, 2.2 / 3)]))
    assert rep.metrics["savings_at_parity"] == pytest.approx(0.0, abs=1e-12)
    assert rep.metrics["oracle_gap_closed"] == 0.0
    b = rep.to_json()["best_single"]
    assert b["model"] == "C" and b["cost"] == 4.0
    rnd = evaluate(table(), "random", n_boot=0)
    assert np.array([(p.mean_cost, p.mean_quality) for p in rnd.points]) == pytest.approx(np.array([(7 / 3, 1.7 / 3)]))
    assert rnd.metrics["quality_at_best_single_cost"] == pytest.approx(1.7 / 3)  # flat after its only point
    assert rnd.metrics["savings_at_parity"] is None


def test_single_policy_falls_back_where_the_model_is_missing():
    q = Q.copy()
    q[1, 2] = np.nan
    rep = evaluate(table(q), "single:C", n_boot=0)
    p = rep.points[0]
    assert p.quality.tolist() == [1.0, 0.8, 0.3]  # p1 answered by the cheapest available model, A
    assert p.cost.tolist() == [4.0, 1.0, 4.0]
    assert any("no outcome" in w for w in rep.warnings)


def test_pair_random_router_has_apgr_one_half():
    rep = evaluate(table(), "random", strong="C", weak="A", n_boot=0)
    assert rep.table.models == ("A", "C")
    assert rep.pair["apgr"] == pytest.approx(0.5)
    assert rep.pair["cpt50"] == pytest.approx(0.5)
    assert rep.pair["cpt80"] == pytest.approx(0.8)
    # the oracle over the pair: at share s of calls to C it beats the line → APGR > .5
    orc = evaluate(table(), "oracle", strong="C", weak="A", n_boot=0)
    assert orc.pair["apgr"] > 0.5 and orc.pair["cpt50"] < 0.5


class _Cheapest:
    """A fake budgeted policy: always A, claiming a target budget of half A's cost."""

    name = "cheapest"

    def fit(self, train, knobs):
        return self

    def replay(self, t):
        n = t.n_prompts
        calls = np.zeros((n, t.n_models), bool)
        calls[:, 0] = True
        return [
            OperatingPoint(
                knob=0.5, cost=t.cost[:, 0].copy(), quality=t.quality[:, 0].copy(), calls=calls, chosen=np.zeros(n, int), target_budget=0.5
            )
        ]


class _Overspender(_Cheapest):
    """Always C (cost 4) against a budget of 1.5, which A alone would meet: a real violation."""

    def replay(self, t):
        n = t.n_prompts
        calls = np.zeros((n, t.n_models), bool)
        calls[:, 2] = True
        return [
            OperatingPoint(
                knob=1.5, cost=t.cost[:, 2].copy(), quality=t.quality[:, 2].copy(), calls=calls, chosen=np.full(n, 2), target_budget=1.5
            )
        ]


class _FoldDependentKnobs(_Cheapest):
    def replay(self, t):
        pt = super().replay(t)[0]
        extra = OperatingPoint(knob=float(t.prompt_ids[0][1:]) + 10, cost=pt.cost, quality=pt.quality, calls=pt.calls, chosen=pt.chosen)
        return [pt, extra]


def test_budget_violations_and_dropped_knobs():
    rep = evaluate(table(), _Cheapest(), n_boot=0)
    # 0.5 is below A's cost, the cheapest any policy can be: flagged as the knob's fault
    assert rep.budget_violations == [{"knob": 0.5, "target_budget": 0.5, "cost": 1.0, "over": pytest.approx(1.0), "infeasible": True}]
    feasible = evaluate(table(), _Overspender(), n_boot=0)
    assert feasible.budget_violations == [
        {"knob": 1.5, "target_budget": 1.5, "cost": 4.0, "over": pytest.approx(4 / 1.5 - 1), "infeasible": False}
    ]
    rep2 = evaluate(table(), _FoldDependentKnobs(), n_boot=0)
    assert len(rep2.points) == 1
    assert any("dropped" in w for w in rep2.warnings)


def test_bootstrap_intervals_bracket_the_point_estimate():
    rng = np.random.default_rng(3)
    n = 60
    q = rng.uniform(0, 1, size=(n, 3))
    c = np.tile([1.0, 2.0, 4.0], (n, 1)) * rng.uniform(0.5, 1.5, size=(n, 1))
    t = table(q, c, folds=False)
    rep = evaluate(t, "oracle", n_boot=100, seed=1)
    lo, hi = rep.ci["quality_at_best_single_cost"]
    assert lo <= rep.metrics["quality_at_best_single_cost"] <= hi
    assert hi - lo > 0
    again = evaluate(t, "oracle", n_boot=100, seed=1)
    assert again.ci == rep.ci  # seeded


def test_free_model_keeps_the_log_cost_gap_defined():
    # A costs nothing: log10(cost) starts at the cheapest priced hull point (B, cost 2) instead
    c = C.copy()
    c[:, 0] = 0.0
    rep = evaluate(table(Q, c), "oracle", n_boot=0)
    assert rep.metrics["oracle_gap_closed"] == pytest.approx(1.0, abs=1e-3)
    assert evaluate(table(Q, c), "single:C", n_boot=0).metrics["oracle_gap_closed"] == 0.0
