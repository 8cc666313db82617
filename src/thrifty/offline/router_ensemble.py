"""Ensemble router head (``router:ensemble``): a weighted mean of recalibrated single heads.

Fitting, on the training table only (nested inside the harness's outer folds):

1. every member head (``knn``, ``mf``, ``linear``, ``gbm``) picks its hyperparameters by the inner
   K-fold CV of :func:`thrifty.offline.router_search.search_head` and returns its out-of-fold predictions P_j;
2. per member j and model m, a monotone recalibration of P_jm to the truth (:func:`recalibration`:
   a least-squares line, or isotonic regression on binned predictions) puts the members on one
   scale — kNN predictions are shrunk towards the mean, ridge ones less so — so that averaging them
   is meaningful;
3. the members to average (equal weights over every non-empty subset, smallest first) and the kind
   of recalibration are chosen by the same routing score on the recalibrated out-of-fold
   predictions; a single member can win;
4. each chosen member is kept as its K inner-fold fits (*cross-fitting*: its prediction is the mean
   of the K heads, each fitted on (K−1)/K of the rows with the chosen hyperparameters) — the same
   models whose out-of-fold predictions the recalibration and the router's λ were fitted on. A
   single refit on all rows would be less shrunk than they were, and the recalibration's stretch
   would then overshoot.

The recalibration and subset are chosen on the same out-of-fold rows they are scored on — a few
parameters per model, a mild optimism that stays inside the training data.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

import numpy as np

from thrifty.offline.router_search import SINGLE_HEADS, grid_for, make_head, search_head
from thrifty.scoring.router_heads import CrossFit, EnsembleHead, apply_calibration

__all__ = ["EnsembleHead", "CrossFit", "fit_ensemble", "recalibration", "CALIBRATIONS"]

CALIBRATIONS = ("linear", "monotone")
_BIN = 20  # monotone calibration: rows per quantile bin before pooling adjacent violators


def _line(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    var = float(np.var(p))
    b = max(float(np.mean((p - p.mean()) * (q - q.mean())) / var), 0.0) if var > 1e-12 else 0.0
    a = float(q.mean() - b * p.mean())
    return np.array([0.0, 1.0]), np.array([a, a + b])  # exact on [0, 1], where predictions are clipped


def _monotone(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators on quantile bins of ≥ _BIN rows: strictly increasing knots."""
    order = np.argsort(p, kind="stable")
    n_bins = max(len(p) // _BIN, 1)
    xs, ys, ws = [], [], []
    for chunk in np.array_split(order, n_bins):
        xs.append(float(p[chunk].mean()))
        ys.append(float(q[chunk].mean()))
        ws.append(float(len(chunk)))
        while len(ys) > 1 and ys[-2] >= ys[-1]:
            w = ws[-2] + ws[-1]
            xs[-2:] = [(xs[-2] * ws[-2] + xs[-1] * ws[-1]) / w]
            ys[-2:] = [(ys[-2] * ws[-2] + ys[-1] * ws[-1]) / w]
            ws[-2:] = [w]
    return np.array(xs), np.array(ys)


def recalibration(pred: np.ndarray, quality: np.ndarray, kind: str = "linear") -> list[tuple[np.ndarray, np.ndarray]]:
    """Per model (column), the knots ``(x, y)`` of a non-decreasing piecewise-linear map pred → quality,
    fitted on rows where quality is known (applied with ``np.interp``: flat beyond the end knots).

    ``linear``: the least-squares line with slope ≥ 0 (a constant prediction maps to the mean);
    ``monotone``: isotonic regression (pool adjacent violators) on quantile bins of ≥ 20 rows, its
    bin means joined by straight lines — monotone like the line, but it cannot overshoot the truth's
    range where the relation saturates."""
    fit = _line if kind == "linear" else _monotone
    out = []
    for m in range(pred.shape[1]):
        have = ~np.isnan(quality[:, m])
        if not have.any():
            out.append((np.array([0.0]), np.array([0.0])))
        else:
            out.append(fit(pred[have, m], quality[have, m]))
    return out


def fit_ensemble(
    emb: np.ndarray,
    feats: np.ndarray,
    quality: np.ndarray,
    folds: Sequence[np.ndarray],
    score: Callable[[np.ndarray], float],
    members: Sequence[str] | None = None,
):
    """(head, params, inner-CV score, out-of-fold predictions, search rows) of the ensemble; see the module doc."""
    names = tuple(members or SINGLE_HEADS)
    params: dict[str, dict[str, Any]] = {}
    cal: dict[tuple[str, str], tuple[list, np.ndarray]] = {}  # (member, kind) -> (knots, calibrated oof)
    search: list[dict[str, Any]] = []
    for v in names:
        _, params[v], oof, rows = search_head(v, grid_for(v), emb, feats, quality, folds, score)
        search += rows
        for kind in CALIBRATIONS:
            knots = recalibration(oof, quality, kind)
            cal[v, kind] = (knots, apply_calibration(oof, knots))
    best: tuple[float, tuple[str, ...], str, np.ndarray] | None = None
    for kind in CALIBRATIONS:
        for k in range(1, len(names) + 1):
            for subset in itertools.combinations(names, k):
                pred = np.clip(np.mean([cal[v, kind][1] for v in subset], axis=0), 0.0, 1.0)
                s = float(score(pred))
                search.append({"variant": "ensemble", "members": "+".join(subset), "calibration": kind, "score": s})
                if best is None or s > best[0] + 1e-12:
                    best = (s, subset, kind, pred)
    assert best is not None
    s, subset, kind, oof = best
    n = len(quality)
    trains = [np.setdiff1d(np.arange(n), test) for test in folds]
    heads = [CrossFit([make_head(v, params[v]).fit(emb[tr], feats[tr], quality[tr]) for tr in trains]) for v in subset]
    head = EnsembleHead(subset, heads, [cal[v, kind][0] for v in subset])
    params_out = {"members": "+".join(subset), "calibration": kind, **{f"{v}.{k}": p for v in subset for k, p in params[v].items()}}
    return head, params_out, s, oof, search
