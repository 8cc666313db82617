"""What the engine reports about one request: every tier tried, its score, cost, latency, error.

A :class:`Trace` is what the log store records and what the gateway turns into headers
(``x-thrifty-model`` = :attr:`Trace.model`, ``x-thrifty-tiers`` = :attr:`Trace.tiers_tried`,
``x-thrifty-cost-usd`` = :attr:`Trace.cost_usd`, ``x-thrifty-request-id`` = :attr:`Trace.request_id`).
:class:`Routed` and :class:`TextDelta` are the other events of :meth:`thrifty.serving.engine.Engine.stream`.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any, Union

from thrifty.types import Completion, Decision, Step

__all__ = ["Trace", "Routed", "TextDelta", "StreamEvent", "new_request_id"]


_ids: list[tuple[str, "itertools.count[int]"]] = []  # (random per-process prefix, counter); made on first use


def _reset_ids() -> None:
    _ids.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_ids)  # a forked worker gets its own prefix


def new_request_id() -> str:
    """``req_`` + 24 hex digits: 12 random per process, then a counter — unique across processes and
    restarts, without a uuid4 (an ``os.urandom`` system call) per request."""
    if not _ids:
        _ids.append((os.urandom(6).hex(), itertools.count(1)))
    prefix, counter = _ids[0]
    return f"req_{prefix}{next(counter):012x}"


@dataclass(frozen=True)
class Trace:
    """One request through a policy.

    ``steps`` are the policy's steps in call order (a failed tier has ``error`` set; its
    ``latency_s`` is the engine's measurement including retries). ``answers`` holds every
    completion received, as ``(tier, Completion)`` pairs, rejected ones included. ``completion`` is
    the answer the client received (``None`` only on a trace attached to a failure).
    ``started_at`` / ``ended_at`` are Unix times in seconds.
    """

    request_id: str
    profile: str
    tiers: tuple[str, ...]
    decision: Decision
    completion: Completion | None
    steps: tuple[Step, ...]
    answers: tuple[tuple[int, Completion], ...]
    started_at: float
    ended_at: float
    attempts: tuple[tuple[int, int], ...] = ()  # (tier, number of calls made incl. retries)
    streamed: bool = False

    @property
    def tier(self) -> int:
        """Index of the tier whose answer was returned (-1 if none)."""
        return self.decision.tier

    @property
    def model(self) -> str | None:
        """Name of the tier that answered."""
        return self.tiers[self.tier] if 0 <= self.tier < len(self.tiers) else None

    @property
    def tiers_tried(self) -> tuple[str, ...]:
        return tuple(s.model for s in self.steps)

    @property
    def cost_usd(self) -> float:
        """Total cost of every call made for this request (rejected answers included)."""
        return sum(s.cost_usd for s in self.steps)

    @property
    def latency_s(self) -> float:
        return max(0.0, self.ended_at - self.started_at)

    @property
    def escalated(self) -> bool:
        return len(self.steps) > 1

    def answer_for(self, tier: int) -> Completion | None:
        for k, completion in self.answers:
            if k == tier:
                return completion
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the CLI's ``--json`` output)."""
        c = self.completion
        return {
            "request_id": self.request_id,
            "profile": self.profile,
            "model": self.model,
            "tier": self.tier,
            "tiers_tried": list(self.tiers_tried),
            "answer": c.text if c else None,
            "tool_calls": list(c.tool_calls) if c and c.tool_calls else None,
            "finish_reason": c.finish_reason if c else None,
            "usage": {"input_tokens": c.usage.input_tokens, "output_tokens": c.usage.output_tokens} if c else None,
            "cost_usd": self.cost_usd,
            "latency_s": self.latency_s,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "streamed": self.streamed,
            "steps": [
                {
                    "tier": s.tier,
                    "model": s.model,
                    "score": s.score,
                    "threshold": s.threshold,
                    "accepted": s.accepted,
                    "cost_usd": s.cost_usd,
                    "latency_s": s.latency_s,
                    "error": s.error,
                    "output_tokens": (a.usage.output_tokens if (a := self.answer_for(s.tier)) else None),
                }
                for s in self.steps
            ],
        }


@dataclass(frozen=True)
class Routed:
    """First event of a stream: who answers and who was tried — sent before any text."""

    request_id: str
    model: str
    tier: int
    tiers_tried: tuple[str, ...]
    cost_usd: float = 0.0  # spent on answers received so far (the live-streamed tier's own cost comes later)


@dataclass(frozen=True)
class TextDelta:
    text: str


StreamEvent = Union[Routed, TextDelta, Trace]
