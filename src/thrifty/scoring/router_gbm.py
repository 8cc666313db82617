"""Gradient-boosted router head (``router:gbm``): boosted trees on reduced embeddings + query features.

Inputs: the query embedding projected on its top ``n_comp`` principal directions (fitted on the
training rows) next to the cheap :mod:`query features <thrifty.scoring.query_features>` (trees need
no scaling). Targets: one boosted regressor per model would be 56 fits per fold, so the head boosts
the *low-rank structure* of the quality matrix instead, as the ``mf`` head does linearly:

    Y − b = U S Vᵀ (centred quality matrix, missing cells filled with the model's mean),
    z_k = (Y − b) v_k  for the top ``rank`` right singular vectors v_k,
    ẑ_k = boosted trees on x (one scikit-learn ``HistGradientBoostingRegressor`` per component),
    q̂ = b + Σ_k ẑ_k v_kᵀ.

With two models (a RouteLLM pair) the components span the pool, so nothing is lost. Components are
nested and boosting is additive, so one fit at (max rank, max iterations) yields every smaller
(rank, iterations) setting: :meth:`GBMHead.fit_path` serves the whole inner-CV grid from one fit per
fold (``staged_predict``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from thrifty.scoring.router_heads import fill_missing

__all__ = ["GBMHead", "GBM_GRID"]

GBM_GRID: list[dict[str, Any]] = [{"rank": r, "n_iter": t} for r in (2, 4, 8) for t in (25, 50, 100, 200)]


def _regressor(n_iter: int, seed: int):
    try:
        from sklearn.ensemble import HistGradientBoostingRegressor
    except ImportError as exc:  # pragma: no cover - depends on extras
        from thrifty.errors import ConfigError

        raise ConfigError("the gbm router needs scikit-learn", key="--policy", fix="pip install 'thrifty[lab]'") from exc
    return HistGradientBoostingRegressor(
        max_iter=n_iter,
        learning_rate=0.05,
        max_depth=3,
        min_samples_leaf=20,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=seed,
    )


@dataclass
class _Boosted:
    """The shared fitted state of one :meth:`GBMHead.fit_path` call (one fit serves many settings)."""

    x_mean: np.ndarray
    proj: np.ndarray  # (n_comp, d) principal directions of the embeddings
    bias: np.ndarray  # (M,)
    V: np.ndarray  # (M, R) right singular vectors of the centred quality matrix
    models: list[Any]  # R fitted regressors, component k ↔ V[:, k]

    def inputs(self, emb: np.ndarray, feats: np.ndarray) -> np.ndarray:
        return np.hstack([(emb - self.x_mean) @ self.proj.T, feats])

    def predict(self, emb: np.ndarray, feats: np.ndarray, rank: int, n_iter: int) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        X = self.inputs(emb, feats)
        r = min(rank, len(self.models))
        Z = np.zeros((len(X), r))
        with threadpool_limits(1):
            for k in range(r):
                m = self.models[k]
                Z[:, k] = m.predict(X) if n_iter >= m.n_iter_ else _staged(m, X, n_iter)
        return self.bias[None, :] + Z @ self.V[:, :r].T


def _staged(model: Any, X: np.ndarray, n_iter: int) -> np.ndarray:
    for i, pred in enumerate(model.staged_predict(X), start=1):
        if i >= n_iter:
            return pred
    return pred


@dataclass
class GBMHead:
    """Boosted low-rank head (see the module docstring). ``rank`` components, ``n_iter`` boosting
    rounds (learning rate 0.05, depth 3, ≥ 20 rows a leaf), ``n_comp`` embedding components."""

    rank: int = 4
    n_iter: int = 100
    n_comp: int = 32
    seed: int = 0
    state: _Boosted | None = field(default=None, repr=False)

    def fit(self, emb: np.ndarray, feats: np.ndarray, Q: np.ndarray) -> "GBMHead":
        return self.fit_path(emb, feats, Q, [{"rank": self.rank, "n_iter": self.n_iter}])[0]

    def fit_path(self, emb: np.ndarray, feats: np.ndarray, Q: np.ndarray, grid: Sequence[dict[str, Any]]) -> list["GBMHead"]:
        """One head per grid setting (``rank``, ``n_iter``), all sharing one boosted fit."""
        from threadpoolctl import threadpool_limits

        Y = fill_missing(Q)
        bias = Y.mean(axis=0)
        _, _, vt = np.linalg.svd(Y - bias, full_matrices=False)
        R = min(max(int(g.get("rank", self.rank)) for g in grid), vt.shape[0])
        V = vt[:R].T
        x_mean = emb.mean(axis=0)
        _, _, pt = np.linalg.svd(emb - x_mean, full_matrices=False)
        proj = pt[: min(self.n_comp, pt.shape[0])]
        n_iter = max(int(g.get("n_iter", self.n_iter)) for g in grid)
        state = _Boosted(x_mean, proj, bias, V, [])
        X = state.inputs(emb, feats)
        Z = (Y - bias) @ V
        with threadpool_limits(1):  # OpenMP threads only fight each other on a few hundred rows
            for k in range(R):
                state.models.append(_regressor(n_iter, self.seed).fit(X, Z[:, k]))
        return [
            GBMHead(
                rank=int(g.get("rank", self.rank)),
                n_iter=int(g.get("n_iter", self.n_iter)),
                n_comp=self.n_comp,
                seed=self.seed,
                state=state,
            )
            for g in grid
        ]

    def predict(self, emb: np.ndarray, feats: np.ndarray) -> np.ndarray:
        assert self.state is not None, "fit the head first"
        return self.state.predict(emb, feats, self.rank, self.n_iter)
