"""Query-only quality predictors, the predict side: the fitted heads a router carries into service.

A predictor maps a query to a vector ``q̂[m]`` (expected quality of model m on it) from a local
sentence embedding of the query and the cheap :mod:`query features <thrifty.scoring.query_features>`;
every head is pure numpy at prediction time. The heads are fitted (and their hyperparameters chosen
by inner CV) in the lab, :mod:`thrifty.offline.routers`, which documents each one; the live router
(:mod:`thrifty.policy.router`) and saved artefacts need only this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from thrifty.scoring.query_features import query_feature_matrix
from thrifty.scoring.ridge_moments import Moments, fit_from_moments, moments

KNN_CHUNK = 1024  # rows per block of kNN similarities (1024 × 100k float32 = 400 MB at most)

__all__ = [
    "route",
    "lambda_grid",
    "QueryEncoder",
    "fill_missing",
    "KNNHead",
    "MFHead",
    "LinearHead",
    "FittedPredictor",
    "CrossFit",
    "EnsembleHead",
    "apply_calibration",
]


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
    emb: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]  # set by fit()
    Q: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]  # set by fit()
    mean: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]  # set by fit()

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
        return (wq + self.shrink * self.mean[None, :] * w.max(axis=1, keepdims=True)) / (ws + self.shrink * w.max(axis=1, keepdims=True))

    def predict(self, emb: np.ndarray, feats: np.ndarray) -> np.ndarray:
        e = emb.astype(np.float32)
        out = np.empty((len(e), self.Q.shape[1]))
        for a in range(0, len(e), KNN_CHUNK):  # (chunk × N) similarities at a time: memory bounded
            out[a : a + KNN_CHUNK] = self.predict_from_sims(e[a : a + KNN_CHUNK] @ self.emb.T)
        return out


@dataclass
class MFHead:
    """Reduced-rank ridge: ``q̂ = b + (x − x̄) B V_r V_rᵀ``; ``rank=None`` is plain ridge (``linear``)."""

    rank: int | None = 8
    alpha: float = 10.0
    feat_weight: float = 0.3
    coef: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]  # set by fit()
    bias: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]  # set by fit()
    x_mean: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]  # set by fit()
    f_mu: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]  # set by fit()
    f_sd: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]  # set by fit()

    def _x(self, emb: np.ndarray, feats: np.ndarray) -> np.ndarray:
        return _design(emb, feats, self.f_mu, self.f_sd, self.feat_weight)

    def fit(self, emb: np.ndarray, feats: np.ndarray, Q: np.ndarray) -> "MFHead":
        return self.fit_path(emb, feats, Q, [(self.rank, self.alpha)])[0]

    def fit_path(self, emb: np.ndarray, feats: np.ndarray, Q: np.ndarray, settings: Sequence[tuple[int | None, float]]) -> list["MFHead"]:
        """One fitted head per (rank, alpha), sharing one eigendecomposition of XᵀX (from the rows'
        moments, :mod:`thrifty.scoring.ridge_moments`: no design-matrix copies)."""
        Z = np.hstack([emb, feats]).astype(np.float64, copy=False)
        return self.from_moments(moments(Z, fill_missing(Q)), emb.shape[1], settings)

    def from_moments(self, mom: Moments, n_emb: int, settings: Sequence[tuple[int | None, float]]) -> list["MFHead"]:
        """Heads fitted from the rows' sufficient statistics."""
        heads = []
        for st in fit_from_moments(mom, n_emb, settings, self.feat_weight):
            h = MFHead(rank=st["rank"], alpha=st["alpha"], feat_weight=self.feat_weight)
            h.coef, h.bias, h.x_mean, h.f_mu, h.f_sd = st["coef"], st["bias"], st["x_mean"], st["f_mu"], st["f_sd"]
            heads.append(h)
        return heads

    def predict(self, emb: np.ndarray, feats: np.ndarray) -> np.ndarray:
        return self.bias[None, :] + (self._x(emb, feats) - self.x_mean) @ self.coef


def LinearHead(alpha: float = 10.0, feat_weight: float = 0.3) -> MFHead:  # noqa: N802 - a head "class"
    """Per-model ridge regression on embedding + query features (``MFHead`` at full rank)."""
    return MFHead(rank=None, alpha=alpha, feat_weight=feat_weight)


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


def apply_calibration(pred: np.ndarray, knots: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    return np.column_stack([np.interp(pred[:, m], x, y) for m, (x, y) in enumerate(knots)])


@dataclass
class CrossFit:
    """The mean prediction of one head's K inner-fold fits."""

    heads: list[Any] = field(repr=False)

    def predict(self, emb: np.ndarray, feats: np.ndarray) -> np.ndarray:
        return np.mean([np.clip(h.predict(emb, feats), 0.0, 1.0) for h in self.heads], axis=0)


@dataclass
class EnsembleHead:
    """``q̂ = mean_j cal_j(head_j(x))`` over the chosen members (``cal_j``: per-model knots)."""

    names: tuple[str, ...]
    heads: list[Any] = field(repr=False)
    knots: list[list[tuple[np.ndarray, np.ndarray]]] = field(repr=False)

    def predict(self, emb: np.ndarray, feats: np.ndarray) -> np.ndarray:
        return np.mean([apply_calibration(np.clip(h.predict(emb, feats), 0.0, 1.0), k) for h, k in zip(self.heads, self.knots)], axis=0)
