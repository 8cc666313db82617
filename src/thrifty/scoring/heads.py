"""Learned per-model scoring heads: [features, query–answer cosine, query emb, answer emb] → quality.

A head predicts the *expected quality* of one model's answer, calibrated to [0, 1]:

1. a raw regressor — ``ridge`` (linear, closed form over standardised inputs, one SVD serves every
   regularisation strength) or ``gbm`` (scikit-learn's histogram gradient boosting on the cheap
   features, the cosine and a few principal components of each embedding);
2. a Platt calibration ``sigmoid(a·raw + b)`` fitted by soft-label cross-entropy on *out-of-fold*
   raw predictions (inner k-fold inside the data the head is fitted on). It is strictly monotone,
   so it never merges distinct scores into ties (isotonic would, and cascade thresholds need the
   resolution), and it maps the scores of heads fitted on different data to one comparable scale.

:func:`fit_head` chooses the configuration (head kind, ridge α) by that same inner cross-validation
— lowest out-of-fold squared error of the calibrated prediction — and returns the chosen head, refit
on all rows, together with its calibrated out-of-fold predictions (what an optimiser must use for
thresholds: in-sample scores are over-confident). Binary (0/1) quality works unchanged: the
calibrated output is then P(correct).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

__all__ = [
    "HeadConfig",
    "Head",
    "SharedHead",
    "fit_shared",
    "fit_head",
    "design_matrix",
    "inner_folds",
    "configs_for",
    "single_threaded",
    "DEFAULT_CONFIGS",
]


@dataclass(frozen=True)
class HeadConfig:
    kind: str = "ridge"  # "ridge" | "gbm"
    alpha: float = 30.0  # ridge strength (on standardised columns)
    pca: int = 8  # gbm: principal components kept per embedding block

    @property
    def label(self) -> str:
        return f"ridge(α={self.alpha:g})" if self.kind == "ridge" else f"gbm(pca={self.pca})"


RIDGE_CONFIGS: tuple[HeadConfig, ...] = tuple(HeadConfig("ridge", a) for a in (10.0, 100.0, 1000.0, 10000.0))
GBM_CONFIGS: tuple[HeadConfig, ...] = (HeadConfig("gbm"),)
DEFAULT_CONFIGS: tuple[HeadConfig, ...] = RIDGE_CONFIGS


def configs_for(kinds: str) -> tuple[HeadConfig, ...]:
    """Head configurations for a comma list of kinds: ``ridge``, ``gbm`` or ``ridge,gbm``."""
    out: list[HeadConfig] = []
    for kind in (k.strip() for k in kinds.split(",") if k.strip()):
        if kind == "ridge":
            out += RIDGE_CONFIGS
        elif kind == "gbm":
            out += GBM_CONFIGS
        else:
            raise ValueError(f"unknown head kind {kind!r} (use ridge, gbm)")
    if not out:
        raise ValueError("no head kinds given")
    return tuple(out)


def design_matrix(features: np.ndarray, query_emb: np.ndarray | None = None, answer_emb: np.ndarray | None = None) -> np.ndarray:
    """Columns: cheap features (incl. cosine), then query embedding, then answer embedding (if given).

    The number of feature columns is stored by the head (``n_features``) so it can split the blocks.
    """
    blocks = [np.asarray(features, np.float64)]
    for emb in (query_emb, answer_emb):
        if emb is not None:
            blocks.append(np.asarray(emb, np.float64))
    return np.hstack(blocks)


def single_threaded():
    """Context limiting BLAS/OpenMP to one thread: on small matrices extra threads only contend
    (measured 20× slower on a busy 2-core machine). A no-op without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1)


def inner_folds(n: int, k: int, seed: int = 0, groups: np.ndarray | None = None) -> list[np.ndarray]:
    """k row-index folds; with ``groups`` every group (e.g. a prompt's rows) stays in one fold."""
    if groups is None:
        perm = np.random.default_rng(seed).permutation(n)
        k = max(2, min(k, n))
        return [np.sort(perm[i::k]) for i in range(k)]
    uniq = np.unique(groups)
    gf = inner_folds(len(uniq), k, seed)
    return [np.flatnonzero(np.isin(groups, uniq[f])) for f in gf]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def _platt(raw: np.ndarray, y: np.ndarray, iters: int = 50) -> tuple[float, float]:
    """(a, b) minimising soft-label cross-entropy of sigmoid(a·raw + b) against y in [0, 1] (Newton)."""
    y = np.clip(y, 0.0, 1.0)
    mu, sd = float(raw.mean()), float(raw.std()) or 1.0
    x = (raw - mu) / sd
    yb = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
    w = np.array([1.0, np.log(yb / (1 - yb))])
    X = np.stack([x, np.ones_like(x)], axis=1)
    for _ in range(iters):
        p = _sigmoid(X @ w)
        g = X.T @ (p - y) + 1e-4 * np.array([w[0], 0.0])
        h = (X * (p * (1 - p))[:, None]).T @ X + np.diag([1e-4, 1e-9])
        step = np.linalg.solve(h, g)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    a = max(float(w[0]), 1e-6)  # keep it increasing: a head anti-correlated with quality is useless anyway
    return a / sd, float(w[1]) - a * mu / sd


class _Ridge:
    """Standardised ridge; ``fit_path`` solves several α with one eigendecomposition.

    With n rows and d columns it decomposes the smaller of the Gram matrices (ZZᵀ when n ≤ d, else
    ZᵀZ), so every α costs one matrix–vector product.
    """

    def __init__(self) -> None:
        self.mean = self.scale = self.coef = None
        self.intercept = 0.0

    @staticmethod
    def fit_path(X: np.ndarray, y: np.ndarray, alphas: Sequence[float]) -> list["_Ridge"]:
        mean = X.mean(0)
        scale = X.std(0)
        scale[scale < 1e-12] = 1.0
        Z = (X - mean) / scale
        ym = float(y.mean())
        yc = y - ym
        n, d = Z.shape
        if n <= d:
            lam, U = np.linalg.eigh(Z @ Z.T)
            Uty = U.T @ yc
            coefs = [Z.T @ (U @ (Uty / (np.maximum(lam, 0.0) + a))) for a in alphas]
        else:
            lam, V = np.linalg.eigh(Z.T @ Z)
            Vtz = V.T @ (Z.T @ yc)
            coefs = [V @ (Vtz / (np.maximum(lam, 0.0) + a)) for a in alphas]
        out = []
        for coef in coefs:
            r = _Ridge()
            r.mean, r.scale, r.intercept, r.coef = mean, scale, ym, coef
            out.append(r)
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean) / self.scale) @ self.coef + self.intercept


class _Regressor(Protocol):
    def predict(self, X: np.ndarray) -> np.ndarray: ...


class _GBM:
    def __init__(self, n_features: int, pca: int, emb_dims: tuple[int, ...], seed: int = 0) -> None:
        self.n_features, self.pca, self.emb_dims, self.seed = n_features, pca, emb_dims, seed
        self.proj: list[tuple[np.ndarray, np.ndarray]] = []
        self.model: Any = None  # a fitted sklearn HistGradientBoostingRegressor after ``fit``

    def _reduce(self, X: np.ndarray) -> np.ndarray:
        cols = [X[:, : self.n_features]]
        start = self.n_features
        for d, (mu, comp) in zip(self.emb_dims, self.proj):
            cols.append((X[:, start : start + d] - mu) @ comp.T)
            start += d
        return np.hstack(cols)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "_GBM":
        try:
            from sklearn.ensemble import HistGradientBoostingRegressor
            from threadpoolctl import threadpool_limits
        except ImportError as exc:  # pragma: no cover - depends on extras
            from thrifty.errors import ConfigError

            raise ConfigError("gradient-boosted heads need scikit-learn", key="heads", fix="pip install 'thrifty[lab]'") from exc

        self.proj = []
        start = self.n_features
        for d in self.emb_dims:
            block = X[:, start : start + d]
            mu = block.mean(0)
            _, _, vt = np.linalg.svd(block - mu, full_matrices=False)
            self.proj.append((mu, vt[: self.pca]))
            start += d
        with threadpool_limits(1):  # OpenMP threads only fight each other on small data
            self.model = HistGradientBoostingRegressor(
                max_iter=100, learning_rate=0.05, max_depth=3, min_samples_leaf=20, l2_regularization=1.0, random_state=self.seed
            ).fit(self._reduce(X), y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return self.model.predict(self._reduce(X))


@dataclass
class Head:
    """A fitted head: raw regressor + Platt calibration. ``predict`` returns expected quality in [0, 1]."""

    config: HeadConfig
    raw: _Regressor
    a: float
    b: float
    n_features: int
    cv_mse: float = float("nan")
    cv_spearman: float = float("nan")
    scores: dict[str, float] = field(default_factory=dict)  # inner-CV MSE of every config tried

    def predict(self, X: np.ndarray) -> np.ndarray:
        return _sigmoid(self.a * self.raw.predict(np.atleast_2d(X)) + self.b)


@dataclass
class SharedHead:
    """One model's view of a head fitted on the stacked rows of several models (model one-hot
    appended), with the model's own Platt calibration. Same ``predict`` contract as :class:`Head`."""

    base: Head
    index: int
    n_models: int
    a: float
    b: float
    cv_mse: float = float("nan")
    cv_spearman: float = float("nan")

    @property
    def config(self) -> HeadConfig:
        return self.base.config

    @property
    def label(self) -> str:
        return "shared " + self.base.config.label

    def raw(self, X: np.ndarray) -> np.ndarray:
        return self.base.raw.predict(_with_onehot(np.atleast_2d(X), self.base.n_features - self.n_models, self.index, self.n_models))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return _sigmoid(self.a * self.raw(X) + self.b)


def _with_onehot(X: np.ndarray, n_features: int, index: int, n_models: int) -> np.ndarray:
    """``X`` with model ``index``'s one-hot (``n_models`` columns) inserted after its ``n_features`` cheap features."""
    onehot = np.zeros((X.shape[0], n_models))
    onehot[:, index] = 1.0
    return np.hstack([X[:, :n_features], onehot, X[:, n_features:]])


def fit_shared(
    Xs: Sequence[np.ndarray],
    ys: Sequence[np.ndarray],
    groups: Sequence[np.ndarray],
    n_features: int,
    emb_dims: tuple[int, ...] = (),
    configs: Sequence[HeadConfig] = DEFAULT_CONFIGS,
    k: int = 4,
    seed: int = 0,
) -> tuple[list[SharedHead], list[np.ndarray]]:
    """Fit one head on the stacked rows of several models (one-hot model columns after the cheap
    features), then calibrate it per model on that model's out-of-fold rows.

    Returns per-model :class:`SharedHead` and calibrated out-of-fold predictions. Pooling shares the
    effects common to all models (length, refusals, the prompt's difficulty) across K× more rows.
    """
    K = len(Xs)
    rows = [_with_onehot(X, n_features, j, K) for j, X in enumerate(Xs)]
    head, cal = fit_head(np.vstack(rows), np.concatenate(ys), n_features + K, emb_dims, configs, k, seed, np.concatenate(groups))
    raw_oof = (np.log(np.clip(cal, 1e-12, 1 - 1e-12) / np.clip(1 - cal, 1e-12, 1)) - head.b) / head.a
    out, oofs, start = [], [], 0
    for j, y in enumerate(ys):
        r = raw_oof[start : start + len(y)]
        start += len(y)
        a, b = _platt(r, y)
        c = _sigmoid(a * r + b)
        out.append(SharedHead(head, j, K, a, b, float(np.mean((c - y) ** 2)), _spearman(c, y)))
        oofs.append(c)
    return out, oofs


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return 0.0
    rx = np.argsort(np.argsort(x)).astype(float)
    ry = np.argsort(np.argsort(y)).astype(float)
    return float(np.corrcoef(rx, ry)[0, 1])


def fit_head(
    X: np.ndarray,
    y: np.ndarray,
    n_features: int,
    emb_dims: tuple[int, ...] = (),
    configs: Sequence[HeadConfig] = DEFAULT_CONFIGS,
    k: int = 4,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> tuple[Head, np.ndarray]:
    """Choose a config by inner k-fold CV, refit it on all rows; return (head, calibrated OOF predictions).

    ``groups`` keeps rows of one group (a prompt answered by several models) in one inner fold.
    """
    X = np.asarray(X, np.float64)
    y = np.asarray(y, np.float64)
    if not (np.isfinite(y).all() and np.isfinite(X).all()):
        raise ValueError("fit_head needs finite X and y (drop missing pairs first)")
    n = len(y)
    folds = inner_folds(n, k, seed, groups)
    ridge_cfgs = [c for c in configs if c.kind == "ridge"]
    other = [c for c in configs if c.kind != "ridge"]
    oof = {c: np.zeros(n) for c in configs}
    for test in folds:
        train = np.setdiff1d(np.arange(n), test)
        if ridge_cfgs:
            for c, r in zip(ridge_cfgs, _Ridge.fit_path(X[train], y[train], [c.alpha for c in ridge_cfgs])):
                oof[c][test] = r.predict(X[test])
        for c in other:
            oof[c][test] = _GBM(n_features, c.pca, emb_dims, seed).fit(X[train], y[train]).predict(X[test])
    best, best_mse, best_cal = None, np.inf, None
    scores = {}
    for c in configs:
        a, b = _platt(oof[c], y)
        cal = _sigmoid(a * oof[c] + b)
        mse = float(np.mean((cal - y) ** 2))
        scores[c.label] = mse
        if mse < best_mse - 1e-12:
            best, best_mse, best_cal, best_ab = c, mse, cal, (a, b)
    assert best is not None
    assert best_cal is not None
    raw: _Regressor
    if best.kind == "ridge":
        raw = _Ridge.fit_path(X, y, [best.alpha])[0]
    else:
        raw = _GBM(n_features, best.pca, emb_dims, seed).fit(X, y)
    head = Head(best, raw, best_ab[0], best_ab[1], n_features, best_mse, _spearman(best_cal, y), scores)
    return head, best_cal
