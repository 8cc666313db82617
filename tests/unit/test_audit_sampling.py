"""Audit sampling near the thresholds (thrifty.calibration.audit_sampling): the probabilities keep the
configured mean rate, and inverse-probability weights undo the oversampling (the naive mean does not)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from thrifty.calibration.audit_sampling import AuditSampler, ipw_weights, kish_n, threshold_distance, uniform_draw, weighted_share
from thrifty.calibration.guardrail import Guardrail, GuardrailConfig
from thrifty.calibration.refit import share_bound
from thrifty.config.audit import AUDIT_SAMPLINGS


@dataclass(frozen=True)
class _Step:
    score: float | None
    threshold: float | None


def _population(n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(distance to the threshold, good flag): wrong answers concentrate near the threshold."""
    rng = np.random.default_rng(seed)
    d = rng.exponential(0.2, n)
    good = rng.random(n) > 0.3 * np.exp(-d / 0.05)
    return d, good


def test_samplings_match_the_config() -> None:
    from thrifty.calibration.audit_sampling import SAMPLINGS

    assert SAMPLINGS == AUDIT_SAMPLINGS


def test_distance_is_the_closest_thresholded_step() -> None:
    assert threshold_distance([_Step(0.9, 0.5), _Step(0.42, 0.5), _Step(0.1, None)]) == pytest.approx(0.08)
    assert threshold_distance([_Step(None, None), _Step(0.3, None)]) is None
    assert threshold_distance([_Step(0.2, 0.5), _Step(0.9, 0.7)], one_sided=True) == 0.0  # accepted: distance 0
    assert threshold_distance([_Step(0.2, 0.5), _Step(0.6, 0.7)], one_sided=True) == pytest.approx(0.1)


@pytest.mark.parametrize("rate", [0.02, 0.1, 0.3])
def test_probabilities_average_to_the_rate(rate: float) -> None:
    d, _ = _population()
    s = AuditSampler(rate, "near_threshold")
    p = np.array([s.probability(float(x)) for x in d])
    assert p.min() < rate < p.max()  # it does oversample some requests
    assert p[1000:].mean() == pytest.approx(rate, rel=0.03)
    draws = np.array([uniform_draw(f"r{i}", 7) for i in range(len(d))])
    assert (draws < p).mean() == pytest.approx(rate, rel=0.12)


def test_uniform_keeps_the_rate_and_equal_weights() -> None:
    s = AuditSampler(0.1)
    assert not s.weighted and s.sample([_Step(0.5, 0.5)], 0.05) == (True, 0.1) and s.sample([_Step(0.5, 0.5)], 0.2) == (False, 0.1)
    assert ipw_weights([None, None]) is None
    assert AuditSampler(1.0, "near_threshold").probability(0.0) == 1.0


def test_near_threshold_oversamples_close_requests() -> None:
    s = AuditSampler(0.1, "near_threshold")
    d, _ = _population(2000)
    for x in d:
        s.probability(float(x))
    assert s.probability(0.0) > 2 * 0.1 > 0.1 / 2 > s.probability(0.5)


def test_ipw_estimate_is_unbiased_where_the_naive_one_is_not() -> None:
    d, good = _population()
    truth = good.mean()
    naive, ipw = [], []
    for rep in range(40):
        s = AuditSampler(0.1, "near_threshold")
        p = np.array([s.probability(float(x)) for x in d])
        hit = np.random.default_rng(rep).random(len(d)) < p
        naive.append(good[hit].mean())
        ipw.append(weighted_share(good[hit], 1.0 / p[hit])[0])
    assert abs(np.mean(naive) - truth) > 0.02  # oversampling near the threshold over-counts wrong answers
    assert np.mean(ipw) == pytest.approx(truth, abs=0.004)


def test_effective_n_and_bounds() -> None:
    g = np.array([1.0] * 95 + [0.0] * 5)
    assert weighted_share(g, None) == (0.95, 100.0)
    share, n = weighted_share(g, np.full(100, 3.0))
    assert share == pytest.approx(0.95) and n == pytest.approx(100.0)
    assert kish_n(np.array([1.0, 1.0, 4.0])) == pytest.approx(36 / 18)
    assert share_bound(g, 1.0, np.full(100, 10.0)) == pytest.approx(share_bound(g, 1.0))
    # a sampling that put its weight where the flags vary has a larger effective n than Kish's
    w = np.where(g == 0, 1.0, 1.0)
    w[:50] = 4.0
    assert weighted_share(g, w)[1] >= kish_n(w) - 1e-9


def test_guardrail_with_equal_weights_is_the_unweighted_one() -> None:
    rng = np.random.default_rng(3)
    flags = rng.random(400) < 0.9
    a, b = Guardrail(GuardrailConfig(target=0.95)), Guardrail(GuardrailConfig(target=0.95))
    for f in flags:
        ma, mb = a.observe(bool(f)), b.observe(bool(f), 5.0)
        assert (ma is None) == (mb is None)
    assert a.offset == b.offset > 0


def test_gateway_claim_uses_the_same_sampler() -> None:
    """The gateway's Auditor.claim picks with the sampler simulate runs and stores each audit's p."""
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry

    from thrifty.config.audit import AuditSettings
    from thrifty.gateway.audits import Auditor
    from thrifty.types import ChatRequest, Step

    rt = SimpleNamespace(metrics=SimpleNamespace(registry=CollectorRegistry()), providers={})
    auditor = Auditor(rt, [])
    settings = AuditSettings(rate=0.2, judge="match:agree", reference="big", sampling="near_threshold", seed=3)
    profile = SimpleNamespace(name="p", audit=settings, tiers=("small", "big"))
    twin = AuditSampler(0.2, "near_threshold")
    d, _ = _population(3000)
    claimed = 0
    for i, x in enumerate(d):
        steps = (Step(0, "small", score=0.5 + float(x), threshold=0.5, accepted=True),)
        job = SimpleNamespace(route=SimpleNamespace(profile=profile), rid=f"req_{i}", created=float(i), req=ChatRequest.from_prompt("q"))
        trace = SimpleNamespace(completion=object(), steps=steps, model="small", cost_usd=0.001)
        pending = auditor.claim(job, 200, trace)
        hit, p = twin.sample(steps, uniform_draw(f"req_{i}", 3))
        assert (pending is not None) == hit
        if pending is not None:
            assert pending.sample_prob == pytest.approx(p)
            auditor._release(job.rid)  # the queue bound is not what is tested here
            claimed += 1
    assert claimed / len(d) == pytest.approx(0.2, rel=0.15)
