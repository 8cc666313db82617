"""The engine: drives a sans-I/O policy live against real providers.

``Engine.run(request)`` walks ``policy.plan(request)``: for each ``Call(k)`` it calls tier k's
provider — retrying retryable failures with exponential backoff (honouring ``retry_after``), all
inside one deadline — and sends the Completion, or the final :class:`ProviderError`, back into the
plan; the policy decides whether to accept or escalate. The result is a :class:`Trace`.

Before a provider is called the engine also enforces capabilities: a request with image parts fails
fast on a tier not flagged ``vision``, one whose ``tool_choice`` demands a tool call on a tier not
flagged ``tools``; and a returned tool call that does not validate against
its declared JSON schema counts as a failed answer (so the cascade escalates).

``Engine.stream(request)`` yields :class:`Routed` (who answers, who was tried — before any text),
then :class:`TextDelta` events, then the :class:`Trace`. Every tier except the last is buffered with
``complete()`` and scored; the last tier is streamed live (buffered too when the cascade's
``select="best"`` may return an earlier answer). If the accepted answer was buffered its
text is replayed in chunks. A failure before the first token moves on like in ``run``; once text
has been sent, an upstream failure ends the stream with a :class:`ProviderError` (``partial=True``).

Only known upstream failures (timeouts, connection errors, HTTP errors, malformed answers: see
:func:`thrifty.serving.providers._errors.known_failure`) count as a failed tier; any other exception raised
by a provider is a bug and propagates (the gateway answers 500 with the request id and logs it).

If no tier produced an answer, ``ProviderError`` is raised: status 504 if the deadline ran out,
else 502 (or the tiers' common 4xx status); the failed :class:`Trace` is attached as ``.trace``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import Any, AsyncGenerator, AsyncIterator, Callable, Mapping

from thrifty.errors import ConfigError, ProviderError
from thrifty.serving.aio import aclose_quietly, within
from thrifty.serving.providers._errors import known_failure
from thrifty.serving.providers.base import info, stream_of
from thrifty.serving.toolcheck import tool_call_problem
from thrifty.serving.trace import Routed, StreamEvent, TextDelta, Trace, new_request_id
from thrifty.types import ChatRequest, Completion, Decision, Policy, Provider, Step

__all__ = ["Engine", "Trace", "Routed", "TextDelta", "StreamEvent", "aclose_quietly"]

_CHUNK_CHARS = 24  # replaying a buffered answer: about this many characters per delta


class _Attempts:
    """Per-request bookkeeping: calls made and time spent per tier, completions received."""

    def __init__(self) -> None:
        self.calls: dict[int, int] = {}
        self.seconds: dict[int, float] = {}
        self.answers: list[tuple[int, Completion]] = []
        self.deadline_hit = False


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
        self._info = tuple(info(p) for p in resolved)  # capability flags, read on every call
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
        # the last tier is streamed live unless the cascade may return an earlier, better-scored answer
        self._stream_last = getattr(getattr(policy, "cascade", policy), "select", "last") == "last"

    def __repr__(self) -> str:
        return f"Engine({self.name!r}, policy={self.policy!r})"

    # -- one tier ---------------------------------------------------------------------------------
    def _precheck(self, k: int, request: ChatRequest) -> ProviderError | None:
        flags = self._info[k]
        if request.has_images and not flags.vision:
            return ProviderError(f"tier {self.tiers[k]!r} cannot read images (not vision-capable)", provider=flags.name, status=400)
        forced = request.tool_choice == "required" or isinstance(request.tool_choice, Mapping)
        if request.tools and forced and not flags.tools:
            return ProviderError(
                f"tier {self.tiers[k]!r} cannot call tools, and tool_choice requires a tool call", provider=flags.name, status=400
            )
        return None

    def _check_answer(self, k: int, request: ChatRequest, completion: Completion) -> ProviderError | None:
        problem = tool_call_problem(request, completion) if request.tools else None
        if problem:
            return ProviderError(f"invalid tool call: {problem}", provider=self._info[k].name, status=502)
        return None

    def _delay(self, err: ProviderError, attempt: int) -> float:
        return float(max(err.retry_after or 0.0, self.backoff_s * (2**attempt)))

    def _deadline_error(self, k: int, att: _Attempts) -> ProviderError:
        att.deadline_hit = True
        return ProviderError(f"deadline of {self.deadline_s:g}s exceeded", provider=self._info[k].name, status=504)

    def _upstream_error(self, exc: Exception, k: int, deadline: float, att: _Attempts) -> ProviderError:
        """A failed attempt as a ProviderError; a bug (not a known upstream failure) propagates."""
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) and time.monotonic() >= deadline - 1e-3:
            return self._deadline_error(k, att)
        err = known_failure(exc, self._info[k].name)
        if err is None:
            raise exc  # a bug in an adapter: the gateway answers 500 (with the request id) and logs the traceback
        return err

    async def _call(self, k: int, request: ChatRequest, deadline: float, att: _Attempts) -> Completion | ProviderError:
        """Tier k's answer (buffered), with retries inside the deadline, or the error that ended the attempts."""
        out: dict[str, Any] = {}
        async for _ in self._attempt_tier(k, request, deadline, att, out, None):
            pass  # buffered: nothing is yielded
        result: Completion | ProviderError = out["result"]
        return result

    async def _attempt_tier(
        self,
        k: int,
        request: ChatRequest,
        deadline: float,
        att: _Attempts,
        live: dict[str, Any],
        stream: tuple[str, tuple[str, ...]] | None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """THE retry/deadline loop: call tier k until it answers, fails for good or time runs out;
        the outcome (Completion or ProviderError) is left in ``live["result"]``.

        ``stream=None``: one ``complete()`` per attempt. ``stream=(request_id, tiers tried)``: the tier
        is streamed live — Routed and TextDelta events are yielded, and once text has gone out a
        failure is final (``live["partial"]`` holds what was sent)."""
        pre = self._precheck(k, request)
        if pre is not None:
            live["result"] = pre
            return
        provider = self.providers[k]
        t0 = time.perf_counter()
        parts: list[str] = []
        try:
            for attempt in range(self.max_retries + 1):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    live["result"] = self._deadline_error(k, att)
                    return
                att.calls[k] = att.calls.get(k, 0) + 1
                try:
                    if stream is None:
                        final: Completion | None = await within(provider.complete(request), remaining)
                    else:
                        final = None
                        async with contextlib.aclosing(self._stream_once(k, request, deadline, att, stream, live, parts)) as events:
                            async for event in events:
                                if isinstance(event, Completion):
                                    final = event
                                else:
                                    yield event
                        if final is None:
                            raise ProviderError("stream ended without a final answer", provider=self._info[k].name, status=502)
                except ConfigError:
                    raise  # a misconfigured tier is the operator's problem, not a failed answer
                except Exception as exc:  # noqa: BLE001 - known upstream failures are data for the policy
                    err = self._upstream_error(exc, k, deadline, att)
                    if live.get("emitted"):
                        live["partial"] = Completion(text="".join(parts), model=self.tiers[k], finish_reason="error")
                        live["result"] = err
                        return
                    delay = self._delay(err, attempt)
                    if not err.retryable or attempt == self.max_retries or time.monotonic() + delay >= deadline:
                        live["result"] = err
                        return
                    await asyncio.sleep(delay)
                    continue
                assert final is not None
                att.answers.append((k, final))
                live["completion"] = final
                live["result"] = (None if live.get("emitted") else self._check_answer(k, request, final)) or final
                return
        finally:
            att.seconds[k] = att.seconds.get(k, 0.0) + time.perf_counter() - t0

    async def _stream_once(
        self,
        k: int,
        request: ChatRequest,
        deadline: float,
        att: _Attempts,
        stream: tuple[str, tuple[str, ...]],
        live: dict[str, Any],
        parts: list[str],
    ) -> AsyncGenerator[StreamEvent | Completion, None]:
        """One streamed attempt: Routed before the first text, TextDelta per chunk, the final Completion."""
        rid, tried = stream
        items = stream_of(self.providers[k], request).__aiter__()
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise asyncio.TimeoutError()
                try:
                    item = await within(items.__anext__(), remaining)
                except StopAsyncIteration:
                    return
                if isinstance(item, Completion):
                    yield item
                elif item:
                    if not live.get("emitted"):
                        live.update(emitted=True, tier=k)
                        yield Routed(rid, self.tiers[k], k, tried, sum(c.cost_usd for _, c in att.answers))
                    parts.append(item)
                    yield TextDelta(item)
        finally:
            await aclose_quietly(items)

    # -- whole request ----------------------------------------------------------------------------
    def _trace(
        self,
        request: ChatRequest,
        rid: str,
        decision: Decision,
        att: _Attempts,
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

    def _failure(self, trace: Trace, att: _Attempts, raised: list[ProviderError]) -> ProviderError:
        errors = [f"{s.model}: {s.error}" for s in trace.steps if s.error]
        statuses = {e.status for e in raised}
        if att.deadline_hit or statuses == {504}:  # out of time, or every attempt timed out
            status = 504
        elif len(statuses) == 1 and (only := next(iter(statuses))) is not None and 400 <= only < 500:
            status = only
        else:
            status = 502
        err = ProviderError("no tier produced an answer: " + ("; ".join(errors) or "no tier was called"), provider=self.name, status=status)
        err.trace = trace  # type: ignore[attr-defined]
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
        att = _Attempts()
        errors: list[ProviderError] = []
        plan = self.policy.plan(request)
        try:
            call = await self._step(plan, None, first=True)
            while True:
                result = await self._call(call.tier, request, deadline, att)
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
        att = _Attempts()
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
                    async with contextlib.aclosing(self._attempt_tier(k, request, deadline, att, live, (rid, tuple(tried)))) as events:
                        async for event in events:
                            yield event
                    result = live.pop("result")
                else:
                    result = await self._call(k, request, deadline, att)
                if isinstance(result, ProviderError):
                    errors.append(result)
                    if live.get("emitted") and live.get("tier") == k:  # died mid-stream
                        decision = Decision(k, None, _final_steps(plan, result))
                        trace = self._trace(request, rid, decision, att, started, completion=live.get("partial"), streamed=True)
                        result.partial = True  # type: ignore[attr-defined]
                        result.trace = trace  # type: ignore[attr-defined]
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
