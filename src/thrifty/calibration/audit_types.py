"""What one sampled audit found: the shared record of the live learning loop.

The gateway's audit worker builds these from the log store; ``thrifty simulate`` builds them from a
routing table. Both feed the same :mod:`thrifty.calibration` loop, so offline replays predict what
the gateway does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

__all__ = ["TierVerdict", "AuditOutcome"]


@dataclass(frozen=True)
class TierVerdict:
    """One tier's answer to an audited request, judged against the reference answer."""

    model: str
    quality: float | None  # judged quality in [0, 1]; None when the call or the judge failed
    at_least_as_good: bool | None  # judged at least as good as the reference; None: failed
    cost_usd: float = 0.0
    output: str | None = None
    reused: bool = False  # produced while serving (not paid again by the audit)


@dataclass(frozen=True)
class AuditOutcome:
    """Every tier's verdict for one audited request, plus what serving it cost."""

    request_id: str
    profile: str
    created: float  # unix time the request arrived
    served_model: str | None  # who answered the client (None: nobody)
    served_cost_usd: float  # what serving the request cost
    reference: str  # the reference model's name
    answers: Mapping[str, TierVerdict] = field(default_factory=dict)  # model -> verdict
    audit_cost_usd: float = 0.0  # what the audit itself paid (kept apart from serving)
    sample_prob: float | None = None  # its audit probability when sampling was not uniform (weight 1/p)
