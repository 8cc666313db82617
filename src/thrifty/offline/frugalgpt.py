"""Baseline policy ``frugalgpt``: FrugalGPT's own recipe, in the same harness as ``cascade``.

As in Chen et al. (2023) and their code: one scorer g(query, answer) shared by every model (their
DistilBERT regressor; here a ridge head on the same inputs as ``cascade`` — cheap answer features,
optionally MiniLM embeddings — pooled over all models' training answers), then a brute-force search over **every ordered list of 3 models of
the pool** × a threshold grid (the same grid at each tier, 0 = always accept, which also yields the
shorter lists), picking for each budget the list and thresholds with the best *training* quality at
training cost ≤ budget. The thresholds are chosen on the scorer's in-sample scores of the training
answers, as FrugalGPT does — which is why it overspends held-out.

The search is vectorised: for a first model ``a`` and second ``b`` the (t1, t2) grid of every third
model ``c`` comes out of one matrix product; the winners per budget come from one sort of all
(cost, quality) cells (the Pareto front). Replay drives :class:`CascadePolicy` like ``cascade``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from thrifty.data.table import RoutingTable
from thrifty.offline.api import OperatingPoint
from thrifty.offline.cascade_policy import replay_cascades
from thrifty.offline.optimise import pareto_front
from thrifty.scoring.answer_scorer import AnswerScorer, embed_mode, table_inputs
from thrifty.scoring.heads import HeadConfig, fit_head, single_threaded

__all__ = ["FrugalGPTOffline", "FittedFrugalGPT", "search_lists"]


def search_lists(S: np.ndarray, Q: np.ndarray, C: np.ndarray, grid: np.ndarray, knobs: Sequence[float]):
    """Best (a, b, c, t1, t2) per knob over all ordered 3-lists (training estimates).

    Returns {knob: ((a, b, c), (t1, t2), cost, quality)}.
    """
    P, M = Q.shape
    q = np.nan_to_num(Q).astype(np.float32)
    c = np.nan_to_num(C).astype(np.float32)
    s = np.nan_to_num(S, nan=-np.inf)
    G = len(grid)
    acc = (s[:, :, None] >= grid[None, None, :]).astype(np.float32)  # (P, M, G)
    rej = 1.0 - acc
    R1 = rej.transpose(1, 2, 0).reshape(M * G, P)  # rows (a, t1)
    head_q = (acc * q[:, :, None]).sum(0) / P  # (M, G): accepted at tier 1
    head_c = c.sum(0) / P  # (M,)
    best_cost: list[np.ndarray] = []
    best_qual: list[np.ndarray] = []
    best_key: list[np.ndarray] = []
    for b in range(M):
        # tail after tier 1 when b is second: accepted b + rejected-to-c, for every c: (P, G, M)
        tq = (acc[:, b, :] * q[:, b, None])[:, :, None] + rej[:, b, :, None] * q[:, None, :]
        tc = c[:, b, None, None] + rej[:, b, :, None] * c[:, None, :]
        tq = tq.reshape(P, G * M)
        tc = tc.reshape(P, G * M)
        gq = (R1 @ tq / P).reshape(M, G, G, M) + head_q[:, :, None, None]  # (a, t1, t2, c)
        gc = (R1 @ tc / P).reshape(M, G, G, M) + head_c[:, None, None, None]
        valid = np.ones((M, M), dtype=bool)  # (a, c)
        np.fill_diagonal(valid, False)
        valid[b, :] = False
        valid[:, b] = False
        mask = np.broadcast_to(valid[:, None, None, :], gq.shape)
        idx = np.flatnonzero(mask)
        fq, fc = gq.ravel()[idx], gc.ravel()[idx]
        keep = pareto_front(fc, fq)
        best_cost.append(fc[keep])
        best_qual.append(fq[keep])
        a_i, t1_i, t2_i, c_i = np.unravel_index(idx[keep], gq.shape)
        best_key.append(np.stack([a_i, np.full_like(a_i, b), c_i, t1_i, t2_i], 1))
    cost = np.concatenate(best_cost)
    qual = np.concatenate(best_qual)
    keys = np.concatenate(best_key)
    keep = pareto_front(cost, qual)
    cost, qual, keys = cost[keep], qual[keep], keys[keep]
    out = {}
    for k in knobs:
        ok = np.flatnonzero(cost <= k)
        i = ok[-1] if len(ok) else 0
        a, b, cc, t1, t2 = (int(x) for x in keys[i])
        out[float(k)] = ((a, b, cc), (float(grid[t1]), float(grid[t2])), float(cost[i]), float(qual[i]))
    return out


@dataclass
class FittedFrugalGPT:
    models: tuple[str, ...]
    scorer: Any
    picks: dict[float, tuple[tuple[str, ...], tuple[float, ...]]]
    inputs_kw: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    def replay(self, table: RoutingTable) -> list[OperatingPoint]:

        with single_threaded():
            S = self.scorer.score_table(table_inputs(table, self.models, **self.inputs_kw))
        return replay_cascades(table, S, self.models, self.picks, {k: k for k in self.picks}, label="frugalgpt")


class FrugalGPTOffline:
    """FrugalGPT baseline. Options: ``grid`` (threshold levels, default 10), ``embed`` (scorer inputs,
    default ``none`` = the same cheap features as ``cascade``'s default, so the two differ only in
    scorer pooling, in-sample vs out-of-fold thresholds and the search), ``alpha`` (ridge strength)."""

    name = "frugalgpt"

    def __init__(self, grid: int | str = 10, embed: bool | str = "none", alpha: float | str = 100.0, variant: str | None = None) -> None:
        self.grid = int(grid)

        self.embed = embed_mode(embed)
        self.alpha = float(alpha)

    def fit(self, train: RoutingTable, knobs: Sequence[float] | np.ndarray) -> FittedFrugalGPT:

        with single_threaded():
            return self._fit(train, knobs)

    def _fit(self, train: RoutingTable, knobs: Sequence[float] | np.ndarray) -> FittedFrugalGPT:

        models = train.models
        mode = "answer" if train.has_answers else "query"
        kw = {"inputs": mode, "embed": self.embed}
        inputs = table_inputs(train, models, **kw)
        ok = ~np.isnan(train.quality)
        X = np.vstack([x[ok[:, j]] for j, x in enumerate(inputs.X)])
        y = np.concatenate([train.quality[ok[:, j], j] for j in range(len(models))])
        head, _ = fit_head(X, y, inputs.n_features, inputs.emb_dims, [HeadConfig("ridge", self.alpha)], k=2)
        heads = {m: head for m in models}  # one shared g(query, answer)
        scorer = AnswerScorer(heads, inputs=mode, embed=self.embed)
        S = scorer.score_table(inputs)  # in-sample, as FrugalGPT
        S[~ok] = np.nan
        levels = np.quantile(S[ok], np.linspace(0.0, 1.0, self.grid + 1)[1:-1]) if self.grid > 1 else np.array([])
        grid = np.concatenate([[0.0], levels])
        knobs = [float(k) for k in knobs] if len(knobs) else sorted({s.cost for s in train.model_stats() if s.n})
        found = search_lists(S, train.quality, train.cost, grid, knobs)
        picks = {}
        for k, (order, thr, _, _) in found.items():
            tiers, thresholds = [models[order[0]]], []
            for t, m in zip(thr, order[1:]):
                if t <= 0.0:  # accept everything at this tier: the list ends here
                    break
                thresholds.append(t)
                tiers.append(models[m])
            picks[k] = (tuple(tiers), tuple(thresholds))
        info = {"train": {str(k): {"cost": v[2], "quality": v[3]} for k, v in found.items()}, "head_cv_mse": head.cv_mse}
        return FittedFrugalGPT(tuple(models), scorer, picks, kw, info)
