"""The quality guardrail: a bounded, ratcheting feedback controller on the cascade's thresholds.

What it watches: every audited request says whether the answer the client got was *at least as
good as the reference's* (``AuditOutcome.answers[served_model].at_least_as_good``). The profile's
``target`` (default 0.95) is the share of such answers it promises.

What it moves: one offset ``δ`` added to every threshold of the cascade in service (a higher
threshold escalates more, towards the stronger tiers; a threshold above 1 always escalates).

The rule, evaluated at checkpoints — every ``min_audits`` audits of the current setting (the
*window*: audits since the last move, at most ``window`` of the newest); testing after every single
audit would make chance escalations at a setting right at the target almost certain:

1. wait until the window holds ``min_audits`` new audits since the last checkpoint;
2. compute the Wilson 95% interval ``[lo, hi]`` of the window's share of good-enough answers;
3. **escalate** when ``hi < target`` (the interval shows the target is missed):
   ``δ ← min(δ + step, max_up)``, and raise the *floor* to the new ``δ``;
4. **save** when ``lo > target + slack`` (the interval sits well above the target) and
   ``δ − step ≥ max(floor, −max_down)``: ``δ ← δ − step``;
5. otherwise hold. Every move empties the window (the new setting is judged on its own audits).

Why it settles: the floor only rises (each escalation sets it to the new, higher ``δ``) and saving
never goes below it, so a setting once shown to miss the target is never returned to. Escalations
are therefore at most ``(max_up + max_down) / step``, and between two escalations the saves are
bounded by the same number, so the controller makes finitely many moves and then holds. The price
of the ratchet is that it cannot save again after a drift that made traffic easier; a refit that
swaps the artefact (whose new thresholds were chosen on the audits) resets ``δ`` and the floor.
``tests/unit/test_guardrail.py`` checks the bound and the settling on simulated streams.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from thrifty.calibration.audit_sampling import weighted_share

__all__ = ["GuardrailConfig", "GuardrailMove", "Guardrail", "wilson"]


def wilson(k: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial share k/n (``(0, 1)`` when n = 0; a weighted share
    passes k = share·n_eff and the effective n)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    den = 1.0 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


@dataclass(frozen=True)
class GuardrailConfig:
    """Knobs of the controller (see the module docstring). ``target`` None disables it."""

    target: float | None = 0.95
    step: float = 0.05
    max_up: float = 1.0
    max_down: float = 0.3
    min_audits: int = 40
    window: int = 400
    slack: float = 0.02
    z: float = 1.96


@dataclass(frozen=True)
class GuardrailMove:
    """One move of the controller, with the evidence it was made on."""

    action: str  # "escalate" | "save"
    offset_before: float
    offset_after: float
    n: int
    good: int
    interval: tuple[float, float]
    target: float

    def to_json(self) -> dict[str, object]:
        return {
            "action": self.action,
            "offset_before": round(self.offset_before, 6),
            "offset_after": round(self.offset_after, 6),
            "n": self.n,
            "good": self.good,
            "interval": [round(x, 4) for x in self.interval],
            "target": self.target,
        }


@dataclass
class Guardrail:
    """The controller's state: the offset, the floor and the window of audited good-enough flags."""

    config: GuardrailConfig = field(default_factory=GuardrailConfig)
    offset: float = 0.0
    floor: float = float("-inf")
    moves: int = 0
    _window: deque = field(default_factory=deque)
    _weights: deque = field(default_factory=deque)
    _since_check: int = 0

    def reset(self) -> None:
        """Back to ``δ = 0``, no floor, empty window (a new artefact came into service)."""
        self.offset, self.floor = 0.0, float("-inf")
        self._window.clear()
        self._weights.clear()
        self._since_check = 0

    @property
    def window(self) -> tuple[int, int]:
        """(audits, good-enough answers) in the current window."""
        return len(self._window), int(sum(self._window))

    def interval(self) -> tuple[float, float]:
        return self._interval(self.config.z)

    def _interval(self, z: float) -> tuple[float, float]:
        n, k = self.window
        if len(self._weights) == n and n and any(w != 1.0 for w in self._weights):
            # inverse-probability weights (non-uniform audit sampling): Hájek share, Kish effective n
            w = np.array(self._weights)
            share, n_eff = weighted_share(np.array(self._window, dtype=float), w)
            return wilson(share * n_eff, n_eff, z)
        return wilson(k, n, z)

    def observe(self, good: bool, weight: float = 1.0) -> GuardrailMove | None:
        """Record one audited served answer (``weight``: 1/its audit probability when sampling was
        not uniform); return the move it triggered, if any."""
        cfg = self.config
        if cfg.target is None:
            return None
        self._window.append(1 if good else 0)
        self._weights.append(float(weight))
        while len(self._window) > cfg.window:
            self._window.popleft()
            self._weights.popleft()
        self._since_check += 1
        if self._since_check < cfg.min_audits:
            return None
        self._since_check = 0
        n, k = self.window
        lo, hi = self._interval(cfg.z)
        before = self.offset
        if hi < cfg.target and self.offset < cfg.max_up - 1e-12:
            self.offset = min(self.offset + cfg.step, cfg.max_up)
            self.floor = max(self.floor, self.offset)
            action = "escalate"
        elif lo > cfg.target + cfg.slack and self.offset - cfg.step >= max(self.floor, -cfg.max_down) - 1e-12:
            self.offset = self.offset - cfg.step
            action = "save"
        else:
            return None
        self.offset = round(self.offset, 12)
        self.moves += 1
        self._window.clear()
        self._weights.clear()
        return GuardrailMove(action, before, self.offset, n, k, (lo, hi), cfg.target)
