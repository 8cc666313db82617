"""Prediction ceiling: the noise model hits its correlation, ρ = 1 is the oracle, the pair ceiling is exact."""

from __future__ import annotations

import numpy as np
import pytest

from thrifty.data.table import RoutingTable
from thrifty.offline.baselines import oracle_curve
from thrifty.offline.evaluate import evaluate
from thrifty.offline.metrics import apgr, share_curve
from thrifty.offline.prediction_ceiling import NoisyTruthRouter, mean_correlation, noisy_truth, share_oracle_apgr


def pool_table(n: int = 300, seed: int = 0, per_prompt_cost: bool = False) -> RoutingTable:
    rng = np.random.default_rng(seed)
    q = np.clip(rng.beta(2, 3, (n, 4)) + np.array([0.0, 0.1, 0.2, 0.3]), 0, 1)
    cost = np.tile([1e-5, 1e-4, 1e-3, 1e-2], (n, 1))
    if per_prompt_cost:
        cost = cost * rng.uniform(0.5, 1.5, (n, 4))
    return RoutingTable(tuple(map(str, range(n))), tuple(f"p{i}" for i in range(n)), ("a", "b", "c", "d"), q, cost)


@pytest.mark.parametrize("rho", [0.2, 0.5, 0.9])
def test_noisy_truth_has_the_requested_correlation_and_is_calibrated(rho):
    q = pool_table(20000, 1).quality
    pred = noisy_truth(q, rho, np.random.default_rng(0))
    assert mean_correlation(pred, q) == pytest.approx(rho, abs=0.02)
    # calibrated: regressing the truth on the prediction gives slope 1 (E[q | q̂] = q̂)
    slope = np.cov(pred[:, 0], q[:, 0])[0, 1] / pred[:, 0].var()
    assert slope == pytest.approx(1.0, abs=0.05)
    assert np.allclose(pred.mean(axis=0), q.mean(axis=0), atol=0.01)


def test_rho_one_is_the_truth_and_routes_on_the_oracle_curve():
    table = pool_table(200, 2)  # each model costs the same on every prompt: argmax q − λc is the oracle
    assert np.array_equal(noisy_truth(table.quality, 1.0, np.random.default_rng(0)), table.quality)
    fitted = NoisyTruthRouter(1.0).fit(table, [2e-5, 1e-4, 5e-4, 2e-3, 8e-3])
    oracle = oracle_curve(table).curve
    for p in fitted.replay(table):
        assert p.mean_quality == pytest.approx(oracle.quality_at(p.mean_cost), abs=1e-9)
    rep = evaluate(table, NoisyTruthRouter(1.0), n_boot=0)
    assert rep.to_json()["oracle_gap_closed"] > 0.95  # held-out λ calibration: nearly the whole gap
    noisy = evaluate(table, NoisyTruthRouter(0.3), n_boot=0).to_json()["oracle_gap_closed"]
    assert noisy < rep.to_json()["oracle_gap_closed"] - 0.2


def test_pair_ceiling_at_rho_one_is_the_share_optimal_oracle():
    """The share-optimal oracle beats the cost-optimal one in share space when per-prompt costs vary,
    and the ρ = 1 router with share calibration reproduces it."""
    table = pool_table(400, 3, per_prompt_cost=True).select_models(["a", "d"])
    qw, qs = table.quality[:, 0], table.quality[:, 1]
    ceiling = share_oracle_apgr(qw, qs)
    # brute force: strong calls to the top-k gains for every k, trapezoid over the share axis
    gain = np.sort(qs - qw)[::-1]
    Q = [qw.mean() + np.maximum(gain[:k], 0).sum() / len(gain) for k in range(len(gain) + 1)]
    shares = np.arange(len(gain) + 1) / len(gain)
    assert ceiling == pytest.approx(apgr(share_curve(shares, Q, qw.mean(), qs.mean()), qw.mean(), qs.mean()), abs=1e-9)
    fitted = NoisyTruthRouter(1.0, calibrate="share", shares=len(gain)).fit(table, [])
    pts = fitted.replay(table)
    got = apgr(share_curve([p.calls[:, 1].mean() for p in pts], [p.mean_quality for p in pts], qw.mean(), qs.mean()), qw.mean(), qs.mean())
    assert got == pytest.approx(ceiling, abs=2e-3)
    cost_oracle = evaluate(table, "oracle", strong="d", weak="a", n_boot=0).to_json()["apgr"]
    assert cost_oracle <= ceiling + 1e-9
