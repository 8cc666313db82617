"""What an audit needs from the running gateway: the tiers and the judge as they serve now, the
request and answers an audit row holds, and the audit budget's period.

Kept apart from the worker (:mod:`thrifty.gateway.audits`): these are small, stateless pieces.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Mapping

from thrifty.calibration.audit import JUDGE_MAX_TOKENS, TierAnswer
from thrifty.calibration.collect import complete_with_retries
from thrifty.errors import ProviderError
from thrifty.types import ChatRequest, Completion

__all__ = ["period_start", "period_key", "dearest_tier", "provider_for", "call_tier", "judge_asker", "answers_at_hand", "audit_request"]


def period_start(period: str, now: float) -> float | None:
    """Unix time the budget period containing ``now`` began (UTC); None for ``total``."""
    if period == "total":
        return None
    t = datetime.fromtimestamp(now, tz=timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        t = t.replace(day=1)
    return t.timestamp()


def period_key(period: str, now: float) -> str:
    """A name for the budget period containing ``now`` (``total``, ``day:<start>``, ``month:<start>``)."""
    start = period_start(period, now)
    return "total" if start is None else f"{period}:{start:.0f}"


def dearest_tier(tiers: tuple[str, ...], providers: Mapping[str, Any]) -> str:
    """The tier with the highest (output, input) price; ties and unknown prices: the later tier."""

    def price(i: int) -> tuple[float, float, int]:
        p = providers.get(tiers[i])
        return (getattr(p, "price_out", None) or 0.0, getattr(p, "price_in", None) or 0.0, i)

    return tiers[max(range(len(tiers)), key=price)]


def provider_for(rt: Any, profile: str, model: str) -> Any:
    """Tier ``model`` as ``profile`` serves it now (its cache / prompt adaptation), else the bare provider."""
    route = rt.routes.get(f"thrifty/{profile}")
    tiers = getattr(getattr(route, "engine", None), "tiers", ())
    if model in tiers:
        return route.engine.providers[tiers.index(model)]
    provider = rt.providers.get(model)
    if provider is None:
        raise ProviderError("no such provider in the running config", provider=model, status=502)
    return provider


async def call_tier(rt: Any, profile: str, model: str, request: ChatRequest) -> Completion:
    """One tier's answer to the audited request (one retry, inside the server's request timeout)."""

    return await complete_with_retries(
        provider_for(rt, profile, model), request, retries=1, deadline_s=rt.settings.server.request_timeout_s
    )


def judge_asker(rt: Any, judge: str) -> Callable[[str], Awaitable[Completion]]:
    """``ask(rubric text) -> Completion`` from the LLM judge: a provider, else a profile's engine."""

    async def ask(text: str) -> Completion:

        provider = rt.providers.get(judge)
        if provider is None:
            route = rt.routes.get(f"thrifty/{judge.removeprefix('thrifty/')}")
            if route is None:
                raise ProviderError("the judge is not in the running config", provider=judge, status=502)
            provider = route.engine
        req = ChatRequest.from_prompt(text, model=judge, temperature=0.0, max_tokens=JUDGE_MAX_TOKENS)
        return await complete_with_retries(provider, req, retries=1, deadline_s=rt.settings.server.request_timeout_s)

    return ask


def answers_at_hand(row: Mapping[str, Any]) -> dict[str, TierAnswer]:
    """The answers an audit need not pay for again: the cascade's own (``reused``), then those an
    earlier, interrupted run saved (:func:`thrifty.store.audits.load_audit`'s ``steps`` / ``answers``)."""
    tiers, reference = tuple(row["tiers"]), row["reference"]
    have: dict[str, TierAnswer] = {}
    for s in row["steps"]:
        m = s["model"]
        if m in tiers or m == reference:
            have.setdefault(
                m,
                TierAnswer(
                    m,
                    tiers.index(m) if m in tiers else -1,
                    s["answer"],
                    float(s["cost_usd"] or 0.0),
                    s["input_tokens"],
                    s["output_tokens"],
                    reused=True,
                ),
            )
    for x in row["answers"]:
        if x["error"] is None and x["answer"] is not None:
            have.setdefault(
                x["model"],
                TierAnswer(
                    x["model"],
                    x["tier"],
                    x["answer"],
                    float(x["cost_usd"]),
                    x["input_tokens"],
                    x["output_tokens"],
                    reused=bool(x["reused"]),
                ),
            )
    return have


def audit_request(row: Mapping[str, Any]) -> ChatRequest:
    """The request exactly as the profile's tiers were asked it (system prompt and max_tokens applied)."""
    r = row["request"]
    return ChatRequest(
        messages=tuple(r["messages"]),
        model=f"thrifty/{row['profile']}",
        params=r.get("params") or {},
        tools=tuple(r["tools"]) if r.get("tools") else None,
        tool_choice=r.get("tool_choice"),
    )
