"""Batch replay: the cascade rule over a whole table at once, as numpy over tiers instead of a
Python generator per prompt.

:func:`cascade_batch` is the array form of driving :class:`thrifty.policy.cascade.CascadePolicy`
(``select="last"``) from a start tier over recorded answers with :func:`thrifty.policy.drive.drive`:
tiers from ``start[p]`` upwards; a missing (prompt, model) pair is a failed call (skipped, unpaid);
tier k < last is accepted when its score ≥ ``thresholds[k]``; the last tier is accepted when it
answers; when it fails, the best-scored answer received so far (ties: the later tier) is returned.
The unit tests hold it equal to the live loop (:func:`thrifty.offline.cascade_policy.replay_policy`)
on tables with gaps; the other ``select`` modes keep the live loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from thrifty.data.table import RoutingTable

__all__ = ["Replayed", "cascade_batch"]


@dataclass
class Replayed:
    """Per-prompt outcome of driving one live policy over a table's recorded answers."""

    cost: np.ndarray  # (P,) sum over every tier called that answered
    quality: np.ndarray  # (P,) quality of the returned answer (0 if none)
    calls: np.ndarray  # (P, M) bool: table models called
    chosen: np.ndarray  # (P,) table column of the returned answer (-1 if none)
    start: np.ndarray  # (P,) first tier called


def cascade_batch(
    table: RoutingTable,
    scores: np.ndarray,
    score_models: Sequence[str],
    tiers: Sequence[str],
    thresholds: Sequence[float],
    start: np.ndarray | None = None,
) -> Replayed:
    """Replay the ``select="last"`` cascade ``tiers``/``thresholds`` on every prompt of ``table``;
    ``scores[p, j]`` scores model ``score_models[j]``'s answer to prompt p; ``start[p]``: first tier."""
    P, L = table.n_prompts, len(tiers)
    cols = [table.model_index(m) for m in tiers]
    scol = [list(score_models).index(m) for m in tiers[:-1]]
    start = np.zeros(P, dtype=int) if start is None else np.clip(np.asarray(start, dtype=int), 0, L - 1)
    out = Replayed(np.zeros(P), np.zeros(P), np.zeros((P, table.n_models), dtype=bool), np.full(P, -1), start.copy())
    open_ = np.ones(P, dtype=bool)
    best_score = np.full(P, -np.inf)
    best_col = np.full(P, -1)
    for k, m in enumerate(cols):
        act = open_ & (start <= k)
        out.calls[act, m] = True
        answered = act & table.available[:, m]
        out.cost[answered] += table.cost[answered, m]
        if k == L - 1:
            out.chosen[answered] = m
            open_ &= ~answered
            break
        s = scores[:, scol[k]]
        better = answered & (s >= best_score)
        best_score[better], best_col[better] = s[better], m
        acc = answered & (s >= thresholds[k])
        out.chosen[acc] = m
        open_ &= ~acc
    fallback = open_ & (best_col >= 0)  # the last tier failed: the best answer received
    out.chosen[fallback] = best_col[fallback]
    got = out.chosen >= 0
    out.quality[got] = table.quality[np.flatnonzero(got), out.chosen[got]]
    return out
