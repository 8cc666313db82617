"""Answer selection (``select="best"`` / ``"running"``): the live policy, the offline replay and the optimiser agree."""

from __future__ import annotations

import numpy as np
import pytest
from cascade_fixtures import brute_force, synthetic_table, tiny_table

from thrifty.offline.cascade_policy import CascadeOffline, replay_cascades
from thrifty.offline.optimise import CascadeSpec, optimise, replay_arrays
from thrifty.policy.cascade import CascadePolicy
from thrifty.policy.drive import drive
from thrifty.types import ChatRequest, Completion


class TextScorer:
    """Score = the number written in the answer text (lets a test fix every tier's score)."""

    def score(self, request, completion, model):
        return float(completion.text)


def _run(policy, texts, fail=()):
    paid = []

    def call(k):
        if k in fail:
            raise RuntimeError("down")
        paid.append(k)
        return Completion(text=texts[k], model=str(k), cost_usd=10.0**k)

    return drive(policy.plan(ChatRequest.from_prompt("q")), call), paid


def test_best_returns_the_best_scored_answer_when_no_tier_accepts_and_pays_every_tier():
    pol = CascadePolicy(("a", "b", "c"), (0.9, 0.9), TextScorer(), select="best")
    d, paid = _run(pol, ["0.7", "0.2", "0.5"])
    assert paid == [0, 1, 2] and d.cost_usd == pytest.approx(111.0)
    assert d.tier == 0 and d.completion.text == "0.7"
    assert [s.accepted for s in d.steps] == [True, False, False]  # the trace marks the returned answer
    assert d.steps[2].score == pytest.approx(0.5)  # the last tier is scored too
    # an accepted tier still returns at once; the last tier wins when it scores best; ties go to the later tier
    assert _run(pol, ["0.95", "0", "0"])[0].tier == 0 and _run(pol, ["0.95", "0", "0"])[1] == [0]
    assert _run(pol, ["0.3", "0.2", "0.8"])[0].tier == 2
    assert _run(pol, ["0.5", "0.2", "0.5"])[0].tier == 2
    # select="last" (the default) keeps FrugalGPT's rule
    assert _run(CascadePolicy(("a", "b", "c"), (0.9, 0.9), TextScorer()), ["0.7", "0.2", "0.5"])[0].tier == 2
    with pytest.raises(ValueError):
        CascadePolicy(("a", "b"), (0.5,), TextScorer(), select="max")


def test_running_stops_on_the_best_answer_so_far():
    pol = CascadePolicy(("a", "b", "c"), (0.9, 0.6), TextScorer(), select="running")
    d, paid = _run(pol, ["0.7", "0.2", "0.5"])  # tier 1's answer is weak, but tier 0's 0.7 ≥ 0.6: stop
    assert paid == [0, 1] and d.tier == 0 and d.cost_usd == pytest.approx(11.0)
    assert [s.accepted for s in d.steps] == [True, False] and d.steps[1].score == pytest.approx(0.2)
    d, paid = _run(pol, ["0.5", "0.2", "0.4"])  # nothing good enough: the best of all three
    assert paid == [0, 1, 2] and d.tier == 0
    d, paid = _run(pol, ["0.5", "0.65", "0"])  # tier 1's own answer is the best so far and good enough
    assert paid == [0, 1] and d.tier == 1
    # the same answers under "best" pay for tier 2
    assert _run(CascadePolicy(("a", "b", "c"), (0.9, 0.6), TextScorer(), select="best"), ["0.7", "0.2", "0.5"])[1] == [0, 1, 2]


def _tiny():
    t = tiny_table()
    t.quality[2] = [0.8, 0.2, 0.3]  # prompt 2: the cheapest answer is the best one
    return t


def test_replay_pays_every_tier_called_and_scores_the_selected_answer():
    t = _tiny()
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.4, 0.3, 0.1], [0.1, 0.9, 0.6]])
    (pt,) = replay_cascades(t, scores, t.models, {1.0: (("s", "m", "b"), (0.5, 0.5), "best")}, {1.0: 42.0})
    # p0: s accepted; p1: m accepted; p2: all three called, s scored best → s's answer;
    # p3: m missing (skipped, free), b scores 0.6 > s's 0.1 → b
    assert pt.cost.tolist() == [1.0, 11.0, 111.0, 101.0]
    assert pt.chosen.tolist() == [0, 1, 0, 2]
    assert pt.quality.tolist() == [0.9, 0.6, 0.8, 0.8]
    assert pt.calls.tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1]]
    assert pt.params["select"] == "best"
    paid = np.where(pt.calls, np.nan_to_num(t.cost), 0).sum(1)
    assert np.allclose(paid, pt.cost)
    S = np.where(np.isnan(t.quality), np.nan, scores)  # the optimiser's view: a missing pair has no score
    c, q = replay_arrays(S, t.quality, t.cost, CascadeSpec((0, 1, 2), (0.5, 0.5), 0, 0, "best"))
    assert np.allclose(c, pt.cost) and np.allclose(q, pt.quality)


@pytest.mark.parametrize("seed", [0, 1])
def test_live_policy_and_offline_arithmetic_agree_with_select_best(seed):
    rng = np.random.default_rng(seed)
    t = synthetic_table(60, seed=seed)
    S = rng.random((60, 3)).round(2)  # rounding makes ties happen
    for sel in ("best", "running"):
        for tiers, thr in [
            ((0, 2), (0.5,)),
            ((0, 1, 2), (0.6, 0.7)),
            ((2, 0, 1), (0.9, 0.3)),
            ((1, 2, 0), (np.inf, np.inf)),
            ((0, 1, 2), (0.8, 0.4)),
        ]:
            names = tuple(t.models[i] for i in tiers)
            (pt,) = replay_cascades(t, S, t.models, {0.0: (names, thr, sel)})
            c, q = replay_arrays(S, t.quality, t.cost, CascadeSpec(tiers, thr, 0, 0, sel))
            assert np.allclose(pt.cost, c) and np.allclose(pt.quality, q)


@pytest.mark.parametrize("seed", [0, 3])
def test_exact_optimiser_with_selection_finds_the_brute_force_optimum(seed):
    rng = np.random.default_rng(seed)
    P, M = 12, 4
    Q = rng.random((P, M)) * np.linspace(0.5, 1.0, M)
    S = np.clip(Q + rng.normal(0, 0.1, (P, M)), 0, 1).round(2)  # informative, noisy scores
    C = np.tile([1.0, 3.0, 10.0, 30.0], (P, 1)) * rng.uniform(0.5, 1.5, (P, M))
    front = optimise(S, Q, C, max_tiers=3, grid=None, select="running")
    brute = brute_force(S, Q, C, 3, ("last", "best", "running"))
    last = optimise(S, Q, C, max_tiers=3, grid=None)
    for budget in np.quantile(brute[:, 0], np.linspace(0.0, 1.0, 25)):
        best = brute[brute[:, 0] <= budget + 1e-12, 1].max()
        spec = front.for_budget(budget + 1e-12)
        assert spec.cost <= budget + 1e-9 and spec.quality == pytest.approx(best, abs=1e-9)
        c, q = replay_arrays(S, Q, C, spec)  # the spec (with its own select) achieves what the front claims
        assert c.mean() == pytest.approx(spec.cost) and q.mean() == pytest.approx(spec.quality)
    # selection reaches points the last-answer rule cannot: better quality at the same cost
    gained = [p for p in front.points if p.quality > last.for_budget(p.cost).quality + 1e-9]
    assert gained and all(p.select != "last" for p in gained)


def test_nested_cv_can_choose_selection_and_the_fit_replays_consistently():
    table = synthetic_table(240, seed=5)
    train, test = table.take(np.arange(160)), table.take(np.arange(160, 240))
    fitted = CascadeOffline(select="last,best", grids="16", smooths="0").fit(train, [6e-5, 4e-4])
    assert fitted.info["chosen"]["select"] in ("last", "best")
    assert all(p.select in ("last", "best") for p in fitted.front.points)
    assert any("select=best" in k for k in fitted.info["inner_cv"])
    for pt in fitted.replay(test):
        spec = fitted.picks[pt.knob]
        assert pt.params.get("select", "last") == spec.select
    with pytest.raises(ValueError):
        CascadeOffline(select="first")
