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
            components of the quality matrix (:mod:`thrifty.offline.router_gbm`).
``ensemble`` a weighted mean of the members' per-model linearly recalibrated predictions, members
            and weights chosen by the same inner CV (:mod:`thrifty.offline.router_ensemble`).

Hyperparameters (k, τ, rank, α) are chosen by :func:`fit_predictor` with K-fold cross-validation
inside the training table only, scoring each setting by the *routing* it yields: the area under the
out-of-fold cost–quality curve of ``argmax_m q̂[m] − λ·c̄[m]`` over a λ sweep, integrated over
log10(cost) between the cheapest and the dearest single model (the harness's axis). The chosen
setting's out-of-fold predictions are returned too, for honest calibration of λ on training data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from thrifty.scoring.heads import single_threaded
from thrifty.scoring.query_features import query_feature_matrix

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
]

VARIANTS = ("knn", "mf", "linear", "gbm", "ensemble")
SINGLE_HEADS = ("knn", "mf", "linear", "gbm")  # what ``auto`` and ``ensemble`` choose among


# ---- the decision rule shared by every router (also used by policy.router) -------------------
def route(pred: np.ndarray, exp_cost: np.ndarray, lam: float, avail: np.ndarray | None = None) -> np.ndarray:
    """Chosen column per row: ``argmax_m pred[:, m] − lam·exp_cost[m]`` over available models.

    Ties go to the cheaper model (a tiny cost-proportional tie-breaker)."""
    util = pred - (lam + 1e-12) * exp_cost[None, :]
    if avail is not None:
        util = np.where(avail, util, -np.inf)
    return np.argmax(util, axis=1)


def lambda_grid(exp_cost: np.ndarray, n: int = 60) -> np.ndarray:
    """0 plus log-spaced λ from "cost barely matters" to "only cost matters" for these model costs."""
    c = exp_cost[np.isfinite(exp_cost) & (exp_cost > 0)]
    lo, hi = 1e-3 / c.max(), 10.0 / c.min()
    return np.concatenate([[0.0], np.logspace(np.log10(lo), np.log10(hi), n), [1e6 * hi]])


def routing_area(
    pred: np.ndarray, quality: np.ndarray, cost: np.ndarray, exp_cost: np.ndarray, lams: np.ndarray | None = None
) -> float:
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


# ---- inputs -------------------------------------------------------------------------------------
@dataclass
class QueryEncoder:
    """Text → (embedding, query features). ``embedder`` has ``embed(texts) -> (n, d)`` (normalised)."""

    embedder: Any

    def encode(self, texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
        emb = np.asarray(self.embedder.embed([t or "" for t in texts]), dtype=np.float64)
        return emb, query_feature_matrix(list(texts)).astype(np.float64)


def _design(emb: np.ndarray, feats: np.ndarray, mu: np.ndarray, sd: np.ndarray, feat_weight: float) -> np.ndarray:
    return np.hstack([emb, feat_weight * (feats - mu) / sd])


def fill_missing(Q: np.ndarray) -> np.ndarray:
    """Missing cells → the model's mean (only for least-squares heads; kNN masks them instead)."""
    have = ~np.isnan(Q)
    means = np.where(have, Q, 0.0).sum(axis=0) / np.maximum(have.sum(axis=0), 1)
    return np.where(np.isnan(Q), means[None, :], Q)


# ---- heads --------------------------------------------------------------------------------------
@dataclass
class KNNHead:
    k: int = 50
    tau: float = 0.05
    shrink: float = 1.0
    emb: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    Q: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    mean: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    def fit(self, emb: np.ndarray, feats: np.ndarray, Q: np.ndarray) -> "KNNHead":
        self.emb, self.Q = emb.astype(np.float32), Q
        have = ~np.isnan(Q)
        self.mean = np.where(have, Q, 0.0).sum(axis=0) / np.maximum(have.sum(axis=0), 1)
        return self

    def predict_from_sims(self, sims: np.ndarray) -> np.ndarray:
        k = min(self.k, sims.shape[1])
        nn = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        s = np.take_along_axis(sims, nn, axis=1)
        w = np.exp((s - 1.0) / self.tau)  # (n, k)
        q = self.Q[nn]  # (n, k, M)
        have = ~np.isnan(q)
        wq = np.einsum("nk,nkm->nm", w, np.where(have, q, 0.0))
        ws = np.einsum("nk,nkm->nm", w, have.astype(float))
        return (wq + self.shrink * self.mean[None, :] * w.max(axis=1, keepdims=True)) / (
            ws + self.shrink * w.max(axis=1, keepdims=True)
        )

    def predict(self, emb: np.ndarray, feats: np.ndarray) -> np.ndarray:
        return self.predict_from_sims(emb.astype(np.float32) @ self.emb.T)


@dataclass
class MFHead:
    """Reduced-rank ridge: ``q̂ = b + (x − x̄) B V_r V_rᵀ``; ``rank=None`` is plain ridge (``linear``)."""

    rank: int | None = 8
    alpha: float = 10.0
    feat_weight: float = 0.3
    coef: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    bias: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    x_mean: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    f_mu: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    f_sd: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    def _x(self, emb: np.ndarray, feats: np.ndarray) -> np.ndarray:
        return _design(emb, feats, self.f_mu, self.f_sd, self.feat_weight)

    def fit(self, emb: np.ndarray, feats: np.ndarray, Q: np.ndarray) -> "MFHead":
        return self.fit_path(emb, feats, Q, [(self.rank, self.alpha)])[0]

    def fit_path(self, emb: np.ndarray, feats: np.ndarray, Q: np.ndarray, settings: Sequence[tuple[int | None, float]]) -> list["MFHead"]:
        """One fitted head per (rank, alpha), sharing one eigendecomposition of XᵀX."""
        f_mu, f_sd = feats.mean(axis=0), feats.std(axis=0) + 1e-6
        X = _design(emb, feats, f_mu, f_sd, self.feat_weight)
        Y = fill_missing(Q)
        x_mean, bias = X.mean(axis=0), Y.mean(axis=0)
        Xc, Yc = X - x_mean, Y - bias
        s, V = np.linalg.eigh(Xc.T @ Xc)
        VtXY = V.T @ (Xc.T @ Yc)
        heads = []
        for rank, alpha in settings:
            B = V @ (VtXY / (np.clip(s, 0, None) + alpha)[:, None])
            h = MFHead(rank=rank, alpha=alpha, feat_weight=self.feat_weight)
            h.f_mu, h.f_sd, h.x_mean, h.bias = f_mu, f_sd, x_mean, bias
            h.coef = _reduce_rank(Xc @ B, B, rank)
            heads.append(h)
        return heads

    def predict(self, emb: np.ndarray, feats: np.ndarray) -> np.ndarray:
        return self.bias[None, :] + (self._x(emb, feats) - self.x_mean) @ self.coef


def _reduce_rank(fitted: np.ndarray, B: np.ndarray, rank: int | None) -> np.ndarray:
    if rank is None or rank >= B.shape[1]:
        return B
    w, vecs = np.linalg.eigh(fitted.T @ fitted)  # right singular vectors of the fitted values
    v = vecs[:, np.argsort(w)[::-1][:rank]]
    return B @ v @ v.T


def LinearHead(alpha: float = 10.0, feat_weight: float = 0.3) -> MFHead:  # noqa: N802 - a head "class"
    """Per-model ridge regression on embedding + query features (``MFHead`` at full rank)."""
    return MFHead(rank=None, alpha=alpha, feat_weight=feat_weight)


# ---- hyperparameter search -------------------------------------------------------------------
_GRIDS: dict[str, list[dict[str, Any]]] = {
    "knn": [{"k": k, "tau": t} for k in (10, 25, 50, 100) for t in (0.03, 0.1)],
    "mf": [{"rank": r, "alpha": a} for r in (2, 4, 8, 16) for a in (3.0, 10.0, 30.0)],
    "linear": [{"alpha": a} for a in (1.0, 3.0, 10.0, 30.0, 100.0)],
}


def grid_for(variant: str) -> list[dict[str, Any]]:
    """The inner-CV hyperparameter grid of a single head."""
    if variant == "gbm":
        from thrifty.offline.router_gbm import GBM_GRID

        return GBM_GRID
    return _GRIDS[variant]


def _make(variant: str, params: dict[str, Any]):
    if variant == "knn":
        return KNNHead(**params)
    if variant == "mf":
        return MFHead(**params)
    if variant == "linear":
        return LinearHead(**params)
    if variant == "gbm":
        from thrifty.offline.router_gbm import GBMHead

        return GBMHead(**params)
    raise ValueError(f"unknown router variant {variant!r}")


@dataclass
class FittedPredictor:
    """A fitted head with its encoder: ``predict_texts`` gives (n, M) expected quality."""

    variant: str
    params: dict[str, Any]
    head: Any
    encoder: QueryEncoder
    models: tuple[str, ...]
    exp_cost: np.ndarray
    cv_area: float
    oof_pred: np.ndarray = field(repr=False)
    search: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def predict_arrays(self, emb: np.ndarray, feats: np.ndarray) -> np.ndarray:
        return np.clip(self.head.predict(emb, feats), 0.0, 1.0)

    def predict_texts(self, texts: Sequence[str | None]) -> np.ndarray:
        return self.predict_arrays(*self.encoder.encode(texts))

    def predict(self, request: Any) -> np.ndarray:
        """Live use (policy.router.QualityPredictor): one request → (M,) expected quality."""
        return self.predict_texts([request.prompt_text])[0]


def _inner_folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(perm[i::k]) for i in range(k)]


def _oof(variant: str, grid: list[dict[str, Any]], emb, feats, Q, folds) -> list[np.ndarray]:
    """Out-of-fold predictions (n, M) for every setting in ``grid``."""
    n, M = Q.shape
    outs = [np.zeros((n, M)) for _ in grid]
    for test in folds:
        train = np.setdiff1d(np.arange(n), test)
        if variant == "knn":
            sims = emb[test].astype(np.float32) @ emb[train].astype(np.float32).T
            for g, params in enumerate(grid):
                head = KNNHead(**params).fit(emb[train], feats[train], Q[train])
                outs[g][test] = head.predict_from_sims(sims)
        elif variant == "gbm":
            fitted = _make(variant, {}).fit_path(emb[train], feats[train], Q[train], grid)
            for g, head in enumerate(fitted):
                outs[g][test] = head.predict(emb[test], feats[test])
        else:
            heads = [_make(variant, p) for p in grid]
            fitted = heads[0].fit_path(emb[train], feats[train], Q[train], [(h.rank, h.alpha) for h in heads])
            for g, head in enumerate(fitted):
                outs[g][test] = head.predict(emb[test], feats[test])
    return [np.clip(o, 0.0, 1.0) for o in outs]


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


def search_head(variant: str, grid: list[dict[str, Any]], emb, feats, Q, folds, score) -> tuple[float, dict[str, Any], np.ndarray, list[dict[str, Any]]]:
    """Inner-CV search of one head: (best score, its params, its out-of-fold predictions, every row)."""
    rows: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any], np.ndarray] | None = None
    for params, oof in zip(grid, _oof(variant, grid, emb, feats, Q, folds)):
        s = float(score(oof))
        rows.append({"variant": variant, **params, "score": s})
        if best is None or s > best[0] + 1e-12:
            best = (s, params, oof)
    assert best is not None, "empty hyperparameter grid"
    return (*best, rows)


def _fit_predictor(emb, feats, quality, cost, exp_cost, variant, encoder, models, inner_folds, seed, grid, score) -> FittedPredictor:
    folds = _inner_folds(len(quality), inner_folds, seed)
    if variant == "ensemble":
        from thrifty.offline.router_ensemble import fit_ensemble

        head, params, s, oof, search = fit_ensemble(emb, feats, quality, folds, score)
        return FittedPredictor(variant, params, head, encoder, tuple(models), exp_cost, s, oof, search)
    variants = SINGLE_HEADS if variant == "auto" else (variant,)
    search: list[dict[str, Any]] = []
    best: tuple[float, str, dict[str, Any], np.ndarray] | None = None
    for v in variants:
        g = grid if (grid is not None and variant != "auto") else grid_for(v)
        s, params, oof, rows = search_head(v, g, emb, feats, quality, folds, score)
        search += rows
        if best is None or s > best[0] + 1e-12:
            best = (s, v, params, oof)
    assert best is not None
    s, v, params, oof = best
    head = _make(v, params).fit(emb, feats, quality)
    return FittedPredictor(v, dict(params), head, encoder, tuple(models), exp_cost, s, oof, search)
