"""The learning loop, sans I/O: audits in, guardrail moves and refit decisions out.

One :class:`LearningLoop` per profile. The gateway (:mod:`thrifty.gateway.learning`) and
``thrifty simulate`` (:mod:`thrifty.calibration.simulate`) drive the very same object, so a seed
gives the same swaps in both (``tests/unit/test_loop_parity.py``):

1. :meth:`LearningLoop.observe` records one :class:`~thrifty.calibration.audit_types.AuditOutcome`
   (and the request's prompt text) and feeds the served answer's good-enough verdict to the
   :class:`~thrifty.calibration.guardrail.Guardrail`; a move is returned as a ``guardrail`` event;
2. once ``every`` new audits arrived, :attr:`LearningLoop.refit_due` is true; the caller takes a
   :meth:`begin_refit` job (a snapshot: the audited table, the policy in service, the guardrail
   offset, a seed), runs :func:`run_refit` wherever it likes — a worker thread in the gateway,
   inline in ``simulate`` — and hands the result to :meth:`apply`;
3. :meth:`apply` swaps the candidate in (new version, guardrail reset) or records the refusal or
   the crash, with the evidence; the policy in service changes only there.

:meth:`policy` is the live :class:`~thrifty.policy.cascade.CascadePolicy`: the policy in service with
the guardrail's offset on its thresholds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from thrifty.calibration.audit_sampling import ipw_weights
from thrifty.calibration.audit_types import AuditOutcome
from thrifty.calibration.guardrail import Guardrail, GuardrailConfig
from thrifty.calibration.refit import RefitResult, RefitSettings, ServingPolicy, audits_table, refit
from thrifty.data.table import RoutingTable
from thrifty.policy.cascade import CascadePolicy

__all__ = ["LoopConfig", "LoopEvent", "RefitJob", "LearningLoop", "run_refit"]


@dataclass(frozen=True)
class LoopConfig:
    """``[profiles.NAME.refit]``: refit every ``every`` new audits; ``target`` (share of answers at
    least as good as the reference) for the guardrail and the refit's point; ``budget`` (mean USD
    per request) if the refit should pick by budget instead."""

    every: int = 200
    target: float | None = 0.95
    budget: float | None = None
    folds: int = 3
    min_gain: float = 0.01
    share_z: float = 1.0  # refit picks: the share's one-sided lower bound at this z must reach the target
    seed: int = 0
    guardrail: GuardrailConfig | None = None  # None: the defaults at ``target``

    def guardrail_config(self) -> GuardrailConfig:
        from dataclasses import replace

        return replace(self.guardrail or GuardrailConfig(), target=self.target)

    def refit_settings(self) -> RefitSettings:
        return RefitSettings(target=self.target, budget=self.budget, folds=self.folds, min_gain=self.min_gain, share_z=self.share_z)


@dataclass(frozen=True)
class LoopEvent:
    """One thing the loop did: ``swap``, ``refuse``, ``refit_failed`` or ``guardrail``."""

    kind: str
    audits: int  # audits seen when it happened
    version: int  # the version in service after it
    evidence: dict[str, Any]
    created: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "audits": self.audits, "version": self.version, "evidence": self.evidence}


@dataclass(frozen=True)
class RefitJob:
    """A snapshot to refit on, detached from the loop (safe to run in another thread)."""

    number: int
    table: RoutingTable
    good: np.ndarray
    serving: ServingPolicy
    offset: float
    settings: RefitSettings
    seed: int
    weights: np.ndarray | None = None  # inverse-probability weights of non-uniformly sampled audits


def run_refit(job: RefitJob) -> RefitResult:
    """Fit + validate (pure CPU; never raises: a crash comes back as ``RefitResult.error``)."""
    return refit(job.table, job.good, job.serving, job.offset, job.settings, job.seed, job.weights)


class LearningLoop:
    """The loop's state for one profile (see the module docstring)."""

    def __init__(self, profile: str, tiers: tuple[str, ...], config: LoopConfig, serving: ServingPolicy) -> None:
        if config.every < 1:
            raise ValueError("every must be >= 1")
        self.profile = profile
        self.tiers = tuple(tiers)
        self.config = config
        self.serving = serving
        self.guardrail = Guardrail(config.guardrail_config())
        self.audits: list[tuple[AuditOutcome, str | None]] = []
        self.since_refit = 0
        self.refits = 0
        self.events: list[LoopEvent] = []

    @property
    def offset(self) -> float:
        return self.guardrail.offset

    def policy(self) -> CascadePolicy:
        """The live policy: the one in service with the guardrail's offset."""
        return self.serving.policy(self.guardrail.offset)

    def observe(self, outcome: AuditOutcome, prompt: str | None = None) -> LoopEvent | None:
        """Record one audit; a guardrail move comes back as an event (also kept in :attr:`events`)."""
        self.audits.append((outcome, prompt))
        self.since_refit += 1
        served = outcome.answers.get(outcome.served_model) if outcome.served_model else None
        if served is None or served.at_least_as_good is None:
            return None
        weight = 1.0 / outcome.sample_prob if outcome.sample_prob else 1.0
        move = self.guardrail.observe(bool(served.at_least_as_good), weight)
        if move is None:
            return None
        return self._log("guardrail", move.to_json() | {"thresholds": [round(t, 6) for t in self.policy().thresholds]})

    @property
    def refit_due(self) -> bool:
        return self.since_refit >= self.config.every

    def begin_refit(self) -> RefitJob:
        """The snapshot to refit on; resets the "new audits" counter."""
        table, good = audits_table(self.audits, self.tiers)
        self.since_refit = 0
        self.refits += 1
        weights = ipw_weights([o.sample_prob for o, _ in self.audits])
        return RefitJob(
            self.refits,
            table,
            good,
            self.serving,
            self.guardrail.offset,
            self.config.refit_settings(),
            self.config.seed + self.refits,
            weights,
        )

    def apply(self, job: RefitJob, result: RefitResult) -> LoopEvent:
        """Swap the candidate in, or record the refusal / the crash; returns the event."""
        evidence = dict(result.evidence) | {"refit": job.number, "audits": job.table.n_prompts}
        if result.error is not None:
            return self._log("refit_failed", evidence | {"error": result.error})
        if not result.swap or result.candidate is None:
            return self._log("refuse", evidence)
        from dataclasses import replace

        self.serving = replace(result.candidate, version=self.serving.version + 1)
        self.guardrail.reset()
        return self._log("swap", evidence | {"version": self.serving.version})

    def _log(self, kind: str, evidence: dict[str, Any]) -> LoopEvent:
        event = LoopEvent(kind, len(self.audits), self.serving.version, evidence)
        self.events.append(event)
        return event
