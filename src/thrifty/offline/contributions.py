"""Each strategy's contribution, measured in one joint held-out replay (``thrifty eval --contributions``).

FrugalGPT's strategies become parts of one routing table and one replay:

- **cascade** — the routing policy (default ``cascade``) fitted on the training folds, replayed on
  the held-out fold, over the *base* pool of models;
- **cache** — the completion cache in front of the policy, replayed over the whole held-out stream
  in table row order (:mod:`thrifty.offline.cache_replay`): a hit costs 0 and serves the answer the
  policy gave an earlier request, graded for the new one;
- **prompt adaptation** — a model run with an adapted prompt (selected few-shot examples, …) is one
  more column of the table (e.g. ``gemma3-270m@select-40``) with its own recorded cost and quality;
  the policy may use it like any other model;
- **student** — a distilled student is one more column too.

:func:`contributions` evaluates the cumulative stages (:func:`cumulative_stages`: cascade alone →
+ cache → + adapted columns in the pool → + student columns), each with the harness
(:func:`thrifty.offline.evaluate.evaluate`: fit on training folds, pooled held-out points, curve).
Every stage is then compared with one fixed **reference**: the best single model of the base pool
(highest mean quality; ties: the cheaper), whose mean cost and quality are

- ``quality_at_ref_cost`` — the stage's held-out curve at the reference's mean cost;
- ``savings_at_ref_quality`` — 1 − (cheapest held-out cost reaching the reference's quality) / its cost
  (a lower bound, ``savings_is_lower_bound``, when even the stage's cheapest point beats the reference);
- ``best`` — the stage's held-out point of highest mean quality (cheapest among ties), the last
  vertex of its curve.

95% intervals are paired percentile bootstraps over prompts (the same resamples for every stage,
so ``delta_quality_at_ref_cost`` — the change from the previous stage — has its own interval).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from thrifty.data.table import ModelStats, RoutingTable
from thrifty.errors import ConfigError
from thrifty.offline import metrics as M
from thrifty.offline.cache_replay import CacheHits, cached_points
from thrifty.offline.curves import majorant
from thrifty.offline.evaluate import evaluate

__all__ = ["Stage", "StageResult", "ContributionReport", "cumulative_stages", "contributions"]


@dataclass(frozen=True)
class Stage:
    """One row: the policy over ``pool``, with or without the cache in front."""

    name: str
    pool: tuple[str, ...]
    cache: bool = False


@dataclass(eq=False)
class StageResult:
    stage: Stage
    report: Any  # EvalReport
    quality_at_ref_cost: float | None
    savings_at_ref_quality: float | None
    best: tuple[float, float]  # (mean cost, mean quality)
    hit_rate: float
    savings_is_bound: bool = False  # the curve's cheapest point already beats the reference: savings is a lower bound
    ci: dict[str, list[float] | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        r = self.report
        return {
            "stage": self.stage.name,
            "pool": list(self.stage.pool),
            "cache": self.stage.cache,
            "quality_at_ref_cost": self.quality_at_ref_cost,
            "savings_at_ref_quality": self.savings_at_ref_quality,
            "savings_is_lower_bound": self.savings_is_bound,
            "best": {"cost": self.best[0], "quality": self.best[1]},
            "cache_hit_rate": self.hit_rate,
            "ci95": self.ci,
            "points": [
                {"cost": p.mean_cost, "quality": p.mean_quality, "knob": p.knob if np.isfinite(p.knob) else None, "label": p.label}
                for p in r.points
            ],
            "curve": r.curve.to_json(),
            "warnings": r.warnings,
            "timing": r.timing,
        }


@dataclass(eq=False)
class ContributionReport:
    """Every stage of :func:`contributions` against the base pool's best single model."""

    policy: str
    table: RoutingTable
    reference: ModelStats
    stages: list[StageResult]
    cache: dict[str, Any] | None
    n_folds: int
    n_boot: int

    def to_json(self) -> dict[str, Any]:
        t = self.table
        return {
            "policy": self.policy,
            "data": {"source": t.source, "hash": t.data_hash, "n_prompts": t.n_prompts, "n_folds": self.n_folds},
            "composition": "joint held-out replay: every stage fitted on the training folds and replayed on the held-out folds of one table",
            "reference": {"model": self.reference.model, "quality": self.reference.quality, "cost": self.reference.cost},
            "singles": [{"model": s.model, "n": s.n, "quality": _finite(s.quality), "cost": _finite(s.cost)} for s in t.model_stats()],
            "cache": self.cache,
            "bootstrap": self.n_boot,
            "stages": [s.to_json() for s in self.stages],
        }


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def cumulative_stages(base: Sequence[str], adapted: Sequence[str] = (), student: Sequence[str] = (), *, cache: bool = True) -> list[Stage]:
    """Cascade alone → + cache → + prompt adaptation → + student; a stage with nothing to add is left out."""
    if not base:
        raise ConfigError("the base pool is empty", key="--models", fix="name the models of the plain cascade")
    pool = tuple(base)
    stages = [Stage("cascade alone", pool, False)]
    if cache:
        stages.append(Stage("+ cache", pool, True))
    if adapted:
        pool = pool + tuple(adapted)
        stages.append(Stage("+ prompt adaptation", pool, cache))
    if student:
        pool = pool + tuple(student)
        stages.append(Stage("+ student", pool, cache))
    names = [m for m in pool]
    dup = sorted({m for m in names if names.count(m) > 1})
    if dup:
        raise ConfigError(
            f"model(s) {', '.join(dup)} listed in more than one group",
            key="--models/--adapted/--student",
            fix="list each model in one group only",
        )
    return stages


def contributions(
    table: RoutingTable,
    stages: Sequence[Stage],
    *,
    policy: str = "cascade",
    options: dict[str, Any] | None = None,
    hits: CacheHits | None = None,
    n_folds: int = 5,
    seed: int = 0,
    n_boot: int = 200,
    progress: bool = False,
) -> ContributionReport:
    """Evaluate each stage held-out on ``table`` and compare it with the first stage's best single model.

    ``hits`` (from :func:`thrifty.offline.cache_replay.grade_hits` on ``table``) is required by
    any stage with ``cache=True``.
    """

    if not stages:
        raise ConfigError("no stages to evaluate", key="--contributions")
    reference = table.select_models(stages[0].pool).best_single()
    results: list[StageResult] = []
    for st in stages:
        if st.cache and hits is None:
            raise ConfigError(
                f"stage {st.name!r} needs the cache replay", key="--cache", fix="give the cache hits, or drop the cache stage"
            )
        sub = table.select_models(st.pool)
        post = cached_points(hits, st.pool) if st.cache and hits is not None else None
        rep = evaluate(sub, policy, n_folds=n_folds, seed=seed, n_boot=0, options=options, progress=progress, post=post)
        rep.policy = f"{policy}: {st.name}"
        results.append(
            StageResult(
                st,
                rep,
                M.quality_at_best_single_cost(rep.curve, reference.cost),
                M.savings_at_parity(rep.curve, reference.quality, reference.cost),
                (_best(rep.points).mean_cost, _best(rep.points).mean_quality),
                hits.hit_rate if st.cache and hits is not None else 0.0,
                bool(rep.curve.y[0] > reference.quality),
            )
        )
    if n_boot > 0:
        _bootstrap(table, results, reference, n_boot, seed)
    cache = hits.summary() if hits is not None and any(s.cache for s in stages) else None
    return ContributionReport(policy, table, reference, results, cache, results[0].report.n_folds, n_boot)


def _best(points: Sequence[Any]) -> Any:
    """The point of highest mean quality, the cheapest among ties."""
    return max(points, key=lambda p: (round(p.mean_quality, 12), -p.mean_cost))


def _bootstrap(table: RoutingTable, results: list[StageResult], ref: ModelStats, n_boot: int, seed: int) -> None:
    """Paired percentile intervals (same prompt resamples for every stage); written into each ``ci``."""
    W = M.resample_weights(table.n_prompts, n_boot, seed)
    j = table.model_index(ref.model)
    ok = ~np.isnan(table.quality[:, j])
    rq = (W[:, ok] @ table.quality[ok, j]) / W[:, ok].sum(axis=1)
    rc = (W[:, ok] @ table.cost[ok, j]) / W[:, ok].sum(axis=1)
    per_stage = []
    for r in results:
        pts = r.report.points
        C = np.stack([p.cost for p in pts]) @ W.T / W.sum(axis=1)  # (K, B)
        Q = np.stack([p.quality for p in pts]) @ W.T / W.sum(axis=1)
        bq = W @ _best(pts).quality / W.sum(axis=1)
        vals = []
        for b in range(n_boot):
            curve = majorant(np.column_stack([C[:, b], Q[:, b]]))
            vals.append(
                {
                    "quality_at_ref_cost": M.quality_at_best_single_cost(curve, float(rc[b])),
                    "savings_at_ref_quality": M.savings_at_parity(curve, float(rq[b]), float(rc[b])),
                    "best_quality": float(bq[b]),
                }
            )
        per_stage.append(vals)
    for k, r in enumerate(results):

        def stat(b: int, k: int = k) -> dict[str, float | None]:
            out = dict(per_stage[k][b])
            if k > 0:
                a, z = per_stage[k][b]["quality_at_ref_cost"], per_stage[k - 1][b]["quality_at_ref_cost"]
                out["delta_quality_at_ref_cost"] = None if a is None or z is None else a - z
            return out

        r.ci = M.bootstrap_ci(stat, range(n_boot))
