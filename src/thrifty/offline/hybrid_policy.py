"""Offline policy ``hybrid``: a router chooses where the cascade starts; both are fitted together.

``fit(train, knobs)`` (training prompts only)

1. Candidates and answer scorer exactly as the ``cascade`` policy: :func:`optimise.candidate_models`,
   :func:`fit_answer_scorer` → calibrated *out-of-fold* scores ``S`` (query-only when the table has no
   answer text).
2. A query router over the candidates (:class:`RouterOffline`, variant by option) → *out-of-fold*
   predicted qualities ``R``.
3. Joint optimisation over (router λ, cascade). For each λ of a grid (plus λ = ∞, the plain
   cascade) the router's pick ``r(p) = argmax_m R[p,m] − λ c̄[m]`` fixes, per prompt, which models are
   skipped: those cheaper than ``r(p)``. Skipping is what the cascade optimiser already models for a
   missing (prompt, model) pair (cost 0, escalate), so :func:`optimise.optimise` with cheap-first
   orders returns the exact training Pareto front of cascades *given that start rule* — one front per
   λ. Every point of every front is then re-scored exactly under the live start rule
   (:func:`train_replay`; the masked optimiser cannot see that a prompt whose pick is dearer than
   every tier starts at the last tier), and the Pareto front of those exact (cost, quality) pairs
   holds the (λ, tiers, thresholds) triples; each knob (target mean cost B) takes its best training
   quality at cost ≤ B·(1 − margin).

``replay(table)`` drives :class:`thrifty.policy.hybrid.HybridPolicy` (the live object: router start +
:class:`CascadePolicy`) on every prompt over the recorded answers; every tier called is paid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from thrifty.data.table import RoutingTable
from thrifty.errors import ConfigError
from thrifty.offline.api import OperatingPoint
from thrifty.offline.batch_replay import cascade_batch
from thrifty.offline.cascade_policy import CascadeOffline
from thrifty.offline.optimise import CascadeSpec, optimise, pareto_front
from thrifty.offline.router_policy import RouterOffline
from thrifty.offline.routers import FittedPredictor, lambda_grid, route
from thrifty.policy.cascade import CascadePolicy
from thrifty.policy.hybrid import HybridPolicy, start_tiers
from thrifty.scoring.answer_scorer import table_inputs
from thrifty.scoring.embedders import embedder_spec, resolve_embedder
from thrifty.scoring.heads import single_threaded

__all__ = ["HybridOffline", "FittedHybrid", "skip_mask", "train_replay", "train_replay_many"]


def _pick_cost(pred: np.ndarray, exp_cost: np.ndarray, lam: float) -> np.ndarray | None:
    """(P,) expected cost of the router's pick per prompt, less a hair (a model as dear is not
    skipped); None for λ = ∞ (the plain cascade: nothing is skipped)."""
    if math.isinf(lam):
        return None
    return exp_cost[route(pred, exp_cost, lam)] * (1 - 1e-9)


def skip_mask(pred: np.ndarray, exp_cost: np.ndarray, lam: float, need: np.ndarray | None = None) -> np.ndarray:
    """(P, K) bool: model k is skipped on prompt p because it is cheaper than the router's pick
    (``need``: :func:`_pick_cost` of ``pred`` at ``lam`` when already computed)."""
    need = _pick_cost(pred, exp_cost, lam) if need is None else need
    if need is None:
        return np.zeros(pred.shape, dtype=bool)
    return exp_cost[None, :] < need[:, None]


def train_replay(
    S: np.ndarray,
    Q: np.ndarray,
    C: np.ndarray,
    R: np.ndarray,
    exp_cost: np.ndarray,
    lam: float,
    spec: CascadeSpec,
    need: np.ndarray | None = None,
) -> tuple[float, float]:
    """Exact training (mean cost, mean quality) of the live hybrid rule for (λ, cascade), vectorised:
    start tier from :func:`thrifty.policy.hybrid.start_tier` (the last tier when the router's pick is
    dearer than every tier), then the cascade from there; a missing pair is skipped at cost 0.
    ``need``: :func:`_pick_cost` of ``R`` at ``lam`` when already computed (one route per λ)."""
    P, tiers = S.shape[0], list(spec.tiers)
    L = len(tiers)
    need = _pick_cost(R, exp_cost, lam) if need is None else need
    start = _start(exp_cost, tiers, need, P)
    cost, qual = np.zeros(P), np.zeros(P)
    open_ = np.ones(P, dtype=bool)
    for k, m in enumerate(tiers):
        act = open_ & (start <= k)
        cost[act] += np.nan_to_num(C[act, m])
        if k == L - 1:
            qual[act] = np.nan_to_num(Q[act, m])
            break
        acc = act & (np.nan_to_num(S[:, m], nan=-np.inf) >= spec.thresholds[k])
        qual[acc] = Q[acc, m]
        open_ &= ~acc
    return float(cost.mean()), float(qual.mean())


def _start(exp_cost: np.ndarray, tiers: Sequence[int], need: np.ndarray | None, P: int) -> np.ndarray:
    """(P,) start tier of the live rule (:func:`thrifty.policy.hybrid.start_tier`) for one cascade."""
    L = len(tiers)
    if need is None or L == 1:
        return np.zeros(P, dtype=int)
    ge = exp_cost[list(tiers)][None, :] >= need[:, None]  # (P, L)
    return np.where(ge.any(axis=1), np.argmax(ge, axis=1), L - 1)


def train_replay_many(
    S: np.ndarray,
    Q: np.ndarray,
    C: np.ndarray,
    R: np.ndarray,
    exp_cost: np.ndarray,
    lam: float,
    specs: Sequence[CascadeSpec],
    need: np.ndarray | None = None,
    block: int = 64,
) -> np.ndarray:
    """(len(specs), 2) :func:`train_replay` (mean cost, mean quality) of many cascades at one λ: the
    cascades sharing their tiers run together, ``block`` at a time, as rows of (block, P) arrays —
    the same additions and the same row means, so the very same numbers, without a Python pass per
    cascade."""
    P = S.shape[0]
    need = _pick_cost(R, exp_cost, lam) if need is None else need
    S0, Q0, C0 = np.nan_to_num(S, nan=-np.inf), np.nan_to_num(Q), np.nan_to_num(C)
    out = np.empty((len(specs), 2))
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, sp in enumerate(specs):
        groups.setdefault(tuple(sp.tiers), []).append(i)
    for tiers, ids in groups.items():
        start = _start(exp_cost, tiers, need, P)
        L = len(tiers)
        for b in range(0, len(ids), block):
            rows = ids[b : b + block]
            th = np.array([specs[i].thresholds for i in rows], dtype=float).reshape(len(rows), L - 1)
            cost, qual = np.zeros((len(rows), P)), np.zeros((len(rows), P))
            open_ = np.ones((len(rows), P), dtype=bool)
            for k, m in enumerate(tiers):
                act = open_ & (start <= k)[None, :]
                np.add(cost, C0[None, :, m], out=cost, where=act)
                if k == L - 1:
                    np.copyto(qual, Q0[None, :, m], where=act)
                    break
                acc = act & (S0[None, :, m] >= th[:, k : k + 1])
                np.copyto(qual, Q[None, :, m], where=acc)
                open_ &= ~acc
            out[rows, 0] = cost.mean(axis=1)
            out[rows, 1] = qual.mean(axis=1)
    return out


@dataclass(eq=False)
class FittedHybrid:
    models: tuple[str, ...]  # candidate models: scorer columns and router outputs
    scorer: Any
    predictor: FittedPredictor
    picks: dict[float, tuple[float, CascadeSpec]]  # knob -> (λ, cascade)
    inputs_kw: dict[str, Any]
    embedder: Any = None
    info: dict[str, Any] = field(default_factory=dict)
    train: dict[float, tuple[float, float]] = field(default_factory=dict)  # knob -> exact training (mean cost, mean quality)
    embedder_spec: str = "minilm"

    def expected_cost(self) -> dict[str, float]:
        return {m: float(c) for m, c in zip(self.models, self.predictor.exp_cost)}

    def policy(self, knob: float, scorer: Any = None) -> HybridPolicy:
        """The live hybrid for the knob closest to ``knob`` (scorer: the fitted answer scorer)."""
        key = min(self.picks, key=lambda k: abs(k - knob))
        lam, spec = self.picks[key]
        tiers = tuple(self.models[t] for t in spec.tiers)
        sc = scorer if scorer is not None else self.scorer
        cascade = CascadePolicy(tiers, spec.thresholds, sc if len(tiers) > 1 else None)
        return HybridPolicy(cascade, self.predictor, self.models, self.expected_cost(), lam)

    def replay(self, table: RoutingTable) -> list[OperatingPoint]:

        with single_threaded():
            return self._replay(table)

    def _replay(self, table: RoutingTable) -> list[OperatingPoint]:

        S = self.scorer.score_table(table_inputs(table, self.models, embedder=self.embedder, **self.inputs_kw))
        R = self.predictor.predict_texts(list(table.prompts))
        self.heldout_pred = (S, self.models)  # the answer scores (the router's R is a second signal)
        out, done = [], {}
        for knob, (lam, spec) in self.picks.items():
            key = (lam, spec.tiers, spec.thresholds)
            if key not in done:
                # the batch form of driving HybridPolicy.plan per prompt (held equal by the tests)
                pol = self.policy(knob, scorer=None)
                start = start_tiers(R, pol.router_cost, pol.lam, pol.tier_cost)
                r = cascade_batch(table, S, self.models, pol.tiers, spec.thresholds, start)
                params = {
                    "lam": lam,
                    "tiers": list(pol.tiers),
                    "thresholds": list(spec.thresholds),
                    "share_skipping_tier0": float(np.mean(r.start > 0)),
                }
                done[key] = (r, params)
            r, params = done[key]
            out.append(
                OperatingPoint(
                    float(knob),
                    r.cost,
                    r.quality,
                    r.calls,
                    r.chosen,
                    target_budget=float(knob),
                    label=f"B=${knob:.3g}",
                    params=dict(params),
                )
            )
        return out


class HybridOffline:
    """``hybrid`` (options via ``--opt k=v``): ``router`` (knn | mf | linear | auto), ``n_lams`` (router
    λ grid size), ``grid`` (threshold grid size), ``smooth``, ``margin`` (a knob B takes the best point
    with training cost ≤ B·(1 − margin), default 0.1: held-out cost runs above training cost where
    escalations to a dear tier are rare and noisy); every other option is the ``cascade``
    policy's (``max_tiers``, ``max_candidates``, ``embed``, ``inputs``, ``heads``, ``shared``, ``knn`` …)
    and configures the answer scorer exactly as that policy does."""

    name = "hybrid"

    def __init__(
        self,
        router: str | None = None,
        n_lams: int | str = 8,
        grid: int | str = 16,
        smooth: int | str = 1,
        margin: float | str = 0.1,
        seed: int | str = 0,
        embedder: Any = None,
        variant: str | None = None,
        **cascade_opts: Any,
    ) -> None:

        self.router = router or variant
        self.grid, self.smooth, self.n_lams, self.seed = int(grid), int(smooth), int(n_lams), int(seed)
        self._embedder = embedder
        self.embedder_spec = embedder_spec(embedder)
        self.margin = float(margin)
        self.cascade = CascadeOffline(seed=self.seed, **cascade_opts)  # validates and normalises the options
        # the hybrid fits the feature scorer and returns the last tier's answer: say so rather than ignore
        if self.cascade.scorer != "features" or self.cascade.selects != ("last",):
            raise ConfigError(
                "the hybrid supports scorer=features and select=last only",
                key="--opt",
                fix="drop scorer=/select= for hybrid, or use --policy cascade for those options",
            )
        if self.cascade.agreement or self.cascade.start != "any":  # the router may start past the first tier
            raise ConfigError(
                "the hybrid's router chooses the first tier, so agreement=/start= do not apply",
                key="agreement",
                fix="use --policy cascade for agreement=true or start=cheapest",
            )

    def fit(self, train: RoutingTable, knobs: Sequence[float] | np.ndarray) -> FittedHybrid:

        with single_threaded():
            return self._fit(train, knobs)

    def _fit(self, train: RoutingTable, knobs: Sequence[float] | np.ndarray) -> FittedHybrid:

        if isinstance(self._embedder, str):  # a name (static, module:Factory …): one object for scorer and router
            self._embedder = resolve_embedder(self._embedder)
        c = self.cascade
        _, models, kw = c.candidates(train)
        scorer, S = c.fit_feature_scorer(train, models, kw, self._embedder)
        if self._embedder is not None:
            scorer._embedder = self._embedder
        sub = train.select_models(models)
        fp = RouterOffline(variant=self.router, seed=self.seed, embedder=self._embedder).fit_predictor(sub)
        Q, C = sub.quality, sub.cost
        lams = [math.inf, *lambda_grid(fp.exp_cost, self.n_lams).tolist()]
        needs = {lam: _pick_cost(fp.oof_pred, fp.exp_cost, lam) for lam in lams}  # one route per λ
        specs: list[tuple[float, CascadeSpec]] = []
        for lam in lams:
            skip = skip_mask(fp.oof_pred, fp.exp_cost, lam, needs[lam])
            Sm, Qm, Cm = (np.where(skip, np.nan, X) for X in (S, Q, C))
            front = optimise(Sm, Qm, Cm, max_tiers=min(c.max_tiers, len(models)), grid=self.grid, smooth=self.smooth, ordered="cheap-first")
            specs += [(lam, p) for p in front.points]
        # re-score every candidate exactly under the live start rule, then take the Pareto front
        exact = np.empty((len(specs), 2))
        for lam in lams:  # one batch of cascades per λ
            ids = [i for i, (la, _) in enumerate(specs) if la == lam]
            if ids:
                exact[ids] = train_replay_many(S, Q, C, fp.oof_pred, fp.exp_cost, lam, [specs[i][1] for i in ids], needs[lam])
        keep = pareto_front(exact[:, 0], exact[:, 1])
        front_pts = [(specs[i][0], specs[i][1], float(exact[i, 0]), float(exact[i, 1])) for i in keep]
        picks: dict[float, tuple[float, CascadeSpec]] = {}
        train_points: dict[float, tuple[float, float]] = {}
        for b in knobs:
            ok = [p for p in front_pts if p[2] <= b * (1 - self.margin)]
            lam, spec, tc, tq = ok[-1] if ok else front_pts[0]
            picks[float(b)] = (lam, spec)
            train_points[float(b)] = (tc, tq)
        info = {
            "candidates": list(models),
            "router": fp.variant,
            "router_params": fp.params,
            "front_size": len(front_pts),
            "lams_on_front": sorted({p[0] for p in front_pts}),
        }
        return FittedHybrid(models, scorer, fp, picks, kw, self._embedder, info, train_points, self.embedder_spec)
