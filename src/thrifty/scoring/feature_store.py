"""A table's answer-feature rows, each (query, answer) pair computed once for a whole evaluation.

The per-text memo of :mod:`thrifty.scoring.answer_scorer` is bounded (a gateway sees endless new
texts), so on a table larger than the memo every fold of a k-fold evaluation recomputed every row
(20,000 prompts × 20 models = 400,000 pairs against a 10,000-entry memo). Inside
:func:`table_feature_scope` the rows live in one contiguous float64 array, indexed by the pair, for
as long as the scope is open (an evaluation: its folds, fits and replays share them) and are freed
when it closes. The rows are the very arrays :func:`~thrifty.scoring.features.answer_features`
returns, so every fit sees the same numbers as without the scope.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator, Sequence

import numpy as np

from thrifty.scoring.features import FEATURE_NAMES, QueryPart, answer_features, query_part

__all__ = ["FeatureStore", "table_feature_scope", "active_store"]

_ACTIVE: ContextVar["FeatureStore | None"] = ContextVar("thrifty_feature_store", default=None)


class FeatureStore:
    """Feature rows of (query, answer) pairs: an index into a growing (N, F) float64 array."""

    def __init__(self, compute: Callable[[str, str | None, QueryPart], np.ndarray] = answer_features) -> None:
        self._compute = compute
        self._index: dict[tuple[str, str | None], int] = {}
        self._parts: dict[str, QueryPart] = {}  # query → its share of the features, for all its answers
        self._rows = np.empty((1024, len(FEATURE_NAMES)))
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        return int(self._rows.nbytes)

    def _append(self, row: np.ndarray) -> int:
        if self._n == len(self._rows):
            grown = np.empty((2 * len(self._rows), self._rows.shape[1]))
            grown[: self._n] = self._rows[: self._n]
            self._rows = grown
        self._rows[self._n] = row
        self._n += 1
        return self._n - 1

    def rows(self, queries: Sequence[str], answers: Sequence[str | None]) -> np.ndarray:
        """(len(queries), F) feature rows, computing only the pairs not seen before."""
        index = self._index
        idx = np.empty(len(queries), dtype=np.intp)
        for i, key in enumerate(zip(queries, answers)):
            r = index.get(key)
            if r is None:
                q = key[0]
                part = self._parts.get(q)
                if part is None:
                    part = self._parts[q] = query_part(q)
                r = index[key] = self._append(self._compute(q, key[1], part))
            idx[i] = r
        return self._rows[idx]


def active_store() -> FeatureStore | None:
    """The store of the innermost open :func:`table_feature_scope`, if any."""
    return _ACTIVE.get()


@contextmanager
def table_feature_scope() -> Iterator[FeatureStore]:
    """Keep every answer-feature row computed inside (an evaluation's folds share them); a scope
    opened inside another reuses the outer store. The memory goes when the outermost scope closes:
    F float64 a pair (24 × 8 bytes) plus the index."""
    outer = _ACTIVE.get()
    if outer is not None:
        yield outer
        return
    store = FeatureStore()
    token = _ACTIVE.set(store)
    try:
        yield store
    finally:
        _ACTIVE.reset(token)
