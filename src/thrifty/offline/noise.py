"""Label noise for judge-sensitivity studies (``thrifty eval --label-noise p``).

:func:`perturb_labels` returns a copy of a routing table whose ``quality`` labels are corrupted the
way an imperfect judge would corrupt them, seeded so a study is reproducible:

- binary labels (every known quality is 0 or 1): each label is flipped with probability ``p``;
- continuous labels: each label is, with probability ``p``, replaced by a draw from U(0, 1).

Missing pairs (NaN) stay missing. ``p = 0`` returns the table unchanged; ``p = 1`` on binary labels
inverts every label. Typical use: fit on the noisy training folds, evaluate on clean test folds.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from thrifty.data.table import RoutingTable
from thrifty.errors import ConfigError
from thrifty.offline.api import FittedPolicy, OfflinePolicy

__all__ = ["perturb_labels", "is_binary", "NoisyLabels"]


def is_binary(quality: np.ndarray) -> bool:
    """True when every known (non-NaN) label is exactly 0 or 1."""
    known = quality[~np.isnan(quality)]
    return bool(known.size) and bool(np.all((known == 0.0) | (known == 1.0)))


def perturb_labels(table: RoutingTable, p: float, *, seed: int = 0, kind: str = "auto") -> RoutingTable:
    """A copy of ``table`` with noisy quality labels (see the module docstring); ``kind``: auto|binary|continuous."""
    if not 0.0 <= float(p) <= 1.0:
        raise ConfigError(f"label noise must be in [0, 1], got {p!r}", key="--label-noise", fix="pass a probability such as 0.1")
    if kind not in ("auto", "binary", "continuous"):
        raise ConfigError(f"unknown noise kind {kind!r}", key="kind", fix="use auto, binary or continuous")
    if p == 0.0:
        return table
    q = table.quality
    known = ~np.isnan(q)
    binary = is_binary(q) if kind == "auto" else kind == "binary"
    rng = np.random.default_rng(seed)
    hit = (rng.random(q.shape) < p) & known
    out = q.copy()
    if binary:
        out[hit] = 1.0 - np.round(q[hit])
    else:
        out[hit] = rng.random(int(hit.sum()))
    return replace(table, quality=out, source=f"{table.source} (label noise p={p:g}, seed={seed})")


class NoisyLabels:
    """An :class:`OfflinePolicy` fitted on noisy labels: ``fit`` perturbs the *training* table only.

    Replay (and therefore every held-out metric) uses the clean labels, so the harness shows how
    routing quality degrades as the judge that labelled the training data gets worse. Each ``fit``
    call (one per fold) draws fresh noise from ``seed`` + the call's index.
    """

    def __init__(self, inner: OfflinePolicy, p: float, *, seed: int = 0, kind: str = "auto") -> None:
        perturb_labels(RoutingTable((), (), (), np.zeros((0, 0)), np.zeros((0, 0))), p, kind=kind)  # validate p, kind
        self.inner = inner
        self.p = float(p)
        self.seed = int(seed)
        self.kind = kind
        self.name = f"{inner.name} (label noise {self.p:g})"  # reports and plots say what was fitted on
        self._calls = 0

    def fit(self, train: RoutingTable, knobs: Sequence[float] | np.ndarray) -> FittedPolicy:
        noisy = perturb_labels(train, self.p, seed=self.seed + self._calls, kind=self.kind)
        self._calls += 1
        return self.inner.fit(noisy, knobs)
