"""What predictor quality do routing targets need? A router fed the truth plus tuned noise.

:func:`noisy_truth` replaces a router's predictions by the *true* quality plus Gaussian noise, tuned
per model so that the prediction correlates with the truth at exactly ``rho`` (in expectation), and
calibrated like a good regressor — the best linear predictor of q from the noisy signal:

    s = q + σ_m ε,  σ_m = sd(q_m)·sqrt(1/ρ² − 1),   q̂ = μ_m + ρ²·(s − μ_m)

(μ_m, sd(q_m): model m's mean and spread on the table at hand; corr(q̂, q) = ρ; ρ = 1 gives q̂ = q).
Noise is independent across models and prompts — real predictors' errors are correlated across
models, so read the ρ of a real router (its held-out per-model correlation) as a rough position on
this scale, not an exact one.

:class:`NoisyTruthRouter` is an offline policy the harness evaluates like any other: on each training
fold it calibrates λ (``calibrate='budget'``) or the share threshold (``'share'``) on noisy-truth
predictions of the *training* prompts, then routes the test prompts on their own noisy truth with
the same rule as the real router (``argmax q̂ − λ·c̄``; expected per-model costs, as a router cannot
know an answer's length). It is a measuring device, not a deployable policy: it reads test outcomes.

:func:`share_oracle_apgr` is the exact APGR ceiling of a pair: sending the strong model the
prompts with the largest true gain first is the best router at every share of strong calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from thrifty.data.table import RoutingTable
from thrifty.offline import metrics as M
from thrifty.offline.api import OperatingPoint
from thrifty.offline.router_policy import calibrate_budget, calibrate_share
from thrifty.offline.routers import route

__all__ = ["noisy_truth", "NoisyTruthRouter", "share_oracle_apgr", "share_oracle_metrics", "heldout_correlation", "mean_correlation"]


def noisy_truth(quality: np.ndarray, rho: float, rng: np.random.Generator) -> np.ndarray:
    """(n, M) calibrated noisy predictions correlating with ``quality`` at ``rho`` (see module doc).
    Missing cells get the model's mean (they are never routed to)."""
    if not 0.0 < rho <= 1.0:
        raise ValueError(f"rho must be in (0, 1], got {rho}")
    have = ~np.isnan(quality)
    q = np.where(have, quality, 0.0)
    cnt = np.maximum(have.sum(axis=0), 1)
    mu = q.sum(axis=0) / cnt
    sd = np.sqrt((np.where(have, quality - mu, 0.0) ** 2).sum(axis=0) / cnt)
    if rho == 1.0:
        return np.where(have, quality, mu)
    sigma = sd * np.sqrt(1.0 / rho**2 - 1.0)
    signal = q + sigma[None, :] * rng.standard_normal(q.shape)
    return np.where(have, mu + rho**2 * (signal - mu), mu)


def mean_correlation(pred: np.ndarray, quality: np.ndarray) -> float:
    """Mean over models of the Pearson correlation of predicted and true quality (known cells;
    models whose truth or prediction is constant are skipped)."""
    out = []
    for m in range(quality.shape[1]):
        have = ~np.isnan(quality[:, m])
        p, q = pred[have, m], quality[have, m]
        if len(q) > 2 and p.std() > 1e-12 and q.std() > 1e-12:
            out.append(float(np.corrcoef(p, q)[0, 1]))
    return float(np.mean(out)) if out else float("nan")


@dataclass
class _FittedNoisy:
    rho: float
    seed: int
    calibrate: str
    exp_cost: np.ndarray
    knobs: tuple[float, ...]
    lambdas: tuple[float, ...]

    def replay(self, table: RoutingTable) -> list[OperatingPoint]:

        rng = np.random.default_rng(self.seed + 7919)
        pred = noisy_truth(table.quality, self.rho, rng)
        avail = table.available
        rows = np.arange(table.n_prompts)
        out = []
        for knob, lam in zip(self.knobs, self.lambdas):
            ch = route(pred, self.exp_cost, lam, avail)
            calls = np.zeros(table.quality.shape, dtype=bool)
            calls[rows, ch] = True
            label = f"share={knob:.2f}" if self.calibrate == "share" else f"B=${knob:.3g}"
            pt = OperatingPoint(
                knob=float(knob),
                cost=table.cost[rows, ch],
                quality=table.quality[rows, ch],
                calls=calls,
                chosen=ch,
                label=label,
                params={"lam": lam, "rho": self.rho},
            )
            pt.target_budget = None if self.calibrate == "share" else float(knob)
            out.append(pt)
        return out


class NoisyTruthRouter:
    """Offline policy: the router rule on noisy truth at correlation ``rho`` (see the module doc)."""

    def __init__(self, rho: float | str = 1.0, seed: int | str = 0, calibrate: str = "budget", shares: int | str = 40) -> None:
        self.rho, self.seed, self.calibrate = float(rho), int(seed), calibrate
        self.shares = np.linspace(0.0, 1.0, int(shares) + 1)
        self.name = f"noisy-truth router (ρ={self.rho:g})"

    def fit(self, train: RoutingTable, knobs: Sequence[float] | np.ndarray) -> _FittedNoisy:

        exp_cost = np.nanmean(train.cost, axis=0)
        pred = noisy_truth(train.quality, self.rho, np.random.default_rng(self.seed))
        if self.calibrate == "share":
            ks = tuple(float(s) for s in self.shares)
            lams = calibrate_share(pred, exp_cost, ks)
        else:
            ks = tuple(float(b) for b in knobs)
            lams = calibrate_budget(pred, train.quality, train.cost, exp_cost, ks)
        return _FittedNoisy(self.rho, self.seed, self.calibrate, exp_cost, ks, tuple(lams))


def share_oracle_metrics(q_weak: np.ndarray, q_strong: np.ndarray) -> dict[str, float | None]:
    """APGR, CPT(50%), CPT(80%) of the best possible router of a pair: strong calls go to the prompts
    of largest true gain ``q_strong − q_weak`` first (a share s of calls gains the top-s gains; the
    curve is concave, so it is its own majorant). None unless the strong model is better on average."""

    gain = np.sort(q_strong - q_weak)[::-1]
    n = len(gain)
    qw, qs = float(q_weak.mean()), float(q_strong.mean())
    Q = qw + np.concatenate([[0.0], np.cumsum(np.maximum(gain, 0.0))]) / n
    curve = M.share_curve(np.arange(n + 1) / n, Q, qw, qs)
    return {"apgr": M.apgr(curve, qw, qs), "cpt50": M.cpt(curve, qw, qs, 0.5), "cpt80": M.cpt(curve, qw, qs, 0.8)}


def share_oracle_apgr(q_weak: np.ndarray, q_strong: np.ndarray) -> float | None:
    """The exact APGR ceiling of a pair (see :func:`share_oracle_metrics`)."""
    return share_oracle_metrics(q_weak, q_strong)["apgr"]


def heldout_correlation(table: RoutingTable, policy, n_folds: int = 5, seed: int = 0) -> float:
    """Mean per-model correlation of a real router's held-out predictions with the truth: fit the
    predictor (``policy.fit_predictor``, e.g. :class:`~thrifty.offline.router_policy.RouterOffline`)
    on each training fold, predict the test fold, pool the folds."""
    pred = np.zeros(table.quality.shape)
    for _, train, test, rows in table.splits(n_folds, seed):
        pred[rows] = policy.fit_predictor(train).predict_texts(list(test.prompts))
    return mean_correlation(pred, table.quality)
