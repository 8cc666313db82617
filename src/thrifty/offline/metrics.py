"""Headline metrics of a policy's held-out cost–quality curve. Pure numpy.

Every curve here is the least concave non-decreasing majorant of its points (see
:mod:`thrifty.offline.curves`); a policy's curve is undefined below its cheapest point. "Best
single model" = the model of highest mean quality in the pool (ties: the cheaper); costs are mean
USD per query.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from thrifty.offline.curves import Curve, integrate_linear, integrate_log, majorant

__all__ = [
    "Curve",
    "majorant",
    "savings_at_parity",
    "quality_at_best_single_cost",
    "oracle_gap_closed",
    "aiq",
    "share_curve",
    "apgr",
    "cpt",
    "bootstrap_ci",
    "resample_weights",
]


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def savings_at_parity(curve: Curve, best_quality: float, best_cost: float) -> float | None:
    """1 − (cheapest cost at which ``curve`` reaches ``best_quality``) / ``best_cost`` (FrugalGPT).

    None when the curve never reaches the best single model's quality. Negative when the policy
    needs more than the best model's cost to match it.
    """
    c = curve.cost_for(best_quality)
    return None if c is None or best_cost <= 0 else 1.0 - c / best_cost


def quality_at_best_single_cost(curve: Curve, best_cost: float) -> float | None:
    """The curve's quality at mean cost ``best_cost`` (interpolated; None if the policy's cheapest point costs more)."""
    q = curve.quality_at(best_cost)
    assert isinstance(q, float)  # a scalar cost gives a scalar quality
    return _finite(q)


def oracle_gap_closed(policy: Curve, hull: Curve, oracle: Curve, lo: float, hi: float) -> float | None:
    """Share of the hull-to-oracle area that the policy covers, over log10(cost) in [lo, hi].

    ``∫ max(0, policy − hull) dlog10 c / ∫ max(0, oracle − hull) dlog10 c`` with [lo, hi] = the
    pool's cheapest to most expensive single-model mean cost. Below the hull the policy earns no
    credit and no penalty; where its curve is undefined (below its cheapest point) it earns none.
    None when the oracle does not rise above the hull (nothing to close).
    """
    den = integrate_log(oracle, hull, lo, hi)
    if den <= 0:
        return None
    return integrate_log(policy, hull, lo, hi) / den


def aiq(curve: Curve, lo: float, hi: float) -> float | None:
    """RouterBench's Average Improvement in Quality: ``∫ curve dc / (hi − lo)`` over linear cost in [lo, hi].

    [lo, hi] = the pool's single-model cost range, so values are comparable across policies; the
    undefined part of the curve (below its cheapest point) counts as quality 0.
    """
    if not hi > lo:
        return None
    return integrate_linear(curve, lo, hi) / (hi - lo)


def share_curve(shares: Sequence[float] | np.ndarray, qualities: Sequence[float] | np.ndarray, q_weak: float, q_strong: float) -> Curve:
    """Majorant of (share of strong calls, quality) points plus the anchors (0, q_weak) and (1, q_strong).

    The anchors are always achievable (always weak / always strong), as in RouteLLM's sweeps.
    """
    pts = [(0.0, q_weak), (1.0, q_strong), *zip(shares, qualities)]
    return majorant(pts)


def apgr(curve: Curve, q_weak: float, q_strong: float) -> float | None:
    """RouteLLM's average performance gap recovered: ∫₀¹ (Q(s) − q_weak)/(q_strong − q_weak) ds.

    ``s`` is the share of calls to the strong model and Q the majorant of :func:`share_curve`
    (linear between points, so the trapezoid rule is exact). None unless q_strong > q_weak.
    """
    gap = q_strong - q_weak
    if not gap > 0:
        return None
    return (integrate_linear(curve, 0.0, 1.0) - q_weak) / gap


def cpt(curve: Curve, q_weak: float, q_strong: float, x: float) -> float | None:
    """RouteLLM's call-performance threshold: the least share of strong calls that recovers a
    fraction ``x`` of the weak→strong gap (interpolated on the curve); None if never, or unless
    q_strong > q_weak."""
    gap = q_strong - q_weak
    if not gap > 0:
        return None
    return curve.cost_for(q_weak + x * gap)


# ---- bootstrap -----------------------------------------------------------------------------------


def resample_weights(n: int, n_boot: int = 200, seed: int = 0) -> np.ndarray:
    """(n_boot, n) counts: how often each prompt appears in each bootstrap resample (seeded)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    return np.stack([np.bincount(row, minlength=n) for row in idx]).astype(float)


def bootstrap_ci(
    statistic: Callable[[Any], dict[str, float | None]],
    resamples: Iterable[Any],
    level: float = 0.95,
) -> dict[str, list[float] | None]:
    """Percentile intervals of each named statistic over bootstrap resamples of prompts.

    ``statistic(r)`` computes the metrics on resample ``r`` (e.g. a row of
    :func:`resample_weights`, or its index). A resample where a metric is None counts as missing;
    the interval is None when more than half of the resamples miss it.
    """
    values: dict[str, list[float]] = {}
    missing: dict[str, int] = {}
    count = 0
    for r in resamples:
        count += 1
        for k, v in statistic(r).items():
            values.setdefault(k, [])
            if v is None or not math.isfinite(v):
                missing[k] = missing.get(k, 0) + 1
            else:
                values[k].append(float(v))
    a = (1 - level) / 2
    out: dict[str, list[float] | None] = {}
    for k, vs in values.items():
        if missing.get(k, 0) > count / 2 or not vs:
            out[k] = None
        else:
            lo, hi = np.quantile(vs, [a, 1 - a])
            out[k] = [float(lo), float(hi)]
    return out
