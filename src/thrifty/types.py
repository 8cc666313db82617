"""Plain data shared by every layer: requests, completions, and the sans-I/O policy protocol.

No I/O here. A policy never calls a model itself: its ``plan()`` generator *yields* ``Call(tier)``,
is *sent* the resulting :class:`Completion` (or the :class:`~thrifty.errors.ProviderError` that
call raised), and finally *returns* a :class:`Decision`. The live engine (gateway, CLI) and the
offline replay (recorded answers from a routing table) drive the very same generator, so offline
numbers predict online behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generator, Mapping, Protocol, Sequence, Union, runtime_checkable

__all__ = [
    "ChatRequest",
    "Usage",
    "Completion",
    "Call",
    "Step",
    "Decision",
    "Plan",
    "Policy",
    "Scorer",
    "Provider",
    "message_text",
]


def message_text(content: Any) -> str:
    """Text of an OpenAI message ``content``: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return str(content)


@dataclass(frozen=True)
class ChatRequest:
    """An OpenAI-style chat request, already validated. ``messages`` are OpenAI message dicts."""

    messages: tuple[Mapping[str, Any], ...]
    model: str = "thrifty/default"
    params: Mapping[str, Any] = field(default_factory=dict)  # temperature, max_tokens, top_p, stop, seed, …
    tools: tuple[Mapping[str, Any], ...] | None = None
    tool_choice: Any = None
    stream: bool = False

    @property
    def prompt_text(self) -> str:
        """The last user message's text: what scorers and routers look at."""
        for msg in reversed(self.messages):
            if msg.get("role") == "user":
                return message_text(msg.get("content"))
        return ""

    @property
    def has_images(self) -> bool:
        for msg in self.messages:
            content = msg.get("content")
            if isinstance(content, (list, tuple)) and any(
                isinstance(p, Mapping) and p.get("type") in ("image_url", "input_image", "image") for p in content
            ):
                return True
        return False

    @classmethod
    def from_prompt(cls, prompt: str, model: str = "thrifty/default", **params: Any) -> "ChatRequest":
        return cls(messages=({"role": "user", "content": prompt},), model=model, params=params)


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0  # every prompt token, cache reads and writes included
    output_tokens: int = 0
    #: the upstream reported no usage: the counts are estimates (≈ 4 characters per token)
    estimated: bool = False
    cache_read_tokens: int = 0  # of input_tokens: read from the upstream's prompt cache (cheaper)
    cache_write_tokens: int = 0  # of input_tokens: written to the upstream's prompt cache (dearer)


@dataclass(frozen=True)
class Completion:
    """One model's answer. ``cost_usd`` is what this single call cost (0 for a cache hit)."""

    text: str
    model: str
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    latency_s: float = 0.0
    finish_reason: str = "stop"
    tool_calls: tuple[Mapping[str, Any], ...] | None = None
    raw: Any = field(default=None, compare=False, repr=False)
    cache: str | None = None  # "hit" | "semantic" | "miss" | "bypass" when a cache answered/was asked; None: no cache
    #: set by prompt adaptation (:mod:`thrifty.serving.adapted_provider`): {"shots", "stripped", "tokens_saved", "layout"}; None: not adapted
    adaptation: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Call:
    """Instruction from a policy: call tier ``tier`` (an index into the policy's tiers)."""

    tier: int


@dataclass(frozen=True)
class Step:
    """What happened at one tier: its score, whether it was accepted, or the error it raised."""

    tier: int
    model: str
    score: float | None = None
    threshold: float | None = None
    accepted: bool = False
    cost_usd: float = 0.0
    latency_s: float = 0.0
    error: str | None = None

    @property
    def decision(self) -> str:
        """``failed`` (the call raised), ``accepted`` or ``escalated``."""
        return "failed" if self.error else ("accepted" if self.accepted else "escalated")


@dataclass(frozen=True)
class Decision:
    """The policy's final word: which tier's answer to return, plus the trace of every step."""

    tier: int
    completion: Completion | None
    steps: tuple[Step, ...] = ()

    @property
    def cost_usd(self) -> float:
        return sum(s.cost_usd for s in self.steps)


# A plan yields Calls, is sent each call's Completion (or the exception it raised), returns a Decision.
Plan = Generator[Call, Union[Completion, BaseException], Decision]


@runtime_checkable
class Policy(Protocol):
    tiers: Sequence[str]
    #: True when ``plan()`` steps do CPU work (a router embedding the query): the engine then advances
    #: the plan in a worker thread so the event loop keeps serving other requests
    blocking: bool

    def plan(self, request: ChatRequest) -> Plan: ...


@runtime_checkable
class Scorer(Protocol):
    """P(answer good enough) or expected quality, in [0, 1]. ``completion`` is None for query-only scorers."""

    def score(self, request: ChatRequest, completion: Completion | None, model: str) -> float: ...


@runtime_checkable
class Provider(Protocol):
    name: str

    async def complete(self, request: ChatRequest) -> Completion: ...
