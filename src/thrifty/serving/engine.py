"""The engine: drives a sans-I/O policy live against real providers.

``Engine.run(request)`` walks ``policy.plan(request)``: for each ``Call(k)`` it has tier k answered
(:class:`thrifty.serving.tier_calls.TierCaller`: retries with backoff inside one deadline,
capability checks, tool-call validation) and sends the Completion, or the final
:class:`ProviderError`, back into the plan; the policy decides whether to accept or escalate. The
result is a :class:`Trace`.

``Engine.stream(request)`` yields :class:`Routed` (who answers, who was tried — before any text),
then :class:`TextDelta` events, then the :class:`Trace`. Every tier except the last is buffered with
``complete()`` and scored; the last tier is streamed live (buffered too when the cascade's
``select="best"`` may return an earlier answer). If the accepted answer was buffered its
text is replayed in chunks. A failure before the first token moves on like in ``run``; once text
has been sent, an upstream failure ends the stream with a :class:`ProviderError` (``partial=True``).

Only known upstream failures count as a failed tier; any other exception raised by a provider is a
bug and propagates (the gateway answers 500 with the request id and logs it).

If no tier produced an answer, ``ProviderError`` is raised: status 504 if the deadline ran out,
else 502 (or the tiers' common 4xx status); the failed :class:`Trace` is attached as ``.trace``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import Any, AsyncIterator, Callable, Mapping

from thrifty.errors import ConfigError, ProviderError
from thrifty.serving.aio import aclose_quietly
from thrifty.serving.providers.base import info
from thrifty.serving.tier_calls import Attempts, TierCaller
from thrifty.serving.trace import Routed, StreamEvent, TextDelta, Trace, new_request_id
from thrifty.types import ChatRequest, Completion, Decision, Policy, Provider, Step

__all__ = ["Engine", "Trace", "Routed", "TextDelta", "StreamEvent", "aclose_quietly"]

_CHUNK_CHARS = 24  # replaying a buffered answer: about this many characters per delta


class Engine:
    """Runs ``policy`` with ``providers`` (keyed by tier index or tier name)."""

    def __init__(
        self,
        policy: Policy,
        providers: Mapping[int | str, Provider],
        *,
        deadline_s: float = 60.0,
        max_retries: int = 2,
        backoff_s: float = 0.2,
        name: str | None = None,
    ) -> None:
        self.policy = policy
        self.tiers: tuple[str, ...] = tuple(policy.tiers)
        resolved: list[Provider] = []
        for k, tier in enumerate(self.tiers):
            provider = providers.get(k, providers.get(tier))
            if provider is None:
                raise ConfigError(f"no provider for tier {k} ({tier!r})", key=f"tiers[{k}]", fix="configure a provider for every tier")
            resolved.append(provider)
        self.providers: tuple[Provider, ...] = tuple(resolved)
        if deadline_s <= 0 or max_retries < 0 or backoff_s < 0:
            raise ConfigError("deadline_s must be > 0, max_retries and backoff_s >= 0", key="deadline_s")
        self.deadline_s = float(deadline_s)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.name = name or "thrifty/default"
        blocking = getattr(policy, "blocking", None)  # declared by the Policy protocol; checked once, here
        if not isinstance(blocking, bool):
            raise ConfigError(
                f"policy {policy!r} does not declare blocking (True/False)",
                key="policy",
                fix="set a boolean `blocking` attribute: True if plan() steps do CPU work (e.g. embedding)",
            )
        self._blocking = blocking
        flags = tuple(info(p) for p in resolved)  # capability flags, read on every call
        self._tier = TierCaller(
            self.tiers, self.providers, flags, deadline_s=self.deadline_s, max_retries=self.max_retries, backoff_s=self.backoff_s
        )
        # the last tier is streamed live unless the cascade may return an earlier, better-scored answer
        self._stream_last = getattr(getattr(policy, "cascade", policy), "select", "last") == "last"

    def __repr__(self) -> str:
        return f"Engine({self.name!r}, policy={self.policy!r})"

    # -- whole request ----------------------------------------------------------------------------
    def _trace(
        self,
        request: ChatRequest,
        rid: str,
        decision: Decision,
        att: Attempts,
        started: float,
        completion: Completion | None = None,
        streamed: bool = False,
    ) -> Trace:
        steps = tuple(dataclasses.replace(s, latency_s=att.seconds.get(s.tier, s.latency_s)) if s.error else s for s in decision.steps)
        return Trace(
            request_id=rid,
            profile=request.model or self.name,
            tiers=self.tiers,
            decision=decision,
            completion=completion if completion is not None else decision.completion,
            steps=steps,
            answers=tuple(att.answers),
            started_at=started,
            ended_at=time.time(),
            attempts=tuple(sorted(att.calls.items())),
            streamed=streamed,
        )

    def _failure(self, trace: Trace, att: Attempts, raised: list[ProviderError]) -> ProviderError:
        errors = [f"{s.model}: {s.error}" for s in trace.steps if s.error]
        statuses = {e.status for e in raised}
        if att.deadline_hit or statuses == {504}:  # out of time, or every attempt timed out
            status = 504
        elif len(statuses) == 1 and (only := next(iter(statuses))) is not None and 400 <= only < 500:
            status = only
        else:
            status = 502
        err = ProviderError("no tier produced an answer: " + ("; ".join(errors) or "no tier was called"), provider=self.name, status=status)
        err.trace = trace
        return err

    async def _step(self, plan: Any, value: Any, *, first: bool = False) -> Any:
        """Advance the plan. Policies flagged ``blocking`` (a router embedding the query, say) run
        their step in a worker thread so the event loop keeps serving other requests."""
        advance: Callable[[], Any] = (lambda: next(plan)) if first else (lambda: plan.send(value))

        def guarded() -> tuple[bool, Any]:  # StopIteration cannot leave a coroutine or cross a Future
            try:
                return False, advance()
            except StopIteration as stop:
                return True, stop.value

        done, out = await asyncio.to_thread(guarded) if self._blocking else guarded()
        if done:
            raise _PlanDone(out)
        return out

    async def run(self, request: ChatRequest, *, request_id: str | None = None) -> Trace:
        """Drive the policy to a decision; raise ProviderError (502/504) if no tier answered."""
        rid = request_id or new_request_id()
        started, deadline = time.time(), time.monotonic() + self.deadline_s
        att = Attempts()
        errors: list[ProviderError] = []
        plan = self.policy.plan(request)
        try:
            call = await self._step(plan, None, first=True)
            while True:
                result = await self._tier.call(call.tier, request, deadline, att)
                if isinstance(result, ProviderError):
                    errors.append(result)
                call = await self._step(plan, result)
        except _PlanDone as stop:
            decision: Decision = stop.value
        trace = self._trace(request, rid, decision, att, started)
        if decision.completion is None:
            raise self._failure(trace, att, errors)
        return trace

    async def complete(self, request: ChatRequest) -> Completion:
        """The engine as a Provider: the answer, costed at the whole cascade's cost."""
        trace = await self.run(request)
        assert trace.completion is not None
        return dataclasses.replace(trace.completion, cost_usd=trace.cost_usd, latency_s=trace.latency_s)

    def complete_sync(self, request: ChatRequest, *, request_id: str | None = None) -> Trace:
        """Synchronous façade (CLI, scripts): ``run`` in a fresh event loop, then release HTTP clients."""

        async def go() -> Trace:
            try:
                return await self.run(request, request_id=request_id)
            finally:
                await self.aclose()

        return asyncio.run(go())

    async def aclose(self) -> None:
        """Release provider resources (HTTP connection pools); loaded local models stay loaded."""
        for provider in self.providers:
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()

    # -- streaming --------------------------------------------------------------------------------
    async def stream(self, request: ChatRequest, *, request_id: str | None = None) -> AsyncIterator[StreamEvent]:
        """Yield Routed, then TextDelta…, then the Trace (see the module docstring)."""
        rid = request_id or new_request_id()
        started, deadline = time.time(), time.monotonic() + self.deadline_s
        att = Attempts()
        errors: list[ProviderError] = []
        last = len(self.tiers) - 1
        tried: list[str] = []
        live: dict[str, Any] = {}  # the live-streamed tier: "tier", "completion", "emitted"
        plan = self.policy.plan(request)
        try:
            call = await self._step(plan, None, first=True)
            while True:
                k = call.tier
                tried.append(self.tiers[k])
                if live.get("emitted"):  # text already went out: no further tier can be used
                    result: Completion | ProviderError = ProviderError("stream already committed to another tier", provider=self.name)
                elif k == last and self._stream_last:
                    async with contextlib.aclosing(self._tier.attempt(k, request, deadline, att, live, (rid, tuple(tried)))) as events:
                        async for event in events:
                            yield event
                    result = live.pop("result")
                else:
                    result = await self._tier.call(k, request, deadline, att)
                if isinstance(result, ProviderError):
                    errors.append(result)
                    if live.get("emitted") and live.get("tier") == k:  # died mid-stream
                        decision = Decision(k, None, _final_steps(plan, result))
                        trace = self._trace(request, rid, decision, att, started, completion=live.get("partial"), streamed=True)
                        result.partial = True
                        result.trace = trace
                        raise result
                call = await self._step(plan, result)
        except _PlanDone as stop:
            decision = stop.value
        if live.get("emitted"):
            trace = self._trace(request, rid, decision, att, started, completion=live["completion"], streamed=True)
            yield trace
            return
        trace = self._trace(request, rid, decision, att, started)
        if trace.completion is None:
            raise self._failure(trace, att, errors)
        yield Routed(rid, self.tiers[decision.tier], decision.tier, trace.tiers_tried, trace.cost_usd)
        text = trace.completion.text
        for i in range(0, len(text), _CHUNK_CHARS):
            yield TextDelta(text[i : i + _CHUNK_CHARS])
        yield trace


class _PlanDone(Exception):
    """The plan returned its Decision (``value``)."""

    def __init__(self, value: Decision) -> None:
        super().__init__("plan finished")
        self.value = value


def _final_steps(plan: Any, error: ProviderError) -> tuple[Step, ...]:
    """The policy's steps after telling it ``error`` (the plan is closed if it wants to go on)."""
    try:
        plan.send(error)
    except StopIteration as stop:
        return tuple(stop.value.steps)
    plan.close()
    return ()
