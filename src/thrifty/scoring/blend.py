"""Rank blend of two answer scorers: the cheap-feature heads and the fine-tuned MiniLM.

Per model ``m`` the two scorers' outputs ``a`` and ``b`` are mapped to ranks in their own
*out-of-fold training* score distributions (``F_a(a)`` = share of training OOF scores ≤ a, likewise
``F_b``), averaged with weight ``w`` (0.5: the plain mean of ranks measured in
``benchmarks/finetuned_scorer.py``) and Platt-calibrated on the training rows,

    score = sigmoid(α_m · (w·F_a(a) + (1 − w)·F_b(b)) + β_m),

so the blend is again an expected quality in [0, 1], comparable across models (what the cascade's
answer selection needs). Ranks make the two scales commensurable without a fitted stacker; the
calibration has two parameters per model, fitted on out-of-fold scores of the training prompts.

:func:`fit_blend_scorer` is the cascade's hook (``--opt scorer=blend``): it fits both scorers on the
training table and returns the blend with its (P, K) out-of-fold scores.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from thrifty.scoring.answer_scorer import table_inputs
from thrifty.scoring.finetuned import fit_finetuned_scorer
from thrifty.scoring.heads import _platt, _sigmoid

__all__ = ["BlendScorer", "fit_blend", "fit_blend_scorer"]


class BlendScorer:
    """``a``: an :class:`~thrifty.scoring.answer_scorer.AnswerScorer`; ``b``: a
    :class:`~thrifty.scoring.finetuned.FineTunedScorer`; ``ref[m] = (sorted OOF a, sorted OOF b)``;
    ``calib[m] = (α, β)``."""

    def __init__(
        self,
        a: Any,
        b: Any,
        ref: dict[str, tuple[np.ndarray, np.ndarray]],
        calib: dict[str, tuple[float, float]],
        weight: float = 0.5,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.a, self.b, self.ref, self.calib, self.weight = a, b, ref, calib, float(weight)
        self.info = dict(info or {})

    def __repr__(self) -> str:
        return f"BlendScorer(models={list(self.ref)}, weight={self.weight:g})"

    def blend(self, sa: np.ndarray, sb: np.ndarray, model: str) -> np.ndarray:
        """Calibrated blend of raw scores ``sa`` (features) and ``sb`` (fine-tuned) of ``model``."""
        ra, rb = self.ref[model]
        x = self.weight * _rank(ra, sa) + (1 - self.weight) * _rank(rb, sb)
        alpha, beta = self.calib[model]
        return _sigmoid(alpha * x + beta)

    def score(self, request, completion, model: str) -> float:
        sa = np.array([self.a.score(request, completion, model)])
        sb = np.array([self.b.score(request, completion, model)])
        return float(self.blend(sa, sb, model)[0])

    def score_rows(self, table, models: Sequence[str]) -> np.ndarray:
        """(P, K) blended scores of every prompt of ``table`` × ``models``."""

        A = self.a.score_table(table_inputs(table, models, inputs=self.a.inputs, embed=self.a.embed))
        B = self.b.score_rows(table, models)
        return np.stack([self.blend(A[:, j], B[:, j], m) for j, m in enumerate(models)], axis=1)

    def to_files(self) -> tuple["BlendScorer", dict[str, bytes]]:
        """A picklable copy (the fine-tuned weights go to a separate file) and that file."""
        b, files = self.b.to_files()
        a = copy.copy(self.a)
        a._embedder = None
        out = copy.copy(self)
        out.a, out.b = a, b
        return out, files

    def load_files(self, root: str | Path) -> None:
        self.b.load_files(root)


def _rank(ref: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Share of the reference scores ≤ x (mid-rank for ties), in [0, 1]."""
    if len(ref) == 0:
        return np.full(np.shape(x), 0.5)
    lo = np.searchsorted(ref, x, side="left")
    hi = np.searchsorted(ref, x, side="right")
    return (lo + hi) / (2.0 * len(ref))


def fit_blend(
    a: Any,
    b: Any,
    Sa: np.ndarray,
    Sb: np.ndarray,
    Q: np.ndarray,
    models: Sequence[str],
    weight: float = 0.5,
    info: dict[str, Any] | None = None,
) -> tuple[BlendScorer, np.ndarray]:
    """The blend of fitted scorers ``a``, ``b`` from their (P, K) out-of-fold training scores ``Sa``,
    ``Sb`` and qualities ``Q`` (NaN: missing pair) → (scorer, (P, K) blended out-of-fold scores)."""
    ref, calib = {}, {}
    S = np.full(Q.shape, np.nan)
    for j, m in enumerate(models):
        ok = np.isfinite(Sa[:, j]) & np.isfinite(Sb[:, j]) & np.isfinite(Q[:, j])
        ref[m] = (np.sort(Sa[ok, j]), np.sort(Sb[ok, j]))
        x = weight * _rank(ref[m][0], Sa[ok, j]) + (1 - weight) * _rank(ref[m][1], Sb[ok, j])
        calib[m] = _platt(x, Q[ok, j]) if ok.sum() >= 3 else (0.0, 0.0)
        S[ok, j] = _sigmoid(calib[m][0] * x + calib[m][1])
    return BlendScorer(a, b, ref, calib, weight, info), S


def fit_blend_scorer(
    table, models: Sequence[str], feature_scorer: tuple[Any, np.ndarray], ft_config: Any, ft_inner_folds: int = 2, weight: float = 0.5
) -> tuple[BlendScorer, np.ndarray]:
    """The cascade hook: fine-tune MiniLM on ``table`` (:func:`fit_finetuned_scorer`), blend it with the
    already fitted feature scorer ``(scorer, OOF scores)``; returns (blend, (P, K) OOF blend scores)."""

    a, Sa = feature_scorer
    b, Sb = fit_finetuned_scorer(table, models, ft_config, ft_inner_folds)
    Q = table.quality[:, [table.model_index(m) for m in models]]
    return fit_blend(a, b, Sa, Sb, Q, models, weight, {"finetuned": dict(b.info), "weight": weight})
