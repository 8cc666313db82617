"""Honest ceilings for a report: what a perfect scorer, or a noise-free oracle, could reach here.

The exact oracle (:func:`~thrifty.offline.baselines.oracle_curve`) picks, per prompt, the best *label*
— on a noisy judge that is partly picking noise, so "gap to the oracle" overstates what any policy
can close. Two ceilings a reader can hold a policy against instead:

``cascade_ceiling``  the Pareto front of ≤ L-tier cascades (cheap-first, the cascade policy's own
                     candidates) whose scorer is the truth itself (score = label): the most a cascade
                     of that depth can reach on these labels. In-sample, so an upper bound.
``denoised_oracle``  the oracle on labels shrunk for judge noise (empirical Bayes per model):
                     ``q̃ = μ_m + r·(q − μ_m)``, with r the labels' reliability — from a replicate pair
                     of models in the table (the same model run twice: r = their per-prompt
                     correlation) or given (``--label-reliability r``). Picking the best q̃ per prompt
                     and scoring it by q̃ (the posterior mean) is the oracle with the noise's luck
                     taken out.

:func:`find_replicate` looks for a replicate pair by name: one model's name followed by a suffix
(``vicuna-13b-v1.5`` / ``vicuna-13b-v1.5-togetherai``), both answering ≥ 30 common prompts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from thrifty.data.table import RoutingTable
from thrifty.offline import metrics as M
from thrifty.offline.baselines import oracle_curve
from thrifty.offline.curves import Curve, majorant
from thrifty.offline.optimise import candidate_models, optimise

__all__ = ["Ceilings", "cascade_ceiling", "denoised_oracle", "find_replicate", "ceilings"]


@dataclass
class Ceilings:
    """The ceilings of one table, as :meth:`to_json` reports them."""

    cascade: Curve
    cascade_tiers: int
    denoised: Curve | None
    reliability: float | None
    reliability_source: str | None

    def to_json(self, best_cost: float, best_quality: float) -> dict[str, Any]:
        def at(curve: Curve | None) -> dict[str, float | None] | None:
            if curve is None:
                return None
            return {
                "quality_at_best_single_cost": M.quality_at_best_single_cost(curve, best_cost),
                "savings_at_parity": M.savings_at_parity(curve, best_quality, best_cost),
            }

        return {
            "perfect_scorer_cascade": {"max_tiers": self.cascade_tiers, **(at(self.cascade) or {})},
            "denoised_oracle": None
            if self.denoised is None
            else {"reliability": self.reliability, "source": self.reliability_source, **(at(self.denoised) or {})},
        }


def cascade_ceiling(table: RoutingTable, max_tiers: int = 3, max_candidates: int | None = 8, grid: int = 32) -> Curve:
    """Cost–quality front of ≤ ``max_tiers``-tier cheap-first cascades scored by the labels themselves."""
    Q, C = table.quality, table.cost
    cand = candidate_models(Q, C, max_candidates)
    front = optimise(Q, Q, C, max_tiers=max(1, min(max_tiers, 3, len(cand))), candidates=cand, grid=grid, ordered="cheap-first")
    return majorant(np.array([(p.cost, p.quality) for p in front.points]))


def find_replicate(table: RoutingTable, min_common: int = 30) -> tuple[str, str, float] | None:
    """A replicate pair (base, base + suffix) and the per-prompt correlation of their labels."""
    best: tuple[str, str, float] | None = None
    most = 0
    for a in table.models:
        for b in table.models:
            suffix = b[len(a) + 1 :]
            # a run of the same model elsewhere ("-togetherai"), not another version ("-v1.5"): no digits
            if b.startswith(a) and len(b) > len(a) + 1 and b[len(a)] in "-_@." and suffix.replace("-", "").replace("_", "").isalpha():
                qa, qb = table.quality[:, table.model_index(a)], table.quality[:, table.model_index(b)]
                both = ~np.isnan(qa) & ~np.isnan(qb)
                if both.sum() >= min_common and qa[both].std() > 0 and qb[both].std() > 0:
                    if both.sum() > most:  # the pair with the most common prompts
                        most, best = int(both.sum()), (a, b, float(np.corrcoef(qa[both], qb[both])[0, 1]))
    return best


def denoised_oracle(table: RoutingTable, reliability: float) -> Curve:
    """The oracle curve on labels shrunk towards each model's mean by ``reliability`` (module doc)."""
    if not 0.0 < reliability <= 1.0:
        raise ValueError(f"reliability must be in (0, 1], got {reliability}")
    q = table.quality
    mu = np.nanmean(q, axis=0)
    shrunk = mu[None, :] + reliability * (q - mu[None, :])  # NaN stays NaN
    return oracle_curve(replace(table, quality=shrunk)).curve


def ceilings(table: RoutingTable, max_tiers: int = 3, reliability: float | None = None) -> Ceilings:
    """Both ceilings for ``table`` (the de-noised oracle only with a reliability, given or found)."""
    source = "given (--label-reliability)" if reliability is not None else None
    if reliability is None:
        rep = find_replicate(table)
        if rep is not None and rep[2] > 0:
            reliability, source = rep[2], f"replicate pair {rep[0]} / {rep[1]}"
    den = denoised_oracle(table, reliability) if reliability is not None else None
    return Ceilings(cascade_ceiling(table, max_tiers), max_tiers, den, reliability, source)
