"""Hybrid: the router's start tier drives a real cascade; joint fit on a synthetic table; fallbacks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_routers import HashEmbedder, topic_table

from thrifty.data.table import RoutingTable
from thrifty.errors import ProviderError
from thrifty.offline.hybrid_policy import HybridOffline, skip_mask
from thrifty.policy.cascade import CascadePolicy
from thrifty.policy.drive import drive
from thrifty.policy.hybrid import HybridPolicy, start_tier
from thrifty.types import ChatRequest, Completion


class LenScorer:
    """Score = 1 if the answer says 'good'."""

    def score(self, request, completion, model):
        return 1.0 if "good" in completion.text else 0.0


class FixedPredictor:
    def __init__(self, pred):
        self.pred = np.asarray(pred)

    def predict(self, request):
        return self.pred


COST = {"small": 1e-5, "mid": 1e-4, "big": 1e-2}


def hybrid(pred, lam):
    cascade = CascadePolicy(["small", "mid", "big"], [0.5, 0.5], LenScorer())
    return HybridPolicy(cascade, FixedPredictor(pred), ["small", "mid", "big"], COST, lam)


def test_start_tier_rule():
    cost = np.array([1e-5, 1e-4, 1e-2])
    assert start_tier(np.array([0.9, 0.9, 0.9]), cost, 1.0, list(cost)) == 0  # cheapest is as good
    assert start_tier(np.array([0.1, 0.9, 0.9]), cost, 10.0, list(cost)) == 1  # mid is worth it
    assert start_tier(np.array([0.1, 0.2, 0.9]), cost, 1.0, list(cost)) == 2
    assert start_tier(np.array([0.1, 0.2, 0.9]), cost, math.inf, list(cost)) == 0  # λ=∞: plain cascade
    # a pick dearer than every tier starts at the last tier
    assert start_tier(np.array([0.1, 0.9]), np.array([1e-5, 1.0]), 0.0, [1e-5, 1e-3]) == 1


def test_hybrid_skips_the_cheap_tier_and_escalates_from_there():
    calls = []

    def call(k):
        calls.append(k)
        return Completion(text="bad" if k == 1 else "good", model=["small", "mid", "big"][k], cost_usd=list(COST.values())[k])

    d = drive(hybrid([0.1, 0.9, 0.95], lam=10.0).plan(ChatRequest.from_prompt("q")), call)
    assert calls == [1, 2]  # started at mid (router), rejected, escalated to big (cascade)
    assert d.tier == 2 and d.cost_usd == pytest.approx(1e-4 + 1e-2)
    assert [s.tier for s in d.steps] == [1, 2] and not d.steps[0].accepted

    calls.clear()
    d = drive(hybrid([0.1, 0.9, 0.95], lam=math.inf).plan(ChatRequest.from_prompt("q")), call)
    assert calls == [0] and d.tier == 0  # plain cascade: small answered "good"


def test_hybrid_falls_back_when_the_start_tier_fails():
    calls = []

    def call(k):
        calls.append(k)
        if k == 1:
            raise ProviderError("503", provider="mid", status=503, retryable=True)
        return Completion(text="good", model="x", cost_usd=1.0)

    d = drive(hybrid([0.1, 0.9, 0.95], lam=10.0).plan(ChatRequest.from_prompt("q")), call)
    assert calls == [1, 2] and d.tier == 2 and d.steps[0].error


def test_skip_mask_matches_start_rule():
    pred = np.array([[0.9, 0.9, 0.9], [0.1, 0.9, 0.95], [0.1, 0.2, 0.9]])
    cost = np.array([1e-5, 1e-4, 1e-2])
    m = skip_mask(pred, cost, 10.0)
    for p in range(3):
        k = start_tier(pred[p], cost, 10.0, list(cost))
        assert list(np.flatnonzero(m[p])) == list(range(k))
    assert not skip_mask(pred, cost, math.inf).any()


def binary_table(n=150, seed=6) -> RoutingTable:
    base = topic_table(n, seed)
    rng = np.random.default_rng(seed)
    q = (rng.random(base.quality.shape) < base.quality).astype(float)
    return RoutingTable(base.prompt_ids, base.prompts, base.models, q, base.cost, prompt_meta=base.prompt_meta)


def test_hybrid_fits_a_binary_table_without_answers():
    """Query-only scorer (no answer text) + router; the joint fit beats every single cheap model."""
    train, test = binary_table(160, 6), binary_table(80, 7)
    assert not train.has_answers
    knobs = [1.5e-5, 3e-5, 2e-4, 1.2e-3]
    fitted = HybridOffline(embed=False, router="knn", embedder=HashEmbedder()).fit(train, knobs)
    pts = {p.knob: p for p in fitted.replay(test)}
    assert set(pts) == set(knobs)
    for p in pts.values():
        # every called model is paid for
        paid = (test.cost * p.calls).sum(axis=1)
        assert np.allclose(p.cost, paid)
        assert np.all(p.calls[np.arange(test.n_prompts), p.chosen])
    cheap_best = max(np.nanmean(test.quality[:, j]) for j in (0, 1))
    assert pts[2e-4].mean_quality > cheap_best + 0.2
    assert pts[2e-4].mean_cost <= 2e-4 * 1.3
    live = fitted.policy(2e-4)
    assert isinstance(live, HybridPolicy) and set(live.tiers) <= set(train.models)


@pytest.mark.parametrize("lam", [0.0, 30.0, 3000.0, math.inf])
def test_train_replay_equals_driving_the_live_policy(lam):
    """The optimiser's exact re-scoring agrees with HybridPolicy driven prompt by prompt."""
    from thrifty.offline.hybrid_policy import train_replay
    from thrifty.offline.optimise import CascadeSpec

    rng = np.random.default_rng(1)
    P, names = 200, ["a", "b", "c", "d"]
    exp_cost = np.array([1e-5, 1e-4, 1e-3, 1e-2])
    S, Q, R = rng.random((P, 4)), rng.random((P, 4)), rng.random((P, 4))
    C = exp_cost[None, :] * rng.uniform(0.5, 1.5, (P, 4))
    Q[5, 1] = S[5, 1] = C[5, 1] = np.nan  # a missing pair: skipped at cost 0
    spec = CascadeSpec(tiers=(0, 1, 2), thresholds=(0.6, 0.5), cost=0.0, quality=0.0)
    cost, qual = train_replay(S, Q, C, R, exp_cost, lam, spec)

    class Lookup:
        def score(self, request, completion, model):
            return float(S[request.params["row"], names.index(model)])

    pol = HybridPolicy(CascadePolicy(["a", "b", "c"], [0.6, 0.5], Lookup()), None, names, dict(zip(names, exp_cost)), lam)
    costs, quals = [], []
    for p in range(P):

        def call(k, p=p):
            m = names.index(pol.tiers[k])
            if np.isnan(Q[p, m]):
                raise ProviderError("missing", provider=names[m])
            return Completion(text="", model=names[m], cost_usd=float(C[p, m]))

        d = drive(pol.plan(ChatRequest.from_prompt("q", row=p), predicted=R[p]), call)
        costs.append(d.cost_usd)
        quals.append(Q[p, names.index(pol.tiers[d.tier])])
    assert cost == pytest.approx(np.mean(costs))
    assert qual == pytest.approx(np.mean(quals))


def test_cascade_options_the_hybrid_does_not_support_are_refused_not_ignored():
    from thrifty.errors import ConfigError
    from thrifty.offline.hybrid_policy import HybridOffline

    for opts in ({"scorer": "blend"}, {"select": "best"}):
        with pytest.raises(ConfigError, match="scorer=features and select=last"):
            HybridOffline(**opts)
    HybridOffline(scorer="features", select="last")  # the defaults, spelled out, are fine


@pytest.mark.parametrize("lam", [0.0, 30.0, 3000.0, math.inf])
def test_batched_train_replay_gives_the_very_same_numbers(lam):
    """The batched re-scoring (blocks of cascades as rows) is bit-for-bit the one-cascade replay."""
    from thrifty.offline.hybrid_policy import train_replay, train_replay_many
    from thrifty.offline.optimise import CascadeSpec

    rng = np.random.default_rng(2)
    P = 301
    exp_cost = np.array([1e-5, 1e-4, 1e-3, 1e-2])
    S, Q, R = rng.random((P, 4)), rng.random((P, 4)), rng.random((P, 4))
    C = exp_cost[None, :] * rng.uniform(0.5, 1.5, (P, 4))
    for p, m in [(5, 1), (9, 0), (11, 3), (12, 2)]:
        Q[p, m] = S[p, m] = C[p, m] = np.nan
    S[20, 2] = np.nan  # a score missing where the label is not
    specs = [CascadeSpec((3,), (), 0.0, 0.0)]
    for tiers in [(0, 1), (0, 2, 3), (1, 2, 3), (0, 3)]:
        for _ in range(40):  # more than one block of a tier group
            specs.append(CascadeSpec(tiers, tuple(rng.choice([-np.inf, *rng.random(3), np.inf], len(tiers) - 1)), 0.0, 0.0))
    got = train_replay_many(S, Q, C, R, exp_cost, lam, specs, block=16)
    want = np.array([train_replay(S, Q, C, R, exp_cost, lam, sp) for sp in specs])
    np.testing.assert_array_equal(got, want)
