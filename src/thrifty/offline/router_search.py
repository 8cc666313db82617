"""Inner-CV hyperparameter search of one router head (shared by :mod:`thrifty.offline.routers` and
the ensemble, :mod:`thrifty.offline.router_ensemble`)."""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from thrifty.offline.router_irt import IRT_GRID, IRTFit
from thrifty.scoring.ridge_moments import Moments, fit_from_moments, moments, predict_rows
from thrifty.scoring.router_gbm import GBM_GRID, GBMHead
from thrifty.scoring.router_heads import KNN_CHUNK, KNNHead, LinearHead, MFHead, fill_missing

__all__ = ["SINGLE_HEADS", "grid_for", "make_head", "inner_folds", "search_head"]

SINGLE_HEADS = ("knn", "mf", "linear", "gbm")  # what ``auto`` and ``ensemble`` choose among


_GRIDS: dict[str, list[dict[str, Any]]] = {
    "knn": [{"k": k, "tau": t} for k in (10, 25, 50, 100) for t in (0.03, 0.1)],
    "mf": [{"rank": r, "alpha": a} for r in (2, 4, 8, 16) for a in (3.0, 10.0, 30.0)],
    "linear": [{"alpha": a} for a in (1.0, 3.0, 10.0, 30.0, 100.0)],
}


def grid_for(variant: str) -> list[dict[str, Any]]:
    """The inner-CV hyperparameter grid of a single head."""
    if variant == "gbm":
        return GBM_GRID
    if variant == "irt":
        return IRT_GRID
    return _GRIDS[variant]


def make_head(variant: str, params: dict[str, Any]):
    if variant == "knn":
        return KNNHead(**params)
    if variant == "mf":
        return MFHead(**params)
    if variant == "linear":
        return LinearHead(**params)
    if variant == "gbm":
        return GBMHead(**params)
    if variant == "irt":
        return IRTFit(**params)
    raise ValueError(f"unknown router variant {variant!r}")


def inner_folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(perm[i::k]) for i in range(k)]


def _fold_moments(emb, feats, Q, folds) -> tuple[np.ndarray, list[Moments], Moments, bool]:
    """``Z = [emb, feats]``, each fold's moments (Y = the filled quality), the moments of all rows, and
    whether the folds partition the rows.

    When the folds partition the rows (inner CV does), all rows' moments are the sum of the folds'
    (one Gram pass over the rows in all, not two), and fold k's training moments are the sum of the
    other folds' (no cancellation from total − fold)."""
    Z = np.hstack([emb, feats]).astype(np.float64, copy=False)
    Y = fill_missing(Q)
    per_fold = [moments(Z[test], Y[test]) for test in folds]
    covered = np.zeros(len(Z), dtype=np.int64)
    for test in folds:
        covered[test] += 1
    partition = bool(per_fold) and bool((covered == 1).all())
    total = _sum(per_fold) if partition else moments(Z, Y)
    return Z, per_fold, total, partition


def _sum(parts: list[Moments]) -> Moments:
    out = parts[0]
    for m in parts[1:]:
        out = out + m
    return out


def _oof(variant: str, grid: list[dict[str, Any]], emb, feats, Q, folds, cache: dict[str, Any] | None = None) -> list[np.ndarray]:
    """Out-of-fold predictions (n, M) for every setting in ``grid``; linear heads leave all rows'
    moments in ``cache["moments"]`` (the final refit on all rows reuses them)."""
    n, M = Q.shape
    outs = [np.zeros((n, M)) for _ in grid]
    if variant not in ("knn", "gbm", "irt"):
        Z, per_fold, total, partition = _fold_moments(emb, feats, Q, folds)
        if cache is not None:
            cache["moments"] = total
    for k, test in enumerate(folds):
        train = np.setdiff1d(np.arange(n), test) if variant in ("knn", "gbm", "irt") else test
        if variant == "knn":
            heads = [KNNHead(**params).fit(emb[train], feats[train], Q[train]) for params in grid]
            e_train = emb[train].astype(np.float32).T
            for a in range(0, len(test), KNN_CHUNK):  # similarities a block of rows at a time: memory bounded
                rows = test[a : a + KNN_CHUNK]
                sims = emb[rows].astype(np.float32) @ e_train
                for g, head in enumerate(heads):
                    outs[g][rows] = head.predict_from_sims(sims)
        elif variant in ("gbm", "irt"):
            fitted = make_head(variant, {}).fit_path(emb[train], feats[train], Q[train], grid)
            for g, head in enumerate(fitted):
                outs[g][test] = head.predict(emb[test], feats[test])
        else:  # linear heads: fitted from moments (one pass over the rows, not one per fold and setting)
            mf_heads = [cast(MFHead, make_head(variant, p)) for p in grid]
            Zt = Z[test]
            others = [m for j, m in enumerate(per_fold) if j != k]
            train_mom = _sum(others) if partition and others else total - per_fold[k]
            states = fit_from_moments(train_mom, emb.shape[1], [(h.rank, h.alpha) for h in mf_heads], mf_heads[0].feat_weight)
            for g, st in enumerate(states):
                outs[g][test] = predict_rows(Zt, st)
    return [np.clip(o, 0.0, 1.0) for o in outs]


def search_head(
    variant: str, grid: list[dict[str, Any]], emb, feats, Q, folds, score, cache: dict[str, Any] | None = None
) -> tuple[float, dict[str, Any], np.ndarray, list[dict[str, Any]]]:
    """Inner-CV search of one head: (best score, its params, its out-of-fold predictions, every row).
    ``cache`` (optional) receives what a refit on all rows can reuse (see :func:`_oof`)."""
    rows: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any], np.ndarray] | None = None
    for params, oof in zip(grid, _oof(variant, grid, emb, feats, Q, folds, cache)):
        s = float(score(oof))
        rows.append({"variant": variant, **params, "score": s})
        if best is None or s > best[0] + 1e-12:
            best = (s, params, oof)
    assert best is not None, "empty hyperparameter grid"
    return (*best, rows)
