"""Fit side of the item-response router head (``router:irt``; the head is :mod:`thrifty.scoring.router_irt`).

1. Pooled traits of each training prompt (:func:`pooled_traits`): trait 1 = the standardised mean
   quality over all models (the prompt's easiness), traits 2..d = the top left singular vectors of
   the quality matrix once each model's linear dependence on the easiness is removed.
2. A ridge map from the query design (embedding + query features) to the traits, one
   eigendecomposition of XᵀX serving every α.
3. The per-model logistic links ``q_m ≈ σ(b_m + a_mᵀ t̂)`` are fitted on *cross-fitted* t̂ (K internal
   folds), i.e. on traits as well as they can be read from text, not on the true traits: a model
   whose quality follows the easiness gets a slope that reflects how readable the easiness is.
   Soft labels (graded quality in [0, 1]) are fitted by the same Newton steps as binary ones.

Hyperparameters (``dims``, ``alpha``) are chosen by the routers' inner CV (:data:`IRT_GRID`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from thrifty.scoring.router_heads import fill_missing
from thrifty.scoring.router_irt import IRTHead, irt_design, sigmoid

__all__ = ["IRT_GRID", "IRTFit", "pooled_traits", "fit_links"]

IRT_GRID: list[dict[str, Any]] = [{"dims": d, "alpha": a} for d in (1, 2, 4, 8) for a in (1.0, 3.0, 10.0, 30.0)]


def pooled_traits(Q: np.ndarray, dims: int) -> np.ndarray:
    """(n, dims) standardised prompt traits from the quality matrix (NaN = no outcome; module doc)."""
    have = ~np.isnan(Q)
    n = len(Q)
    row_n = have.sum(axis=1)
    overall = float(np.nanmean(Q)) if have.any() else 0.5
    easy = np.where(row_n > 0, np.where(have, Q, 0.0).sum(axis=1) / np.maximum(row_n, 1), overall)
    ec = easy - easy.mean()
    sd = float(ec.std())
    traits = [ec / sd if sd > 0 else ec]
    if dims > 1:
        Qc = fill_missing(Q)
        Qc = Qc - Qc.mean(axis=0)
        beta = (Qc.T @ ec) / max(float(ec @ ec), 1e-12)
        R = Qc - np.outer(ec, beta)
        U, s, _ = np.linalg.svd(R, full_matrices=False)
        for k in range(min(dims - 1, len(s))):
            traits.append(U[:, k] * np.sqrt(n) if s[k] > 1e-9 else np.zeros(n))
    T = np.column_stack(traits)
    if T.shape[1] < dims:  # fewer models than traits: pad with constant (ignored) traits
        T = np.hstack([T, np.zeros((n, dims - T.shape[1]))])
    return T


def fit_links(T: np.ndarray, Q: np.ndarray, l2: float = 1.0, iters: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Per-model logistic regression of quality on the traits: (slopes (M, d), bias (M,)).

    Penalised Newton (``l2`` on the slopes only); missing cells are left out of that model's fit; a
    model without outcomes gets the pool's mean quality and no slope."""
    n, d = T.shape
    M = Q.shape[1]
    X = np.hstack([np.ones((n, 1)), T])
    pen = np.full(d + 1, float(l2))
    pen[0] = 1e-6
    overall = float(np.nanmean(Q)) if np.isfinite(Q).any() else 0.5
    slopes, bias = np.zeros((M, d)), np.zeros(M)
    for m in range(M):
        ok = ~np.isnan(Q[:, m])
        y = Q[ok, m]
        mu = float(np.clip(y.mean() if len(y) else overall, 1e-3, 1 - 1e-3))
        w = np.zeros(d + 1)
        w[0] = np.log(mu / (1 - mu))
        if len(y) == 0:
            bias[m] = w[0]
            continue
        Xm = X[ok]
        for _ in range(iters):
            p = sigmoid(Xm @ w)
            grad = Xm.T @ (p - y) + pen * w
            H = (Xm * (p * (1 - p))[:, None]).T @ Xm + np.diag(pen)
            step = np.linalg.solve(H, grad)
            w -= step
            if float(np.abs(step).max()) < 1e-8:
                break
        bias[m], slopes[m] = w[0], w[1:]
    return slopes, bias


def _eig(Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lam, V = np.linalg.eigh(Xc.T @ Xc)
    return np.clip(lam, 0.0, None), V


def _ridge(lam: np.ndarray, V: np.ndarray, XtT: np.ndarray, alpha: float) -> np.ndarray:
    return V @ ((V.T @ XtT) / (lam + alpha)[:, None])


@dataclass
class IRTFit:
    """The fitter ``make_head('irt', params)`` returns: ``fit`` → :class:`IRTHead`; ``fit_path`` serves
    an inner-CV grid from one pass (one eigendecomposition per internal fold)."""

    dims: int = 1
    alpha: float = 30.0
    feat_weight: float = 0.3
    link_folds: int = 3
    l2: float = 1.0
    seed: int = 0

    def fit(self, emb: np.ndarray, feats: np.ndarray, Q: np.ndarray) -> IRTHead:
        return self.fit_path(emb, feats, Q, [{"dims": self.dims, "alpha": self.alpha}])[0]

    def fit_path(self, emb: np.ndarray, feats: np.ndarray, Q: np.ndarray, grid: Sequence[dict[str, Any]]) -> list[IRTHead]:
        n = len(Q)
        f_mu = feats.mean(axis=0) if n else np.zeros(feats.shape[1])
        f_sd = feats.std(axis=0) if n else np.ones(feats.shape[1])
        f_sd = np.where(f_sd > 1e-9, f_sd, 1.0)
        X = irt_design(emb.astype(np.float64), feats.astype(np.float64), f_mu, f_sd, self.feat_weight)
        dmax = max(int(g.get("dims", self.dims)) for g in grid)
        T = pooled_traits(Q, dmax)
        t_mean = T.mean(axis=0)
        alphas = sorted({float(g.get("alpha", self.alpha)) for g in grid})
        x_mean = X.mean(axis=0)
        lam, V = _eig(X - x_mean)
        XtT = (X - x_mean).T @ (T - t_mean)
        W_all = {a: _ridge(lam, V, XtT, a) for a in alphas}
        # cross-fitted traits: what the links see is the traits as read from held-out text
        oof = {a: np.zeros_like(T) for a in alphas}
        k = max(2, min(self.link_folds, n))
        perm = np.random.default_rng(self.seed).permutation(n)
        for f in range(k):
            test = np.sort(perm[f::k])
            train = np.setdiff1d(np.arange(n), test)
            xm, tm = X[train].mean(axis=0), T[train].mean(axis=0)
            lam_f, V_f = _eig(X[train] - xm)
            XtT_f = (X[train] - xm).T @ (T[train] - tm)
            for a in alphas:
                oof[a][test] = tm + (X[test] - xm) @ _ridge(lam_f, V_f, XtT_f, a)
        heads = []
        for g in grid:
            d, a = int(g.get("dims", self.dims)), float(g.get("alpha", self.alpha))
            slopes, bias = fit_links(oof[a][:, :d], Q, self.l2)
            h = IRTHead(dims=d, alpha=a, feat_weight=self.feat_weight)
            h.x_mean, h.f_mu, h.f_sd, h.t_mean = x_mean, f_mu, f_sd, t_mean[:d]
            h.W, h.slopes, h.bias = W_all[a][:, :d], slopes, bias
            heads.append(h)
        return heads
