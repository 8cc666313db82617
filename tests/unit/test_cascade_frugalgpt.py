"""The FrugalGPT baseline: its vectorised list search equals brute force; it fits and replays."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from cascade_fixtures import synthetic_table

from thrifty.offline.frugalgpt import FrugalGPTOffline, search_lists
from thrifty.offline.optimise import CascadeSpec, replay_arrays


def test_search_lists_matches_brute_force_over_all_ordered_triples():
    rng = np.random.default_rng(0)
    P, M = 25, 5
    S = rng.random((P, M))
    Q = rng.random((P, M)) * np.linspace(0.3, 1.0, M)
    C = np.tile(np.geomspace(1, 100, M), (P, 1)) * rng.uniform(0.8, 1.2, (P, M))
    grid = np.array([0.0, 0.3, 0.5, 0.7, 0.9])
    pts = []
    for order in itertools.permutations(range(M), 3):
        for t1, t2 in itertools.product(grid, grid):
            c, q = replay_arrays(S, Q, C, CascadeSpec(order, (t1, t2), 0, 0))
            pts.append((c.mean(), q.mean()))
    pts = np.array(pts)
    knobs = list(np.quantile(pts[:, 0], [0.0, 0.1, 0.3, 0.5, 0.8, 1.0]) * (1 + 1e-4))  # off ties: the search is float32
    found = search_lists(S, Q, C, grid, knobs)
    for k in knobs:
        order, thr, cost, qual = found[k]
        assert cost <= k + 1e-9
        assert qual == pytest.approx(pts[pts[:, 0] <= k + 1e-9, 1].max(), abs=1e-5)
        c, q = replay_arrays(S, Q, C, CascadeSpec(order, thr, 0, 0))
        assert c.mean() == pytest.approx(cost, rel=1e-5) and q.mean() == pytest.approx(qual, abs=1e-5)
        assert len(set(order)) == 3


def test_frugalgpt_policy_fits_and_replays_with_target_budgets():
    table = synthetic_table(200, seed=8)
    knobs = [2e-5, 2e-4, 1e-3]
    fitted = FrugalGPTOffline(embed="none", grid=6).fit(table.take(np.arange(150)), knobs)
    pts = fitted.replay(table.take(np.arange(150, 200)))
    assert [p.knob for p in pts] == knobs and all(p.target_budget == p.knob for p in pts)
    assert all(p.label == "frugalgpt" and p.cost.shape == (50,) for p in pts)
    assert pts[-1].mean_quality >= pts[0].mean_quality
    # shared scorer: one head object for every model
    assert len({id(h) for h in fitted.scorer.heads.values()}) == 1
