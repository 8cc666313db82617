"""Query-only quality predictors for routers: each predicts every pool model's quality from the request.

A predictor maps a query to a vector ``q̂[m]`` (expected quality of model m on it). Inputs are a local
sentence embedding of the query (MiniLM, L2-normalised) and the cheap :mod:`query features
<thrifty.scoring.query_features>`. Three heads, all pure numpy at prediction time:

``knn``     similarity-weighted k nearest training prompts (cosine over embeddings):
            ``q̂[m] = (Σ_i w_i q_i[m] + s·q̄[m]) / (Σ_i w_i + s)``, ``w_i = exp((cos_i − 1)/τ)`` over the
            k neighbours where m has an outcome, shrunk towards the model's mean ``q̄[m]`` by ``s``.
``mf``      matrix factorisation of the prompt × model quality matrix with a learned query projection
            (RouteLLM's ``mf``, local embeddings): ``q̂[m] = b_m + v_mᵀ (A x)``, rank r. Fitted in closed
            form as reduced-rank ridge regression: ridge ``B = (XᵀX + αI)⁻¹XᵀY`` then the rank-r
            projection of the fitted values, ``B_r = B V_r V_rᵀ`` (V_r: top right singular vectors of XB),
            which is the least-squares optimum among rank-r coefficient matrices on the ridge fit.
``linear``  ridge regression per model (the full-rank case of ``mf``).
``gbm``     boosted trees on PCA-reduced embeddings + query features, predicting the top principal
            components of the quality matrix (:mod:`thrifty.scoring.router_gbm`).
``irt``     item-response head: pooled prompt traits (easiness first) read by ridge from the query,
            per-model logistic links (:mod:`thrifty.offline.router_irt`); not among ``auto``'s heads.
``ensemble`` a weighted mean of the members' per-model linearly recalibrated predictions, members
            and weights chosen by the same inner CV (:mod:`thrifty.offline.router_ensemble`).

Hyperparameters (k, τ, rank, α) are chosen by :func:`fit_predictor` with K-fold cross-validation
inside the training table only, scoring each setting by the *routing* it yields: the area under the
out-of-fold cost–quality curve of ``argmax_m q̂[m] − λ·c̄[m]`` over a λ sweep, integrated over
log10(cost) between the cheapest and the dearest single model (the harness's axis). The chosen
setting's out-of-fold predictions are returned too, for honest calibration of λ on training data.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from thrifty.offline.router_ensemble import fit_ensemble
from thrifty.offline.router_search import SINGLE_HEADS, grid_for, make_head, search_head
from thrifty.offline.router_search import inner_folds as fold_rows
from thrifty.scoring.heads import single_threaded
from thrifty.scoring.router_heads import (
    FittedPredictor,
    KNNHead,
    LinearHead,
    MFHead,
    QueryEncoder,
    fill_missing,
    lambda_grid,
    route,
)

__all__ = [
    "VARIANTS",
    "fill_missing",
    "KNNHead",
    "MFHead",
    "LinearHead",
    "QueryEncoder",
    "FittedPredictor",
    "fit_predictor",
    "routing_area",
    "lambda_grid",
    "route",
    "search_head",
    "grid_for",
    "SINGLE_HEADS",
    "KNNHead",
    "MFHead",
    "LinearHead",
]

VARIANTS = ("knn", "mf", "linear", "gbm", "ensemble", "irt")


def routing_area(pred: np.ndarray, quality: np.ndarray, cost: np.ndarray, exp_cost: np.ndarray, lams: np.ndarray | None = None) -> float:
    """Mean realised quality of the λ-swept router, averaged over log10(cost) between the cheapest and
    dearest single model (best quality reachable at ≤ each cost: a monotone step curve)."""
    avail = ~np.isnan(quality)
    lams = lambda_grid(exp_cost) if lams is None else lams
    rows = np.arange(len(pred))
    pts = []
    for lam in lams:
        ch = route(pred, exp_cost, lam, avail)
        pts.append((float(np.mean(cost[rows, ch])), float(np.mean(quality[rows, ch]))))
    single = np.nanmean(cost, axis=0)
    lo, hi = np.log10(np.nanmin(single)), np.log10(np.nanmax(single))
    xs = np.linspace(lo, hi, 200)
    pts.sort()
    pc = np.log10(np.array([p[0] for p in pts]))
    pq = np.maximum.accumulate(np.array([p[1] for p in pts]))
    idx = np.searchsorted(pc, xs, side="right") - 1
    vals = np.where(idx >= 0, pq[np.clip(idx, 0, None)], 0.0)
    return float(vals.mean())


def fit_predictor(
    emb: np.ndarray,
    feats: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    *,
    variant: str = "knn",
    encoder: QueryEncoder | None = None,
    models: Sequence[str] = (),
    inner_folds: int = 3,
    seed: int = 0,
    grid: list[dict[str, Any]] | None = None,
    score: Callable[[np.ndarray], float] | None = None,
) -> FittedPredictor:
    """Choose the head's hyperparameters by inner K-fold CV on this (training) data, refit on all of it.

    ``variant='auto'`` also chooses among :data:`VARIANTS` by the same inner-CV score. ``score`` maps
    out-of-fold predictions to a number to maximise (default: :func:`routing_area`)."""
    exp_cost = np.nanmean(cost, axis=0)
    if score is None:
        lams = lambda_grid(exp_cost, 40)

        def score(p: np.ndarray) -> float:
            return routing_area(p, quality, cost, exp_cost, lams)

    with single_threaded():
        return _fit_predictor(emb, feats, quality, cost, exp_cost, variant, encoder, models, inner_folds, seed, grid, score)


def _fit_predictor(emb, feats, quality, cost, exp_cost, variant, encoder, models, inner_folds, seed, grid, score) -> FittedPredictor:
    folds = fold_rows(len(quality), inner_folds, seed)
    if variant == "ensemble":
        head, params, s, oof, rows = fit_ensemble(emb, feats, quality, folds, score)
        return FittedPredictor(variant, params, head, encoder, tuple(models), exp_cost, s, oof, rows)
    variants = SINGLE_HEADS if variant == "auto" else (variant,)
    search: list[dict[str, Any]] = []
    best: tuple[float, str, dict[str, Any], np.ndarray] | None = None
    cache: dict[str, Any] = {}  # the linear heads' moments of all rows, for the refit below
    for v in variants:
        g = grid if (grid is not None and variant != "auto") else grid_for(v)
        s, params, oof, rows = search_head(v, g, emb, feats, quality, folds, score, cache)
        search += rows
        if best is None or s > best[0] + 1e-12:
            best = (s, v, params, oof)
    assert best is not None
    s, v, params, oof = best
    head = make_head(v, params)
    if isinstance(head, MFHead) and "moments" in cache:  # refit from the search's moments: no Gram pass
        head = head.from_moments(cache["moments"], emb.shape[1], [(head.rank, head.alpha)])[0]
    else:
        head = head.fit(emb, feats, quality)
    return FittedPredictor(v, dict(params), head, encoder, tuple(models), exp_cost, s, oof, search)
