"""The hybrid policy: a router picks where a cascade starts; the cascade escalates from there.

Start rule: the router (:func:`thrifty.policy.router.preference_order` over its own tiers, usually the
cascade's candidate models) picks a model ``r``; the cascade starts at its first tier whose expected
cost is ≥ ``r``'s expected cost — "this query needs at least r's price class" — or at its last tier
if none is. ``lam = inf`` always starts at tier 0 (the plain cascade). Everything after the start is
:meth:`thrifty.policy.cascade.CascadePolicy.plan` (scoring, thresholds, failures, last-tier rule).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from thrifty.policy.cascade import CascadePolicy
from thrifty.policy.router import QualityPredictor, preference_order, preference_orders
from thrifty.types import ChatRequest, Plan

__all__ = ["HybridPolicy", "start_tier", "start_tiers"]


def start_tier(pred: np.ndarray, router_cost: np.ndarray, lam: float, tier_cost: Sequence[float]) -> int:
    """Index of the cascade tier to start at (see the module docstring)."""
    if math.isinf(lam) or len(tier_cost) == 1:
        return 0
    pick = preference_order(pred, router_cost, lam)[0]
    need = float(router_cost[pick]) * (1 - 1e-9)
    for k, c in enumerate(tier_cost):
        if c >= need:
            return k
    return len(tier_cost) - 1


def start_tiers(pred: np.ndarray, router_cost: np.ndarray, lam: float, tier_cost: Sequence[float]) -> np.ndarray:
    """:func:`start_tier` for many requests at once (row i of ``pred`` → entry i; offline replay)."""
    n = len(pred)
    if math.isinf(lam) or len(tier_cost) == 1:
        return np.zeros(n, dtype=int)
    pick = preference_orders(pred, router_cost, lam)[:, 0]
    need = np.asarray(router_cost, dtype=float)[pick] * (1 - 1e-9)
    ge = np.asarray(tier_cost, dtype=float)[None, :] >= need[:, None]
    return np.where(ge.any(axis=1), np.argmax(ge, axis=1), len(tier_cost) - 1)


class HybridPolicy:
    """``tiers`` are the cascade's; the router predicts over ``router_models`` (names)."""

    def __init__(
        self,
        cascade: CascadePolicy,
        predictor: QualityPredictor | None,
        router_models: Sequence[str],
        expected_cost: dict[str, float],
        lam: float,
    ) -> None:
        missing = [t for t in (*cascade.tiers, *router_models) if t not in expected_cost]
        if missing:
            raise ValueError(f"no expected cost for {missing}")
        self.cascade = cascade
        self.tiers = cascade.tiers
        self.predictor = predictor
        # embedding the query is CPU work: the engine runs this policy's steps off the event loop
        self.blocking = predictor is not None
        self.router_models = tuple(router_models)
        self.router_cost = np.array([expected_cost[m] for m in self.router_models], dtype=float)
        self.tier_cost = [float(expected_cost[t]) for t in cascade.tiers]
        self.lam = float(lam)

    def __repr__(self) -> str:
        return f"HybridPolicy({self.cascade!r}, lam={self.lam:.4g})"

    @property
    def thresholds(self) -> tuple[float, ...]:
        """The cascade's acceptance thresholds (after the start tier)."""
        return tuple(self.cascade.thresholds)

    def start(self, request: ChatRequest, predicted: np.ndarray | None = None) -> int:
        if math.isinf(self.lam) or len(self.tiers) == 1:
            return 0
        if predicted is None:
            if self.predictor is None:
                raise ValueError("this HybridPolicy has no predictor: pass predicted= to plan()")
            predicted = self.predictor.predict(request)
        return start_tier(np.asarray(predicted, dtype=float), self.router_cost, self.lam, self.tier_cost)

    def plan(self, request: ChatRequest, predicted: np.ndarray | None = None) -> Plan:
        """The cascade's plan from the router's start tier (``predicted``: precomputed router output)."""
        return (yield from self.cascade.plan(request, start=self.start(request, predicted)))
