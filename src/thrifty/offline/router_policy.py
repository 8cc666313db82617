"""Offline policy ``router`` (and ``router:knn|mf|linear|gbm|ensemble|auto``): fit a query-only quality predictor,
calibrate λ per operating point on the training prompts, replay the live :class:`RouterPolicy`.

Fitting (training folds only)
    1. Embed the training prompts (cached MiniLM) and compute the cheap query features.
    2. :func:`~thrifty.offline.routers.fit_predictor` picks the head's hyperparameters by inner K-fold
       CV and returns the chosen setting's *out-of-fold* predictions on the training prompts.
    3. Calibration on those out-of-fold predictions (in-sample predictions would be over-confident):
       - ``calibrate='budget'`` (default): for each knob B (target mean cost, USD/query) the λ of a fine
         grid with the highest training quality among those whose training mean realised cost ≤ B
         (the cheapest-cost λ when none fits);
       - ``calibrate='share'`` (two-model mode, RouteLLM's calibration): for each knob s (share of
         calls to the dearer model) the threshold τ = the (1 − s) quantile of the training scores
         ``q̂_strong − q̂_weak``; the router calls strong iff its score ≥ τ, i.e. λ = τ / (c_strong − c_weak)
         (λ may be negative: "prefer the dearer model even when predicted a little worse");
       - ``calibrate='target'``: the live target rule — call the cheapest model whose predicted quality
         clears a target τ (the best predicted one if none does). For each knob B the τ of a grid
         (quantiles of the predictions) with the highest training quality among those whose training
         mean cost ≤ B, as for ``budget``.

Replay drives :class:`thrifty.policy.router.RouterPolicy.plan` — the live object — over the recorded
outcomes of the table: a (prompt, model) pair without an outcome raises ``ProviderError`` in the fake
call, so the policy falls back to its next preference exactly as it would live.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Sequence

import numpy as np

from thrifty.data.table import RoutingTable
from thrifty.errors import ConfigError
from thrifty.offline.api import OperatingPoint, recorded_completion
from thrifty.offline.label_shrink import SHRINK_MODES, shrink_table
from thrifty.offline.routers import VARIANTS, FittedPredictor, QueryEncoder, fit_predictor, lambda_grid, route
from thrifty.policy.drive import drive
from thrifty.policy.router import RouterPolicy, preference_orders
from thrifty.scoring.embedders import LazyEmbedder, embedder_spec, resolve_embedder
from thrifty.types import ChatRequest

__all__ = [
    "RouterOffline",
    "FittedRouter",
    "replay_router",
    "calibrate_budget",
    "calibrate_share",
    "calibrate_target",
    "replay_router_live",
    "target_choice",
    "DEFAULT_VARIANT",
    "resolve_embedder",
    "embedder_spec",
    "LazyEmbedder",
]  # the embedder names live in scoring.embedders

DEFAULT_VARIANT = "mf"


def _best_under_budget(
    knob_values: np.ndarray, choose: Callable[[float], np.ndarray], quality: np.ndarray, cost: np.ndarray, budgets: Sequence[float]
) -> list[float]:
    """Per budget, the knob value whose training choices (``choose(v)``: a column per row) have the
    highest mean quality among those with training mean cost ≤ budget (the cheapest one when none
    fits; ties: the smaller knob value)."""
    rows = np.arange(len(quality))
    mc, mq = np.empty(len(knob_values)), np.empty(len(knob_values))
    for i, v in enumerate(knob_values):
        ch = choose(v)
        mc[i], mq[i] = cost[rows, ch].mean(), quality[rows, ch].mean()
    span = float(np.max(np.abs(knob_values))) or 1.0
    out = []
    for b in budgets:
        ok = np.flatnonzero(mc <= b)
        if len(ok) == 0:
            out.append(float(knob_values[np.argmin(mc)]))
        else:
            out.append(float(knob_values[ok[np.argmax(mq[ok] - 1e-9 * knob_values[ok] / span)]]))
    return out


def calibrate_budget(
    pred: np.ndarray, quality: np.ndarray, cost: np.ndarray, exp_cost: np.ndarray, budgets: Sequence[float], n: int = 160
) -> list[float]:
    """λ per budget: best training quality among λ whose training mean cost ≤ budget (see module doc)."""
    avail = ~np.isnan(quality)
    return _best_under_budget(lambda_grid(exp_cost, n), lambda lam: route(pred, exp_cost, lam, avail), quality, cost, budgets)


def target_choice(pred: np.ndarray, exp_cost: np.ndarray, target: float, avail: np.ndarray | None = None) -> np.ndarray:
    """Chosen column per row under the target rule of :func:`thrifty.policy.router.preference_order`:
    the cheapest (by expected cost) available model with ``pred ≥ target``, else the best predicted."""
    P = pred if avail is None else np.where(avail, pred, -np.inf)
    order = np.argsort(exp_cost, kind="stable")
    clear = P[:, order] >= target
    return np.where(clear.any(axis=1), order[np.argmax(clear, axis=1)], np.argmax(P, axis=1))


def calibrate_target(
    pred: np.ndarray, quality: np.ndarray, cost: np.ndarray, exp_cost: np.ndarray, budgets: Sequence[float], n: int = 160
) -> list[float]:
    """Quality target τ per budget for the target rule (see module doc); τ from the predictions' quantiles."""
    avail = ~np.isnan(quality)
    taus = np.unique(np.concatenate([np.quantile(pred[avail], np.linspace(0, 1, n)), [float(pred.max()) + 1.0]]))
    return _best_under_budget(taus, lambda tau: target_choice(pred, exp_cost, tau, avail), quality, cost, budgets)


def calibrate_share(pred: np.ndarray, exp_cost: np.ndarray, shares: Sequence[float]) -> list[float]:
    """λ per target share of calls to the dearer of two models (RouteLLM's threshold calibration)."""
    if pred.shape[1] != 2:
        raise ConfigError(
            "share calibration routes between two models", key="calibrate", fix="give --strong and --weak, or use calibrate=budget"
        )
    dear = int(np.argmax(exp_cost))
    dc = float(exp_cost[dear] - exp_cost[1 - dear])
    score = pred[:, dear] - pred[:, 1 - dear]
    lams = []
    for s in shares:
        if s <= 0:
            tau = float(score.max()) + 1.0
        elif s >= 1:
            tau = float(score.min()) - 1.0
        else:
            tau = float(np.quantile(score, 1.0 - s))
        lams.append(tau / dc if dc > 0 else tau)
    return lams


def replay_router(table: RoutingTable, pred: np.ndarray, policy: RouterPolicy, knob: float, label: str, **params: Any) -> OperatingPoint:
    """Replay ``policy`` on every prompt of ``table`` (predictions precomputed) → one point.

    The batch form of driving ``policy.plan`` over the recorded outcomes (:func:`replay_router_live`,
    which the tests hold it equal to): each prompt's tiers in :func:`preference_orders` order, the
    first with a recorded outcome answers (a missing pair is a failed call, as live), up to
    ``policy.max_attempts`` tries."""
    n = table.n_prompts
    order = preference_orders(pred, policy.expected_cost, policy.lam, policy.target)[:, : policy.max_attempts]
    ok = np.take_along_axis(table.available, order, axis=1)
    if not ok.any(axis=1).all():
        i = int(np.flatnonzero(~ok.any(axis=1))[0])
        raise ValueError(f"prompt {table.prompt_ids[i]!r} has no outcome for any model")
    first = np.argmax(ok, axis=1)
    rows = np.arange(n)
    chosen = order[rows, first]
    calls = np.zeros((n, table.n_models), dtype=bool)
    calls[rows, chosen] = True
    return OperatingPoint(
        knob=float(knob),
        cost=table.cost[rows, chosen].astype(float),
        quality=table.quality[rows, chosen].astype(float),
        calls=calls,
        chosen=chosen,
        label=label,
        params={**params, "fallbacks": int(np.count_nonzero(first))},
    )


def replay_router_live(
    table: RoutingTable, pred: np.ndarray, policy: RouterPolicy, knob: float, label: str, **params: Any
) -> OperatingPoint:
    """Drive ``policy.plan`` (the live object) prompt by prompt: the reference :func:`replay_router` must equal."""
    n = table.n_prompts
    cost, quality = np.zeros(n), np.zeros(n)
    calls = np.zeros((n, table.n_models), dtype=bool)
    chosen = np.full(n, -1)
    fallbacks = 0
    for i in range(n):
        req = ChatRequest.from_prompt(table.prompts[i] or "")
        dec = drive(policy.plan(req, predicted=pred[i]), partial(recorded_completion, table, i))
        if dec.completion is None:
            raise ValueError(f"prompt {table.prompt_ids[i]!r} has no outcome for any model")
        k = dec.tier
        fallbacks += len(dec.steps) > 1
        chosen[i], calls[i, k] = k, True
        cost[i], quality[i] = dec.cost_usd, table.quality[i, k]
    return OperatingPoint(
        knob=float(knob), cost=cost, quality=quality, calls=calls, chosen=chosen, label=label, params={**params, "fallbacks": fallbacks}
    )


@dataclass(eq=False)
class FittedRouter:
    """A fitted router: one λ per knob; :meth:`policy` builds the live RouterPolicy for a knob."""

    predictor: FittedPredictor
    models: tuple[str, ...]
    knobs: tuple[float, ...]
    lambdas: tuple[float, ...]
    calibrate: str
    targets: tuple[float | None, ...]
    quality_targets: tuple[float | None, ...] | None = None  # calibrate='target': τ per knob (λ unused)

    def _target(self, i: int) -> float | None:
        return None if self.quality_targets is None else self.quality_targets[i]

    def policy(self, knob: float | None = None, index: int | None = None) -> RouterPolicy:
        i = index if index is not None else int(np.argmin(np.abs(np.asarray(self.knobs) - (knob or 0.0))))
        return RouterPolicy(self.models, self.predictor, list(self.predictor.exp_cost), lam=self.lambdas[i], target=self._target(i))

    def replay(self, table: RoutingTable) -> list[OperatingPoint]:
        if tuple(table.models) != self.models:
            raise ConfigError("the table's models differ from the fitted pool", key="--models", fix=f"use the pool {list(self.models)}")
        pred = self.predictor.predict_texts(list(table.prompts))
        self.heldout_pred = (pred, self.models)  # for the harness's out-of-fold prediction–label correlation
        out = []
        done: dict[tuple[float, float | None], OperatingPoint] = {}  # many knobs share one λ: replay it once
        for i, (knob, lam) in enumerate(zip(self.knobs, self.lambdas)):
            tau = self._target(i)
            label = f"share={knob:.2f}" if self.calibrate == "share" else f"B=${knob:.3g}"
            extra = {} if tau is None else {"target": tau}
            if (lam, tau) not in done:
                pol = RouterPolicy(self.models, None, list(self.predictor.exp_cost), lam=lam, target=tau)
                done[(lam, tau)] = replay_router(table, pred, pol, knob, label, lam=lam, variant=self.predictor.variant, **extra)
            base = done[(lam, tau)]
            out.append(
                OperatingPoint(
                    float(knob),
                    base.cost,
                    base.quality,
                    base.calls,
                    base.chosen,
                    target_budget=self.targets[i],
                    label=label,
                    params=dict(base.params),
                )
            )
        return out


class RouterOffline:
    """Pre-generation router over the pool; see the module docstring. Options (``--opt k=v``):
    ``variant`` (knn | mf | linear | gbm | ensemble | auto), ``calibrate`` (budget | share | target), ``shares`` (grid size for
    share calibration), ``inner_folds``, ``k`` (knn only: fix the neighbour count), ``shrink`` (``none`` | ``mean`` | ``prompt``: fit on
    empirical-Bayes de-noised labels, :mod:`thrifty.offline.label_shrink`), ``label_reliability`` (its noise estimate), ``embedder`` (``minilm`` (default, cached), ``static`` (distilled MiniLM lookup table,
    ~0.1–0.5 ms) or an object with ``embed(texts)``)."""

    name = "router"

    def __init__(
        self,
        variant: str | None = None,
        calibrate: str = "budget",
        shares: int | str = 40,
        inner_folds: int | str = 3,
        seed: int | str = 0,
        embedder: Any = None,
        k: int | str | None = None,
        shrink: str = "none",
        label_reliability: float | str | None = None,
    ) -> None:
        variant = variant or DEFAULT_VARIANT
        if shrink not in SHRINK_MODES:
            raise ConfigError(f"unknown shrinkage {shrink!r}", key="shrink", fix="use shrink=none, mean or prompt")
        self.shrink = shrink
        self.label_reliability = None if label_reliability in (None, "", "none") else float(label_reliability)
        if variant not in (*VARIANTS, "auto"):
            raise ConfigError(f"unknown router variant {variant!r}", key="--policy", fix=f"use router:{'|'.join((*VARIANTS, 'auto'))}")
        if calibrate not in ("budget", "share", "target"):
            raise ConfigError(f"unknown calibration {calibrate!r}", key="calibrate", fix="use calibrate=budget, share or target")
        self.variant, self.calibrate = variant, calibrate
        self.name = (
            ("router" if variant == DEFAULT_VARIANT else f"router:{variant}")
            + (f" ({embedder} emb.)" if isinstance(embedder, str) and embedder != "minilm" else "")
            + (" (target)" if calibrate == "target" else "")
            + (f" (shrink={shrink})" if shrink != "none" else "")
        )
        self.shares = np.linspace(0.0, 1.0, int(shares) + 1)
        self.inner_folds, self.seed = int(inner_folds), int(seed)
        self._embedder = embedder
        self.embedder_spec = embedder_spec(embedder)  # what an artefact records to rebuild the embedder live
        # k=N fixes the kNN head's neighbour count (the plain "kNN-50" peer); τ is still chosen by inner CV
        self.grid = None if k is None or variant != "knn" else [{"k": int(k), "tau": t} for t in (0.03, 0.1)]
        if k is not None and variant == "knn":
            self.name += f" (k={int(k)})"

    def encoder(self) -> QueryEncoder:
        if self._embedder is None or isinstance(self._embedder, str):
            self.embedder_spec = embedder_spec(self._embedder)
            self._embedder = resolve_embedder(self._embedder)
        return QueryEncoder(self._embedder)

    def fit_predictor(self, train: RoutingTable) -> FittedPredictor:
        enc = self.encoder()
        emb, feats = enc.encode(list(train.prompts))
        # shrink=mean|prompt: the head (and its inner CV) sees de-noised labels; λ is still calibrated on raw ones
        quality = train.quality if self.shrink == "none" else shrink_table(train, self.shrink, self.label_reliability)[0].quality
        return fit_predictor(
            emb,
            feats,
            quality,
            train.cost,
            variant=self.variant,
            encoder=enc,
            models=train.models,
            inner_folds=self.inner_folds,
            seed=self.seed,
            grid=self.grid,
        )

    def fit(self, train: RoutingTable, knobs: Sequence[float] | np.ndarray) -> FittedRouter:
        fp = self.fit_predictor(train)
        if self.calibrate == "share":
            ks = tuple(float(s) for s in self.shares)
            lams = calibrate_share(fp.oof_pred, fp.exp_cost, ks)
            targets: tuple[float | None, ...] = (None,) * len(ks)
        elif self.calibrate == "target":
            ks = tuple(float(b) for b in knobs)
            taus = calibrate_target(fp.oof_pred, train.quality, train.cost, fp.exp_cost, ks)
            return FittedRouter(fp, tuple(train.models), ks, (0.0,) * len(ks), self.calibrate, ks, tuple(taus))
        else:
            ks = tuple(float(b) for b in knobs)
            lams = calibrate_budget(fp.oof_pred, train.quality, train.cost, fp.exp_cost, ks)
            targets = ks
        return FittedRouter(fp, tuple(train.models), ks, tuple(lams), self.calibrate, targets)
