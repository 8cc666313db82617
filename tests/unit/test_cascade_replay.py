"""Offline replay drives the one CascadePolicy: cost accounting, fallbacks, policy fit/replay."""

from __future__ import annotations

import numpy as np
import pytest
from cascade_fixtures import FakeEmbedder, synthetic_table, tiny_table

from thrifty.offline.cascade_policy import CascadeOffline, replay_cascades
from thrifty.offline.optimise import CascadeSpec, replay_arrays


@pytest.fixture(autouse=True)
def _fake_embedder(monkeypatch):
    from thrifty.scoring import answer_scorer

    fake = FakeEmbedder()
    monkeypatch.setattr(answer_scorer, "_embedder", lambda embedder=None: embedder or fake)
    return fake


def test_every_tier_called_is_paid_and_the_accepted_answer_is_returned():
    t = tiny_table()
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.2, 0.3, 0.0], [0.1, 0.9, 0.0]])
    (pt,) = replay_cascades(t, scores, t.models, {1.0: (("s", "m", "b"), (0.5, 0.5))}, {1.0: 42.0})
    # p0: s accepted; p1: s rejected, m accepted; p2: all three; p3: m missing → skipped free, b answers
    assert pt.cost.tolist() == [1.0, 11.0, 111.0, 101.0]
    assert pt.quality.tolist() == [0.9, 0.6, 1.0, 0.8]
    assert pt.chosen.tolist() == [0, 1, 2, 2]
    assert pt.calls.tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1]]
    assert pt.target_budget == 42.0 and pt.knob == 1.0
    # cost is exactly the sum over called models that answered
    paid = np.where(pt.calls, np.nan_to_num(t.cost), 0).sum(1)
    assert np.allclose(paid, pt.cost)


def test_replay_through_the_policy_matches_the_optimiser_arithmetic():
    rng = np.random.default_rng(0)
    t = synthetic_table(80, seed=1)
    S = rng.random((80, 3))
    for tiers, thr in [((0,), ()), ((0, 2), (0.4,)), ((0, 1, 2), (0.3, 0.7)), ((1, 0, 2), (0.5, 0.2))]:
        names = tuple(t.models[i] for i in tiers)
        (pt,) = replay_cascades(t, S, t.models, {0.0: (names, thr)})
        c, q = replay_arrays(S, t.quality, t.cost, CascadeSpec(tiers, thr, 0, 0))
        assert np.allclose(pt.cost, c) and np.allclose(pt.quality, q)


def test_last_tier_failure_falls_back_to_the_best_scored_answer():
    t = tiny_table()
    scores = np.array([[0.1, 0.3, 0.0]] * 4)
    (pt,) = replay_cascades(t, scores, t.models, {0.0: (("s", "b", "m"), (0.9, 0.9))})
    # prompt 3: s rejected (0.1), b rejected (0.0 < 0.9), m fails → best scored received is s (0.1 > 0.0)
    assert pt.chosen[3] == 0 and pt.quality[3] == pytest.approx(0.3) and pt.cost[3] == pytest.approx(101.0)


@pytest.mark.parametrize("embed", ["none", "full"])
def test_fit_and_replay_held_out_beats_the_cheap_model_and_respects_budgets(embed):
    table = synthetic_table(300, seed=2)
    train, test = table.take(np.arange(200)), table.take(np.arange(200, 300))
    knobs = [1.2e-5, 6e-5, 1.5e-4, 4e-4, 1.2e-3]
    pol = CascadeOffline(embed=embed, grids="16", smooths="0", max_tiers=3)
    fitted = pol.fit(train, knobs)
    pts = fitted.replay(test)
    assert [p.knob for p in pts] == knobs
    assert all(p.target_budget == p.knob for p in pts)
    by_knob = {p.knob: p for p in pts}
    # cheap cascade small→big: accepting good small answers (signal in the features) saves most of big's cost
    p = by_knob[4e-4]
    assert p.mean_cost <= 4e-4 * 1.25
    assert p.mean_quality > 0.8  # the big model alone gives 0.9 at ~1e-3; small alone ~0.45
    assert p.mean_cost < 0.6 * test.cost[:, 2].mean()
    # training picks never exceed their budget
    for k, spec in fitted.picks.items():
        assert spec.cost <= k or spec is fitted.front.points[0]


def test_table_without_answer_text_uses_the_query_only_scorer():
    table = synthetic_table(150, seed=3, with_answers=False)
    fitted = CascadeOffline(embed="query", grids="8", smooths="0").fit(table.take(np.arange(100)), [1e-4, 1e-3])
    assert fitted.inputs_kw["inputs"] == "query"
    pts = fitted.replay(table.take(np.arange(100, 150)))
    assert len(pts) == 2 and all(np.isfinite(p.cost).all() and p.cost.shape == (50,) for p in pts)


def test_binary_correctness_table_works_and_scores_are_probabilities():
    table = synthetic_table(200, seed=4, binary=True)
    fitted = CascadeOffline(embed="none", grids="16", smooths="0").fit(table.take(np.arange(150)), [2e-4])
    S = fitted.score(table.take(np.arange(150, 200)))
    assert ((S >= 0) & (S <= 1)).all()
    (pt,) = fitted.replay(table.take(np.arange(150, 200)))
    assert set(np.unique(pt.quality)) <= {0.0, 1.0}
    assert pt.mean_quality > 0.75


def test_significance_gate_falls_back_to_the_single_model_when_the_gain_is_noise():
    from thrifty.offline.cascade_policy import select_knobs
    from thrifty.offline.optimise import Front

    rng = np.random.default_rng(0)
    P = 200
    Q = np.stack([rng.random(P), rng.random(P)], 1)
    C = np.tile([1.0, 2.0], (P, 1))
    S = rng.random((P, 2))
    cas = CascadeSpec((0, 1), (0.5,), 1.5, 0.0)
    c, q = replay_arrays(S, Q, C, cas)
    cas = CascadeSpec((0, 1), (0.5,), float(c.mean()), float(q.mean()))
    single = CascadeSpec((1,), (), 2.0, float(Q[:, 1].mean()))
    cheap = CascadeSpec((0,), (), 1.0, float(Q[:, 0].mean()))
    front, singles = Front([cheap, cas]), Front([cheap, single])
    # budget 1.9: the cascade fits, model 1 alone does not → compare with the cheap single model
    d = q - Q[:, 0]
    z_needed = d.mean() / (d.std(ddof=1) / np.sqrt(P - 1))
    kept = select_knobs(front, [1.9], gate=(singles, S, Q, C, max(0.0, z_needed - 0.5)))
    gated = select_knobs(front, [1.9], gate=(singles, S, Q, C, z_needed + 0.5))
    assert kept[1.9] is cas and gated[1.9] is cheap
    assert select_knobs(front, [1.9], gate=(singles, S, Q, C, 0.0))[1.9] is cas
