"""Baselines every policy is compared with: single models, their hull, the oracle, random routing.

- :func:`single_hull` — the convex hull of random mixtures of single models: the least concave
  non-decreasing majorant of the models' (mean cost, mean quality) points.
- :func:`oracle_curve` — per prompt, the model maximising ``quality − λ·cost``, swept over λ ≥ 0,
  computed *exactly*: each prompt's choices as λ falls are the vertices of its own upper hull in
  (cost, quality); merging every prompt's hull segments in order of decreasing slope gives the
  vertices of the mean curve (between vertices, one prompt is mixed at random).
- :func:`random_point` — every prompt goes to a uniformly random available model (expected values).
- :func:`mixture` — expected mean quality/cost of sending a share ``p`` of prompts to model b, else a.

Policies for the harness (the :class:`~thrifty.offline.api.OfflinePolicy` contract):
``OraclePolicy`` (knob = λ), ``RandomPolicy`` (one uniform point; share p of calls to the dearer
model when the pool is a pair), ``SinglePolicy`` (always one model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from thrifty.data.table import ModelStats, RoutingTable
from thrifty.errors import ConfigError
from thrifty.offline.api import OperatingPoint
from thrifty.offline.curves import Curve, majorant

__all__ = [
    "Hull",
    "OracleCurve",
    "single_hull",
    "oracle_curve",
    "oracle_choice",
    "random_point",
    "mixture",
    "OraclePolicy",
    "RandomPolicy",
    "SinglePolicy",
    "ORACLE_LAMBDAS",
]

# λ grid of the oracle *policy* (quality per USD): 0, 600 log-spaced values, ∞. Fixed, so every
# fold uses the same knob values and pooled points are exact global oracle points.
ORACLE_LAMBDAS: tuple[float, ...] = (0.0, *np.logspace(-2, 9, 600).tolist(), math.inf)


@dataclass(frozen=True)
class Hull:
    """The single-model hull: its curve and the models at its vertices (cheapest first)."""

    curve: Curve
    models: tuple[str, ...]


def single_hull(stats: Sequence[ModelStats]) -> Hull:
    """Least concave non-decreasing majorant of the single models' (mean cost, mean quality)."""
    pts = [(s.cost, s.quality) for s in stats if s.n > 0]
    curve = majorant(pts)
    names = []
    for x, y in zip(curve.x, curve.y):
        # the model at each vertex: exact match on both coordinates (cheapest name order on ties)
        names.append(next(s.model for s in stats if s.n > 0 and s.cost == x and s.quality == y))
    return Hull(curve, tuple(names))


@dataclass(frozen=True)
class OracleCurve:
    """The exact oracle curve and its ingredients (for bootstrapping over prompts).

    ``base_cost[i]``/``base_quality[i]``: prompt i's λ=∞ choice (cheapest model, best on ties).
    ``seg_prompt``, ``seg_dc``, ``seg_dq``: every prompt's upper-hull segments, sorted by slope
    dq/dc descending. Curve vertex k = (mean base + cumulative sum of the first k segments / n).
    """

    curve: Curve
    base_cost: np.ndarray
    base_quality: np.ndarray
    seg_prompt: np.ndarray
    seg_dc: np.ndarray
    seg_dq: np.ndarray

    def resampled(self, weights: np.ndarray) -> Curve:
        """The oracle curve when prompt i counts ``weights[i]`` times (bootstrap), exactly."""
        n = float(weights.sum())
        w = weights[self.seg_prompt]
        keep = w > 0
        x0 = float(weights @ self.base_cost) / n
        y0 = float(weights @ self.base_quality) / n
        x = np.concatenate([[x0], x0 + np.cumsum(self.seg_dc[keep] * w[keep]) / n])
        y = np.concatenate([[y0], y0 + np.cumsum(self.seg_dq[keep] * w[keep]) / n])
        return Curve(x, y)


def _two_model_rows(table: RoutingTable, base_c: np.ndarray, base_q: np.ndarray, sp: list, sdc: list, sdq: list) -> np.ndarray:
    """The per-prompt hulls of prompts with one or two finite available points, as arrays (what
    :func:`majorant` gives on them, without a Python call per prompt); returns which rows it did."""
    avail = table.available & np.isfinite(table.cost) & np.isfinite(table.quality)
    fast = (avail.sum(axis=1) <= 2) & (avail.sum(axis=1) >= 1) & (avail == table.available).all(axis=1)
    rows = np.flatnonzero(fast)
    if len(rows) == 0:
        return fast
    a = avail[rows]
    j0 = np.argmax(a, axis=1)  # first available column
    j1 = a.shape[1] - 1 - np.argmax(a[:, ::-1], axis=1)  # last (the same one when only one)
    c0, q0 = table.cost[rows, j0].astype(float), table.quality[rows, j0].astype(float)
    c1, q1 = table.cost[rows, j1].astype(float), table.quality[rows, j1].astype(float)
    swap = (c1 < c0) | ((c1 == c0) & (q1 > q0))  # majorant's order: by cost, the better first on ties
    lo_c, lo_q = np.where(swap, c1, c0), np.where(swap, q1, q0)
    hi_c, hi_q = np.where(swap, c0, c1), np.where(swap, q0, q1)
    base_c[rows], base_q[rows] = lo_c, lo_q
    seg = (hi_c != lo_c) & (hi_q > lo_q)  # a dearer point that is strictly better: one segment
    sp.append(rows[seg])
    sdc.append(hi_c[seg] - lo_c[seg])
    sdq.append(hi_q[seg] - lo_q[seg])
    return fast


def oracle_curve(table: RoutingTable) -> OracleCurve:
    """The exact oracle curve of ``table`` (see the module docstring)."""
    n = table.n_prompts
    base_c = np.empty(n)
    base_q = np.empty(n)
    sp: list[np.ndarray] = []
    sdc: list[np.ndarray] = []
    sdq: list[np.ndarray] = []
    avail = table.available
    if not avail.any(axis=1).all():
        empty = int(np.flatnonzero(~avail.any(axis=1))[0])
        raise ConfigError(f"prompt {table.prompt_ids[empty]!r} has no available model in the pool", key="--models/--exclude")
    fast = _two_model_rows(table, base_c, base_q, sp, sdc, sdq)
    for i in np.flatnonzero(~fast):
        m = avail[i]
        hull = majorant(np.column_stack([table.cost[i, m], table.quality[i, m]]))
        base_c[i], base_q[i] = hull.x[0], hull.y[0]
        if len(hull.x) > 1:
            sdc.append(np.diff(hull.x))
            sdq.append(np.diff(hull.y))
            sp.append(np.full(len(hull.x) - 1, i))
    if sp:
        seg_p, dc, dq = np.concatenate(sp), np.concatenate(sdc), np.concatenate(sdq)
        first = np.argsort(seg_p, kind="stable")  # prompt order, each prompt's segments in hull order
        seg_p, dc, dq = seg_p[first], dc[first], dq[first]
    else:
        seg_p, dc, dq = np.zeros(0, int), np.zeros(0), np.zeros(0)
    order = np.argsort(-(dq / dc), kind="stable")
    seg_p, dc, dq = seg_p[order], dc[order], dq[order]
    x = np.concatenate([[base_c.mean()], base_c.mean() + np.cumsum(dc) / n])
    y = np.concatenate([[base_q.mean()], base_q.mean() + np.cumsum(dq) / n])
    # equal slopes can leave collinear vertices; the majorant drops them (same curve)
    return OracleCurve(majorant(np.column_stack([x, y])), base_c, base_q, seg_p, dc, dq)


def oracle_choice(table: RoutingTable, lam: float) -> np.ndarray:
    """Per prompt, the index of the model maximising quality − λ·cost (ties: the cheaper, then the better).

    ``lam = inf`` picks the cheapest model (best quality among equally cheap ones).
    """
    q = np.where(table.available, table.quality, -np.inf)
    c = np.where(table.available, table.cost, np.inf)
    if math.isinf(lam):
        primary, secondary = -c, q
    else:
        primary, secondary = q - lam * np.where(np.isfinite(c), c, 0.0), -c
        primary = np.where(table.available, primary, -np.inf)
    best = primary.max(axis=1, keepdims=True)
    tol = 1e-12 * np.maximum(1.0, np.abs(best))
    cand = primary >= best - tol
    return np.argmax(np.where(cand, secondary, -np.inf), axis=1)


def random_point(table: RoutingTable) -> tuple[float, float]:
    """(mean cost, mean quality) when each prompt goes to a uniformly random available model (exact expectation)."""
    avail = table.available
    k = avail.sum(axis=1)
    c = np.where(avail, table.cost, 0.0).sum(axis=1) / k
    q = np.where(avail, table.quality, 0.0).sum(axis=1) / k
    return float(c.mean()), float(q.mean())


def mixture(table: RoutingTable, a: str, b: str, p: float) -> tuple[float, float]:
    """(mean cost, mean quality) when a share ``p`` of prompts goes to ``b``, the rest to ``a`` (expected).

    Each model's mean is over its available prompts, as for the single-model baselines.
    """
    stats = {s.model: s for s in table.model_stats()}
    sa, sb = stats[a], stats[b]
    return (1 - p) * sa.cost + p * sb.cost, (1 - p) * sa.quality + p * sb.quality


# ---- policies -----------------------------------------------------------------------------------


def _point(table: RoutingTable, chosen: np.ndarray, knob: float, label: str, **params) -> OperatingPoint:
    rows = np.arange(table.n_prompts)
    calls = np.zeros((table.n_prompts, table.n_models), dtype=bool)
    calls[rows, chosen] = True
    return OperatingPoint(
        knob=knob,
        cost=table.cost[rows, chosen].astype(float),
        quality=table.quality[rows, chosen].astype(float),
        calls=calls,
        chosen=chosen.astype(int),
        label=label,
        params=params,
    )


class _FittedOracle:
    def __init__(self, lambdas: Sequence[float]) -> None:
        self.lambdas = tuple(lambdas)

    def replay(self, table: RoutingTable) -> list[OperatingPoint]:
        return [_point(table, oracle_choice(table, lam), lam, f"λ={lam:.3g}", lam=lam) for lam in self.lambdas]


class OraclePolicy:
    """Per prompt the model maximising quality − λ·cost, at every λ of a fixed grid (it sees test labels).

    The knob is λ (quality per USD), not a budget: pooling the folds at equal λ gives exact points
    of the global oracle curve. ``n_lambdas`` sets the grid size (log-spaced from 1e-2 to 1e9, plus 0 and ∞).
    """

    name = "oracle"

    def __init__(self, n_lambdas: int | str = 600) -> None:
        n = int(n_lambdas)
        self.lambdas = ORACLE_LAMBDAS if n == 600 else (0.0, *np.logspace(-2, 9, n).tolist(), math.inf)

    def fit(self, train: RoutingTable, knobs: Sequence[float] | np.ndarray) -> _FittedOracle:
        return _FittedOracle(self.lambdas)


class _FittedRandom:
    def __init__(self, pair: tuple[int, int] | None, shares: Sequence[float]) -> None:
        self.pair, self.shares = pair, tuple(shares)

    def replay(self, table: RoutingTable) -> list[OperatingPoint]:
        avail = table.available
        if self.pair is None:
            probs = avail / avail.sum(axis=1, keepdims=True)
            return [self._expected(table, probs, 0.0, "uniform")]
        cheap, dear = self.pair
        out = []
        for p in self.shares:
            probs = np.zeros(avail.shape)
            probs[:, dear], probs[:, cheap] = p, 1 - p
            # a missing pair leaves the other model as the only choice
            probs[~avail[:, dear], cheap], probs[~avail[:, dear], dear] = 1.0, 0.0
            probs[~avail[:, cheap], dear], probs[~avail[:, cheap], cheap] = 1.0, 0.0
            out.append(self._expected(table, probs, p, f"p={p:.2f}", share_to=table.models[dear]))
        return out

    @staticmethod
    def _expected(table: RoutingTable, probs: np.ndarray, knob: float, label: str, **params) -> OperatingPoint:
        cost = (probs * np.nan_to_num(table.cost)).sum(axis=1)
        quality = (probs * np.nan_to_num(table.quality)).sum(axis=1)
        return OperatingPoint(
            knob=knob, cost=cost, quality=quality, calls=probs, chosen=np.argmax(probs, axis=1), label=label, params=params
        )


class RandomPolicy:
    """Random routing, as expected values (no sampling noise).

    With more than two models: one point, each prompt to a uniformly random available model. With
    a pair (``--strong/--weak``): RouteLLM's random router, a share ``p`` of prompts (knob) to the
    dearer model (by training mean cost) for p in 0, 0.05, …, 1. ``calls`` holds call
    probabilities and ``chosen`` the likelier model.
    """

    name = "random"

    def __init__(self, steps: int | str = 20) -> None:
        self.shares = np.linspace(0.0, 1.0, int(steps) + 1).tolist()

    def fit(self, train: RoutingTable, knobs: Sequence[float] | np.ndarray) -> _FittedRandom:
        if train.n_models != 2:
            return _FittedRandom(None, ())
        costs = train.mean_cost_by_model()
        dear = int(np.argmax(costs))
        return _FittedRandom((1 - dear, dear), self.shares)


class _FittedSingle:
    def __init__(self, model: str) -> None:
        self.model = model

    def replay(self, table: RoutingTable) -> list[OperatingPoint]:
        j = table.model_index(self.model)
        chosen = np.full(table.n_prompts, j)
        missing = ~table.available[:, j]
        if missing.any():  # not routable there: the cheapest available model answers instead
            chosen[missing] = oracle_choice(table.take(np.flatnonzero(missing)), math.inf)
        return [_point(table, chosen, 0.0, self.model, model=self.model, fallbacks=int(missing.sum()))]


class SinglePolicy:
    """Always the one model ``variant`` (``single:<model>``); where it has no outcome, the cheapest available model."""

    name = "single"

    def __init__(self, variant: str | None = None, model: str | None = None) -> None:
        model = model or variant
        if not model:
            raise ConfigError("single needs a model", key="--policy", fix="use --policy single:<model>")
        self.model = model
        self.name = f"single:{model}"

    def fit(self, train: RoutingTable, knobs: Sequence[float] | np.ndarray) -> _FittedSingle:
        train.model_index(self.model)  # ConfigError naming the choices if unknown
        return _FittedSingle(self.model)
