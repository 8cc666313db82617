"""Refit validation on audits: a better candidate is swapped in, a worse one refused, a crash
changes nothing — with the offline lab's real fitting code on a synthetic binary table."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from thrifty.calibration.loop import LearningLoop, LoopConfig, run_refit  # noqa: E402
from thrifty.calibration.refit import RefitSettings, ServingPolicy, decide, good_matrix, refit, replay  # noqa: E402
from thrifty.calibration.simulate import SimConfig, audit_outcome, cold_policy  # noqa: E402
from thrifty.calibration.synthetic import binary_table  # noqa: E402


@pytest.fixture(scope="module")
def table():
    return binary_table(600, seed=3)


def _always(tier: str, tiers) -> ServingPolicy:
    """A policy that always answers with ``tier`` (threshold −∞ on it; later tiers never reached)."""
    k = tiers.index(tier)
    thr = tuple(-np.inf if i == k else np.inf for i in range(len(tiers) - 1))
    from thrifty.scoring.heuristic import HeuristicScorer

    return ServingPolicy(0, tuple(tiers), thr, HeuristicScorer())


def test_decide_rules() -> None:
    s = RefitSettings(target=0.9, min_gain=0.01)
    meets, misses = {"good_share": 0.95, "cost_usd": 1.0, "quality": 0.8}, {"good_share": 0.8, "cost_usd": 0.5, "quality": 0.6}
    assert decide(meets, misses, s)[0] and not decide(misses, meets, s)[0]
    assert decide(meets | {"cost_usd": 0.5}, meets, s) == (True, "both meet the target; candidate is cheaper")
    assert not decide(meets | {"cost_usd": 0.995}, meets, s)[0]  # cheaper, but by less than min_gain
    assert decide(misses | {"good_share": 0.85}, misses, s)[0]
    b = RefitSettings(target=0.9, budget=1.0)
    assert decide({"cost_usd": 0.9, "quality": 0.7, "good_share": 0}, {"cost_usd": 1.2, "quality": 0.9, "good_share": 1}, b)[0]
    assert not decide({"cost_usd": 0.9, "quality": 0.7, "good_share": 0}, {"cost_usd": 0.8, "quality": 0.75, "good_share": 1}, b)[0]


def test_better_candidate_is_swapped_in(table) -> None:
    good = good_matrix(table, "large")
    serving = _always("small", table.models)  # misses a 0.9 target by far
    res = refit(table, good, serving, 0.0, RefitSettings(target=0.9), seed=0)
    assert res.error is None and res.swap and res.candidate is not None
    ev = res.evidence
    assert ev["serving_cv"]["good_share"] < 0.8 < ev["candidate_cv"]["good_share"]
    assert ev["rule"] in ("only the candidate meets the target", "both miss the target; candidate's share is higher") and ev["n"] == 600
    # the candidate is cheaper than always asking the reference and still meets the target on the table
    r = replay(res.candidate, table, good)
    assert r["good"].mean() >= 0.88 and r["cost"].mean() < np.nanmean(table.cost[:, 2])


def test_worse_candidate_is_refused(table) -> None:
    """Target 1.0: only answers as good as the reference's every time will do, which always asking
    the reference guarantees; no cheaper candidate can be better, so it is refused."""
    good = good_matrix(table, "large")
    serving = ServingPolicy(0, ("large",), (), None)  # always the reference, nothing else paid
    res = refit(table.take(np.arange(300)), good[:300], serving, 0.0, RefitSettings(target=1.0), seed=1)
    assert res.error is None and not res.swap and res.candidate is None
    assert res.evidence["serving_cv"]["good_share"] == 1.0
    assert res.evidence["rule"] in ("the candidate misses the target", "both meet the target; candidate is not cheaper by min_gain")


def test_crashing_refit_leaves_the_policy_in_service(table) -> None:
    cfg = SimConfig(table.models, "large", loop=LoopConfig(every=3, target=0.9))
    loop = LearningLoop("p", table.models, cfg.loop, cold_policy(cfg))
    good = good_matrix(table, "large")
    before = loop.serving
    called = np.zeros(3, dtype=bool)
    for i in range(3):  # three audits whose every answer failed: nothing to fit on
        o = audit_outcome(table, good, i, f"r{i}", 0, called, 0.0, "large", 0.0)
        o = type(o)(
            o.request_id, o.profile, o.created, o.served_model, 0.0, o.reference, {m: type(v)(m, None, None) for m, v in o.answers.items()}
        )
        loop.observe(o, table.prompts[i])
    assert loop.refit_due
    job = loop.begin_refit()
    result = run_refit(job)
    assert result.error and not result.swap
    event = loop.apply(job, result)
    assert event.kind == "refit_failed" and "error" in event.evidence
    assert loop.serving is before and loop.policy().thresholds == before.policy().thresholds


def test_refine_lowers_the_grid_threshold_to_the_cheapest_that_meets_the_target() -> None:
    from thrifty.calibration.refit import _refine
    from thrifty.offline.optimise import CascadeSpec, replay_arrays

    rng = np.random.default_rng(0)
    P = 400
    s = rng.random(P)  # the cheap tier's score; it is good enough where the score is high
    G = np.stack([(rng.random(P) < s).astype(float), np.ones(P)], 1)  # the last tier is the reference
    S = np.stack([s, np.zeros(P)], 1)
    C = np.tile([1.0, 10.0], (P, 1))
    grid_point = CascadeSpec((0, 1), (0.9,), 0.0, 0.0)
    share_at = lambda t: replay_arrays(S, G, C, CascadeSpec((0, 1), (t,), 0.0, 0.0))[1].mean()  # noqa: E731
    target = 0.9
    assert share_at(0.9) >= target
    spec = _refine(S, G, C, grid_point, target)
    t = spec.thresholds[0]
    assert t < 0.9 and share_at(t) >= target  # cheaper than the grid point, still meets the target
    lower = np.max(s[s < t])  # the next distinct score below: it would miss the target
    assert share_at(lower) < target
    assert spec.cost == pytest.approx(replay_arrays(S, G, C, spec)[0].mean())
    # a single tier and a grid point that already sits on the cheapest score are kept as they are
    single = CascadeSpec((1,), (), 10.0, 1.0)
    assert _refine(S, G, C, single, target) is single
    assert _refine(S, G, C, spec, target).thresholds == spec.thresholds


def test_share_bound_is_the_point_at_z0_and_the_wilson_lower_bound_above() -> None:
    from thrifty.calibration.guardrail import wilson
    from thrifty.calibration.refit import share_bound

    g = np.array([1.0] * 95 + [0.0] * 5)
    assert share_bound(g, 0.0) == pytest.approx(0.95)
    assert share_bound(g, 1.0) == pytest.approx(wilson(95, 100, 1.0)[0])
    assert share_bound(g, 1.645) < share_bound(g, 1.0) < 0.95
    assert share_bound(np.array([]), 1.0) == 0.0


def test_refine_with_a_lower_bound_keeps_a_margin_above_the_target() -> None:
    """At z > 0 the refined threshold is the cheapest whose *lower bound* reaches the target: dearer
    than the point-estimate pick, and the next cheaper score's bound misses it."""
    from thrifty.calibration.guardrail import wilson
    from thrifty.calibration.refit import _refine
    from thrifty.offline.optimise import CascadeSpec, replay_arrays

    rng = np.random.default_rng(1)
    P = 500
    s = rng.random(P)
    G = np.stack([(rng.random(P) < 0.5 + 0.5 * s).astype(float), np.ones(P)], 1)
    S = np.stack([s, np.zeros(P)], 1)
    C = np.tile([1.0, 10.0], (P, 1))
    grid_point = CascadeSpec((0, 1), (0.95,), 0.0, 0.0)
    target = 0.9
    good_at = lambda t: replay_arrays(S, G, C, CascadeSpec((0, 1), (t,), 0.0, 0.0))[1]  # noqa: E731
    lower = lambda t: wilson(int(good_at(t).sum()), P, 1.0)[0]  # noqa: E731
    point, bound = _refine(S, G, C, grid_point, target, 0.0), _refine(S, G, C, grid_point, target, 1.0)
    assert bound.thresholds[0] > point.thresholds[0] and bound.cost > point.cost
    assert lower(bound.thresholds[0]) >= target and good_at(bound.thresholds[0]).mean() > target + 0.01
    assert lower(np.max(s[s < bound.thresholds[0]])) < target


def test_validation_folds_keep_the_full_fit_margin(table, monkeypatch) -> None:
    """The candidates fitted on (k−1)/k of the audits get z·sqrt((k−1)/k), so their margin above
    the target matches the one the candidate fitted on every audit keeps (not a more cautious one)."""
    import thrifty.calibration.refit as refit_mod

    seen: list[float] = []
    real = refit_mod.fit_candidate

    def spy(t, g, settings, seed=0, weights=None):
        seen.append(settings.share_z)
        return real(t, g, settings, seed, weights)

    monkeypatch.setattr(refit_mod, "fit_candidate", spy)
    good = good_matrix(table, "large")
    refit_mod.validate(table, good, _always("large", table.models), 0.0, RefitSettings(target=0.9, folds=3, share_z=1.2), seed=0)
    assert seen == [pytest.approx(1.2 * np.sqrt(2 / 3))] * 3
