"""The router policy: predict every tier's quality from the request, call the one worth its price.

Sans-I/O like the cascade: ``plan()`` yields ``Call(k)`` for the chosen tier and returns a
:class:`Decision`. Nothing is generated before the choice, so the router pays for one answer only.

Decision rule (:func:`preference_order`), for predicted qualities ``q̂[k]`` and expected costs ``c[k]``:

- ``target is None``: rank tiers by utility ``q̂[k] − λ·c[k]`` (ties: cheaper first); λ ≥ 0 normally,
  λ < 0 (two-model share calibration) prefers the dearer tier unless it is predicted clearly worse;
- ``target`` set: the cheapest tier whose ``q̂[k] ≥ target`` first, then the other clearing tiers
  by cost, then the rest by ``q̂`` descending (if none clears, the best predicted tier is first).

The first tier in that order is called. If the call raises (provider error), the next tier in the
same order is tried, up to ``max_attempts`` tiers; if all fail the decision has ``completion=None``.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from thrifty.types import Call, ChatRequest, Completion, Decision, Plan, Step

__all__ = ["QualityPredictor", "RouterPolicy", "preference_order", "preference_orders"]


class QualityPredictor(Protocol):
    def predict(self, request: ChatRequest) -> np.ndarray:
        """Expected quality in [0, 1] of each tier on ``request``: shape (n_tiers,)."""
        ...


def preference_order(pred: np.ndarray, cost: np.ndarray, lam: float = 0.0, target: float | None = None) -> list[int]:
    """Tiers in the order the router would try them (see the module docstring)."""
    pred = np.asarray(pred, dtype=float)
    cost = np.asarray(cost, dtype=float)
    idx = np.arange(len(pred))
    if target is None:
        util = pred - lam * cost
        return [int(i) for i in sorted(idx, key=lambda i: (-util[i], cost[i], i))]
    clear = [int(i) for i in sorted(idx[pred >= target], key=lambda i: (cost[i], -pred[i], i))]
    rest = [int(i) for i in sorted(idx[pred < target], key=lambda i: (-pred[i], cost[i], i))]
    return clear + rest


def preference_orders(pred: np.ndarray, cost: np.ndarray, lam: float = 0.0, target: float | None = None) -> np.ndarray:
    """:func:`preference_order` for many requests at once: row i of the (n, M) result is
    ``preference_order(pred[i], cost, lam, target)`` (same keys, same tie-breaks; offline replay)."""
    pred = np.asarray(pred, dtype=float)
    n, m = pred.shape
    cost_b = np.broadcast_to(np.asarray(cost, dtype=float), (n, m))
    idx = np.broadcast_to(np.arange(m), (n, m))
    if target is None:
        util = pred - lam * cost_b
        return np.lexsort((idx, cost_b, -util), axis=-1)
    clear = pred >= target
    primary = np.where(clear, cost_b, -pred)
    secondary = np.where(clear, -pred, cost_b)
    return np.lexsort((idx, secondary, primary, ~clear), axis=-1)


class RouterPolicy:
    """Route each request to one tier; fall back down the preference order on provider errors."""

    def __init__(
        self,
        tiers: Sequence[str],
        predictor: QualityPredictor | None,
        expected_cost: Sequence[float],
        *,
        lam: float = 0.0,
        target: float | None = None,
        max_attempts: int | None = None,
    ) -> None:
        if not tiers:
            raise ValueError("a router needs at least one tier")
        if len(expected_cost) != len(tiers):
            raise ValueError(f"{len(tiers)} tiers need {len(tiers)} expected costs, got {len(expected_cost)}")
        if not np.isfinite(lam):
            raise ValueError("lam must be finite")
        self.tiers = tuple(tiers)
        self.predictor = predictor
        # embedding the query is CPU work: the engine runs this policy's steps off the event loop
        self.blocking = predictor is not None
        self.expected_cost = np.asarray(expected_cost, dtype=float)
        self.lam = float(lam)
        self.target = None if target is None else float(target)
        self.max_attempts = len(self.tiers) if max_attempts is None else max(1, int(max_attempts))

    def __repr__(self) -> str:
        knob = f"target={self.target}" if self.target is not None else f"lam={self.lam:.4g}"
        return f"RouterPolicy(tiers={list(self.tiers)}, {knob})"

    def predict(self, request: ChatRequest) -> np.ndarray:
        if self.predictor is None:
            raise ValueError("this RouterPolicy has no predictor: pass predicted= to plan()")
        pred = np.asarray(self.predictor.predict(request), dtype=float)
        if pred.shape != (len(self.tiers),):
            raise ValueError(f"predictor returned shape {pred.shape}, expected ({len(self.tiers)},)")
        return pred

    def order(self, pred: np.ndarray) -> list[int]:
        return preference_order(pred, self.expected_cost, self.lam, self.target)

    def plan(self, request: ChatRequest, predicted: np.ndarray | None = None) -> Plan:
        """Call the preferred tier; on an exception try the next. ``predicted`` skips the predictor
        (offline replay computes predictions for a whole table at once)."""
        pred = self.predict(request) if predicted is None else np.asarray(predicted, dtype=float)
        steps: list[Step] = []
        for k in self.order(pred)[: self.max_attempts]:
            model = self.tiers[k]
            result: Completion | BaseException = yield Call(k)
            if isinstance(result, BaseException):
                steps.append(Step(k, model, score=float(pred[k]), error=f"{type(result).__name__}: {result}"))
                continue
            steps.append(Step(k, model, score=float(pred[k]), accepted=True, cost_usd=result.cost_usd, latency_s=result.latency_s))
            return Decision(k, result, tuple(steps))
        return Decision(-1, None, tuple(steps))
