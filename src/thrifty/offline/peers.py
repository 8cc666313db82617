"""Peers side by side: is a policy better than the obvious methods, with a paired test of the difference?

Every report of ``thrifty eval --peers`` is compared with the peers (kNN-50 on the query embedding,
FrugalGPT's optimiser, the best single model) on the *same* bootstrap resamples of the prompts: the
headline metric of both is recomputed on each resample (the policies' pooled held-out per-prompt
outcomes, the single-model hull and the oracle of that resample), and the 95% percentile interval of
the per-resample difference is the paired interval. An interval that covers zero reads "not better"
(or "not worse"): the data cannot tell the two apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from thrifty.offline import metrics as M
from thrifty.offline.curves import majorant
from thrifty.offline.evaluate import _headline

__all__ = ["PEERS", "headline_samples", "paired_difference", "compare", "best_single_samples"]

#: the peer policies ``--peers`` adds (registry name, options)
PEERS: tuple[tuple[str, dict[str, Any]], ...] = (("router:knn", {"k": 50}), ("frugalgpt", {}))
METRICS = ("quality_at_best_single_cost", "savings_at_parity", "oracle_gap_closed")


def _weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    return M.resample_weights(n, n_boot, seed + 104729)  # its own stream: independent of the report's intervals


def headline_samples(report: Any, n_boot: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """Per resample (rows of :func:`metrics.resample_weights`), the report's headline metrics (NaN: undefined)."""

    table, best = report.table, report.best_single
    W = _weights(table.n_prompts, n_boot, seed)
    C = np.stack([p.cost for p in report.points])
    Q = np.stack([p.quality for p in report.points])
    tot = W.sum(axis=1)
    pc, pq = C @ W.T / tot, Q @ W.T / tot
    avail = table.available.astype(float)
    nm = W @ avail
    with np.errstate(invalid="ignore", divide="ignore"):
        sc, sq = (W @ np.nan_to_num(table.cost)) / nm, (W @ np.nan_to_num(table.quality)) / nm
    jb = table.model_index(best.model)
    out = {k: np.full(n_boot, np.nan) for k in METRICS}
    for b in range(n_boot):
        live = nm[b] > 0
        hull = majorant(np.column_stack([sc[b, live], sq[b, live]]))
        curve = majorant(np.column_stack([pc[:, b], pq[:, b]]))
        bs = type(best)(best.model, int(nm[b, jb]), float(sq[b, jb]), float(sc[b, jb]))
        vals = _headline(curve, hull, report.oracle.resampled(W[b]), bs, float(sc[b, live].min()), float(sc[b, live].max()))
        for k in METRICS:
            if vals.get(k) is not None:
                out[k][b] = vals[k]
    return out


def best_single_samples(report: Any, n_boot: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """The best single model as a peer: its quality at its own cost, no savings, no gap closed."""
    table, best = report.table, report.best_single
    W = _weights(table.n_prompts, n_boot, seed)
    j = table.model_index(best.model)
    have = table.available[:, j]
    q = np.where(have, table.quality[:, j], 0.0)
    return {
        "quality_at_best_single_cost": (W @ q) / (W @ have.astype(float)),
        "savings_at_parity": np.zeros(n_boot),
        "oracle_gap_closed": np.zeros(n_boot),
    }


def paired_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Per metric: mean of a − b over the resamples, its 95% interval and a verdict."""
    out: dict[str, dict[str, Any]] = {}
    for k in METRICS:
        d = a[k] - b[k]
        d = d[np.isfinite(d)]
        if len(d) < max(10, len(a[k]) // 2):
            out[k] = {"diff": None, "ci95": None, "verdict": "undefined"}
            continue
        lo, hi = (float(x) for x in np.percentile(d, [2.5, 97.5]))
        verdict = "better" if lo > 0 else "worse" if hi < 0 else "not better" if np.mean(d) >= 0 else "not worse"
        out[k] = {"diff": float(np.mean(d)), "ci95": [lo, hi], "verdict": verdict}
    return out


def compare(reports: list[Any], peers: list[Any], n_boot: int = 200, seed: int = 0) -> dict[str, dict[str, Any]]:
    """``{policy: {peer: paired_difference}}`` for every report against every peer report and the best single model."""
    samples = {id(r): headline_samples(r, n_boot, seed) for r in [*reports, *peers]}
    single = best_single_samples(reports[0], n_boot, seed)
    out: dict[str, dict[str, Any]] = {}
    for r in reports:
        row = {p.policy: paired_difference(samples[id(r)], samples[id(p)]) for p in peers if p is not r}
        row[f"best single ({r.best_single.model})"] = paired_difference(samples[id(r)], single)
        out[r.policy] = row
    return out
