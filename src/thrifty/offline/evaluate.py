"""The evaluation harness: k-fold fit → held-out replay → pooled points → metrics against baselines.

For every fold of ``table.splits()`` (the ``splits.json`` folds when present) the policy is
fitted on the training prompts with a grid of target mean costs and replayed on the test prompts.
The points of all folds that share a knob value are *pooled* into one held-out point over every
prompt (per-prompt arrays concatenated in table row order). The pooled points' majorant is the
policy's held-out curve; the metrics of :mod:`thrifty.offline.metrics` compare it with the
single-model hull and the exact oracle of the whole pool.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from thrifty.data.table import ModelStats, RoutingTable
from thrifty.errors import ConfigError
from thrifty.offline import metrics as M
from thrifty.offline.api import OfflinePolicy, OperatingPoint
from thrifty.offline.baselines import Hull, OracleCurve, oracle_curve, random_point, single_hull
from thrifty.offline.curves import Curve, majorant
from thrifty.offline.prediction_ceiling import mean_correlation
from thrifty.offline.registry import get_policy
from thrifty.scoring.feature_store import table_feature_scope
from thrifty.scoring.progress import progress_scope, step

__all__ = ["evaluate", "EvalReport", "PooledPoint", "default_knobs", "BUDGET_TOLERANCE"]

BUDGET_TOLERANCE = 0.05  # a pooled point more than 5% over its target budget is a violation


@dataclass(eq=False)
class PooledPoint:
    """One knob setting replayed held-out on every prompt (per-prompt arrays in table row order)."""

    knob: float
    target_budget: float | None
    label: str
    cost: np.ndarray
    quality: np.ndarray
    calls: np.ndarray
    chosen: np.ndarray | None = None  # index of the model whose answer was returned, per prompt

    @property
    def mean_cost(self) -> float:
        return float(self.cost.mean())

    @property
    def mean_quality(self) -> float:
        return float(self.quality.mean())


@dataclass(eq=False)
class EvalReport:
    """Everything ``thrifty eval`` reports for one policy; :meth:`to_json` is the stable shape."""

    policy: str
    table: RoutingTable
    points: list[PooledPoint]
    curve: Curve
    singles: list[ModelStats]
    best_single: ModelStats
    hull: Hull
    oracle: OracleCurve
    random: tuple[float, float]
    metrics: dict[str, float | None]
    ci: dict[str, list[float] | None]
    pair: dict[str, Any] | None
    budget_violations: list[dict[str, float]]
    timing: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    n_folds: int = 0

    def to_json(self) -> dict[str, Any]:
        b = self.best_single
        hull_on = set(self.hull.models)
        doc: dict[str, Any] = {
            "policy": self.policy,
            "data": {"source": self.table.source, "hash": self.table.data_hash, "n_prompts": self.table.n_prompts, "n_folds": self.n_folds},
            "pool": list(self.table.models),
            "best_single": {"model": b.model, "quality": b.quality, "cost": b.cost},
            **self.metrics,
            "ci95": self.ci,
            "points": [
                {"cost": p.mean_cost, "quality": p.mean_quality, "knob": _num(p.knob), "target_budget": p.target_budget, "label": p.label}
                for p in self.points
            ],
            "curve": self.curve.to_json(),
            "budget_violations": self.budget_violations,
            "baselines": {
                "singles": [
                    {"model": s.model, "n": s.n, "quality": _opt(s.quality), "cost": _opt(s.cost), "on_hull": s.model in hull_on}
                    for s in self.singles
                ],
                "hull": [
                    {"model": m, "cost": float(x), "quality": float(y)}
                    for m, x, y in zip(self.hull.models, self.hull.curve.x, self.hull.curve.y)
                ],
                "oracle": self.oracle.curve.to_json(),
                "random": {"cost": self.random[0], "quality": self.random[1]},
            },
            "timing": self.timing,
            "warnings": self.warnings,
        }
        if self.pair is not None:
            doc.update({k: self.pair[k] for k in ("apgr", "cpt50", "cpt80")})
            doc["pair"] = {k: v for k, v in self.pair.items() if k not in ("apgr", "cpt50", "cpt80")}
        return doc


def _opt(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _num(x: float) -> float | None:
    """JSON has no infinity: a non-finite knob (e.g. the oracle's λ = ∞) is written as null."""
    return x if math.isfinite(x) else None


def default_knobs(table: RoutingTable, n: int = 60, extend: float = 1.25) -> np.ndarray:
    """``n`` log-spaced target mean costs from the cheapest single model's mean cost / ``extend``
    to the most expensive one's × ``extend``."""
    costs = np.array([s.cost for s in table.model_stats() if s.n > 0 and s.cost > 0])
    if len(costs) == 0:
        return np.zeros(1)
    return np.logspace(math.log10(costs.min() / extend), math.log10(costs.max() * extend), n)


def _pool(table: RoutingTable, per_fold: list[tuple[np.ndarray, list[OperatingPoint]]], warnings: list[str]) -> list[PooledPoint]:
    n = table.n_prompts
    knobs: list[float] = []
    by_knob: dict[float, list[tuple[np.ndarray, OperatingPoint]]] = {}
    for rows, pts in per_fold:
        for pt in pts:
            for name in ("cost", "quality"):
                if np.shape(getattr(pt, name)) != (len(rows),):
                    raise ValueError(f"policy returned {name} of shape {np.shape(getattr(pt, name))} for {len(rows)} prompts")
            if pt.knob not in by_knob:
                knobs.append(pt.knob)
            by_knob.setdefault(pt.knob, []).append((rows, pt))
    out = []
    dropped = 0
    for k in knobs:
        parts = by_knob[k]
        if len(parts) != len(per_fold):
            dropped += 1
            continue
        cost, quality = np.full(n, np.nan), np.full(n, np.nan)
        calls = np.zeros((n, table.n_models), dtype=parts[0][1].calls.dtype)
        chosen = np.full(n, -1, dtype=int)
        for rows, pt in parts:
            cost[rows], quality[rows], calls[rows], chosen[rows] = pt.cost, pt.quality, pt.calls, pt.chosen
        if np.isnan(cost).any() or np.isnan(quality).any():
            raise ValueError(f"policy left prompts without a cost or quality at knob {k!r}")
        first = parts[0][1]
        out.append(PooledPoint(float(k), first.target_budget, first.label, cost, quality, calls, chosen))
    if dropped:
        warnings.append(f"{dropped} knob value(s) were not returned on every fold and were dropped")
    return out


def evaluate(
    table: RoutingTable,
    policy: OfflinePolicy | str,
    *,
    strong: str | None = None,
    weak: str | None = None,
    n_folds: int = 5,
    seed: int = 0,
    knobs: Sequence[float] | None = None,
    progress: bool = False,
    n_boot: int = 200,
    options: dict[str, Any] | None = None,
    post: Callable[[list[PooledPoint]], list[PooledPoint]] | None = None,
) -> EvalReport:
    """Evaluate ``policy`` (an object or a registry name) held-out on ``table``; see the module docstring.

    With ``strong`` and ``weak`` the pool becomes that pair and APGR / CPT(50%) / CPT(80%) are
    computed from the pooled share of calls to ``strong``. ``n_boot`` bootstrap resamples of the
    prompts (seeded by ``seed``) give 95% intervals of the headline metrics. ``post`` rewrites the
    pooled held-out points before any metric is computed (e.g. a completion cache replayed over the
    whole held-out stream, :mod:`thrifty.offline.contributions`).
    """
    t_start = time.perf_counter()
    if isinstance(policy, str):
        policy = get_policy(policy, options)
    if (strong is None) != (weak is None):
        raise ConfigError("--strong and --weak go together", key="--strong/--weak", fix="give both models of the pair")
    if strong is not None:
        assert weak is not None  # checked just above: they go together
        if strong == weak:
            raise ConfigError("the strong and weak models are the same", key="--strong/--weak")
        table = table.select_models([weak, strong])
    knob_grid = np.asarray(default_knobs(table) if knobs is None else knobs, dtype=float)
    warnings: list[str] = []

    per_fold: list[tuple[np.ndarray, list[OperatingPoint]]] = []
    folds = list(table.splits(n_folds, seed))
    t0 = time.perf_counter()
    heldout: list[tuple[np.ndarray, Any]] = []  # (rows, (predictions, model names)) where the policy exposes them
    # every answer's features once for all folds (not once per fold); bars for the folds and for any
    # long step inside them (embedding the prompts, distilling the static token table)
    with progress_scope(progress), table_feature_scope():
        bar = step(f"{policy.name}: folds", len(folds))
        for _k, train, test, rows in folds:
            fitted = policy.fit(train, knob_grid)
            per_fold.append((rows, list(fitted.replay(test))))
            pred = getattr(fitted, "heldout_pred", None)  # optional: (predictions, model names) of the last replay
            if pred is not None:
                heldout.append((rows, pred))
            if bar:
                bar.advance()
        if bar:
            bar.close()
    t_fit = time.perf_counter() - t0

    t0 = time.perf_counter()
    points = _pool(table, per_fold, warnings)
    if post is not None:
        points = post(points)
    if not points:
        raise ConfigError(f"policy {policy.name!r} returned no operating points", key="--policy")
    singles = table.model_stats()
    best = table.best_single()
    live = [s for s in singles if s.n > 0]
    lo, hi = min(s.cost for s in live), max(s.cost for s in live)
    hull = single_hull(singles)
    oracle = oracle_curve(table)
    curve = majorant([(p.mean_cost, p.mean_quality) for p in points])
    metrics = _headline(curve, hull.curve, oracle.curve, best, lo, hi)
    metrics["hull_quality_at_best_single_cost"] = M.quality_at_best_single_cost(hull.curve, best.cost)
    metrics["oracle_quality_at_best_single_cost"] = M.quality_at_best_single_cost(oracle.curve, best.cost)
    metrics["oof_pred_corr"] = _oof_correlation(table, heldout) if len(heldout) == len(folds) else None
    pair = _pair_metrics(table, points, singles, strong, weak) if strong and weak is not None else None
    if pair and not pair["strong_quality"] > pair["weak_quality"]:
        warnings.append(f"{strong!r} is not better than {weak!r} on mean quality: APGR and CPT are undefined")
    # the cheapest any policy can be: every prompt answered by its cheapest available model; a target
    # below it cannot be met, so such a "violation" is the knob's fault, not the policy's
    floor = float(np.nanmin(np.where(np.isnan(table.quality), np.nan, table.cost), axis=1).mean())
    violations = [
        {
            "knob": p.knob,
            "target_budget": p.target_budget,
            "cost": p.mean_cost,
            "over": p.mean_cost / p.target_budget - 1,
            "infeasible": bool(p.target_budget < floor),
        }
        for p in points
        if p.target_budget and p.mean_cost > p.target_budget * (1 + BUDGET_TOLERANCE)
    ]
    fallbacks = sum(int(pt.params.get("fallbacks", 0)) for _, pts in per_fold for pt in pts)
    if fallbacks:
        warnings.append(f"{fallbacks} prompt(s) had no outcome for the chosen model; another available model answered")
    t_metrics = time.perf_counter() - t0

    t0 = time.perf_counter()
    ci = _bootstrap(table, points, oracle, best, strong, n_boot, seed) if n_boot > 0 else {}
    t_boot = time.perf_counter() - t0
    return EvalReport(
        policy=policy.name,
        table=table,
        points=points,
        curve=curve,
        singles=singles,
        best_single=best,
        hull=hull,
        oracle=oracle,
        random=random_point(table),
        metrics=metrics,
        ci=ci,
        pair=pair,
        budget_violations=violations,
        timing={"fit_replay_s": t_fit, "metrics_s": t_metrics, "bootstrap_s": t_boot, "total_s": time.perf_counter() - t_start},
        warnings=warnings,
        n_folds=len(folds),
    )


def _headline(curve: Curve, hull: Curve, oracle: Curve, best: ModelStats, lo: float, hi: float) -> dict[str, float | None]:
    # log10(cost) cannot start at 0: a free model (local, cost 0) moves the gap's range to the
    # cheapest priced point of the hull
    lo_log = lo if lo > 0 else next((float(x) for x in hull.x if x > 0), hi)
    return {
        "quality_at_best_single_cost": M.quality_at_best_single_cost(curve, best.cost),
        "savings_at_parity": M.savings_at_parity(curve, best.quality, best.cost),
        "oracle_gap_closed": M.oracle_gap_closed(curve, hull, oracle, lo_log, hi),
        "aiq": M.aiq(curve, lo, hi),
    }


def _oof_correlation(table: RoutingTable, heldout: list[tuple[np.ndarray, Any]]) -> float | None:
    """Mean over models of the Pearson correlation between the policy's out-of-fold predictions
    (router: predicted quality; cascade: answer score) and the labels, pooled over the folds."""

    models = tuple(heldout[0][1][1])
    if any(tuple(h[1][1]) != models for h in heldout):
        return None  # candidates differ between folds: no single pooled matrix
    pred = np.full((table.n_prompts, len(models)), np.nan)
    for rows, (p, _) in heldout:
        pred[rows] = p
    cols = [table.model_index(m) for m in models]
    r = mean_correlation(np.nan_to_num(pred), table.quality[:, cols])
    return None if math.isnan(r) else r


def _pair_metrics(table: RoutingTable, points: list[PooledPoint], singles: list[ModelStats], strong: str, weak: str) -> dict[str, Any]:
    js, jw = table.model_index(strong), table.model_index(weak)
    qs, qw = singles[js].quality, singles[jw].quality
    shares = [float(np.mean(p.calls[:, js])) for p in points]
    sc = M.share_curve(shares, [p.mean_quality for p in points], qw, qs)
    return {
        "strong": strong,
        "weak": weak,
        "strong_quality": qs,
        "weak_quality": qw,
        "shares": shares,
        "apgr": M.apgr(sc, qw, qs),
        "cpt50": M.cpt(sc, qw, qs, 0.5),
        "cpt80": M.cpt(sc, qw, qs, 0.8),
    }


def _bootstrap(
    table: RoutingTable, points: list[PooledPoint], oracle: OracleCurve, best: ModelStats, strong: str | None, n_boot: int, seed: int
) -> dict[str, list[float] | None]:
    """95% percentile intervals over prompt resamples; the best single model's identity is held fixed."""
    C = np.stack([p.cost for p in points])
    Q = np.stack([p.quality for p in points])
    avail = table.available.astype(float)
    qz, cz = np.nan_to_num(table.quality), np.nan_to_num(table.cost)
    jb = table.model_index(best.model)
    W = M.resample_weights(table.n_prompts, n_boot, seed)
    pc, pq = C @ W.T / W.sum(axis=1), Q @ W.T / W.sum(axis=1)  # (K, B)
    nm = W @ avail
    with np.errstate(invalid="ignore", divide="ignore"):
        sc, sq = (W @ cz) / nm, (W @ qz) / nm  # (B, M)
    if strong is not None:
        js = table.model_index(strong)
        jw = 1 - js
        S = np.stack([p.calls[:, js].astype(float) for p in points]) @ W.T / W.sum(axis=1)

    def stat(b: int) -> dict[str, float | None]:
        live = nm[b] > 0
        hull = majorant(np.column_stack([sc[b, live], sq[b, live]]))
        curve = majorant(np.column_stack([pc[:, b], pq[:, b]]))
        orc = oracle.resampled(W[b])
        bs = type(best)(best.model, int(nm[b, jb]), float(sq[b, jb]), float(sc[b, jb]))
        out = _headline(curve, hull, orc, bs, float(sc[b, live].min()), float(sc[b, live].max()))
        if strong is not None:
            share = M.share_curve(S[:, b], pq[:, b], sq[b, jw], sq[b, js])
            out.update(
                apgr=M.apgr(share, sq[b, jw], sq[b, js]),
                cpt50=M.cpt(share, sq[b, jw], sq[b, js], 0.5),
                cpt80=M.cpt(share, sq[b, jw], sq[b, js], 0.8),
            )
        return out

    return M.bootstrap_ci(stat, np.arange(n_boot))
