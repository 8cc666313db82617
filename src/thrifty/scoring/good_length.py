"""Length against the expected good-answer length: a scorer feature (issue #16, behind an option).

Judges of open-ended answers reward length relative to what the question calls for (AlpacaEval's
length-controlled model conditions on the reference answer's length). What the question calls for is
predictable from the question: :class:`GoodLength` regresses, over the training prompts, the
quality-weighted mean log word count of the pool's answers (a pooled target: many models' answers
per prompt, far less noisy than any one) on the cheap query features. An answer then gets two
features: ``d = log words − predicted good log words`` and its shortfall ``min(d, 0)`` (too short is
what judges punish; too long much less).

Fitted out-of-fold on the training prompts (each prompt's prediction comes from a ridge that did not
see it), so the answer heads are not fitted on an in-sample feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from thrifty.scoring.features import FEATURE_NAMES

__all__ = ["GoodLength", "fit_good_length", "Q_COLS", "A_WORDS"]

Q_COLS = tuple(i for i, n in enumerate(FEATURE_NAMES) if n.startswith("q_"))  # the query's own features
A_WORDS = FEATURE_NAMES.index("a_log_words")


@dataclass
class GoodLength:
    mu: np.ndarray
    sd: np.ndarray
    coef: np.ndarray
    intercept: float

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted good log word count per design row (reads the query feature columns)."""
        Z = (X[:, list(Q_COLS)] - self.mu) / self.sd
        return self.intercept + Z @ self.coef

    def features(self, X: np.ndarray, predicted: np.ndarray | None = None) -> np.ndarray:
        """(n, 2): log words − good log words, and its shortfall min(·, 0)."""
        d = X[:, A_WORDS] - (self.predict(X) if predicted is None else predicted)
        return np.column_stack([d, np.minimum(d, 0.0)])


def _ridge(Z: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    zc, yc = Z - Z.mean(axis=0), y - y.mean()
    coef = np.linalg.solve(zc.T @ zc + alpha * np.eye(Z.shape[1]), zc.T @ yc)
    return coef, float(y.mean() - Z.mean(axis=0) @ coef)


def fit_good_length(
    X: Sequence[np.ndarray], quality: np.ndarray, *, alpha: float = 10.0, k: int = 4, seed: int = 0
) -> tuple[GoodLength, np.ndarray]:
    """``X[j]`` (P, D) design rows of model j's answers, ``quality`` (P, K) → the fitted model and the
    out-of-fold predicted good log word count of every training prompt (P,)."""
    words = np.column_stack([x[:, A_WORDS] for x in X])
    w = np.where(np.isnan(quality), 0.0, np.clip(quality, 0.0, None))
    have = w.sum(axis=1) > 0
    target = (w * words).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-12)
    Qf = X[0][:, list(Q_COLS)]
    mu, sd = Qf.mean(axis=0), Qf.std(axis=0) + 1e-6
    Z = (Qf - mu) / sd
    fallback = float(target[have].mean()) if have.any() else 0.0
    oof = np.full(len(Z), fallback)
    folds = np.random.default_rng(seed).permutation(len(Z)) % k
    for f in range(k):
        tr = (folds != f) & have
        if tr.sum() > Z.shape[1]:
            c, b = _ridge(Z[tr], target[tr], alpha)
            oof[folds == f] = b + Z[folds == f] @ c
    coef, b = _ridge(Z[have], target[have], alpha) if have.sum() > Z.shape[1] else (np.zeros(Z.shape[1]), fallback)
    return GoodLength(mu, sd, coef, b), oof
