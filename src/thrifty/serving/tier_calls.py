"""Calling one tier for the engine: THE retry/deadline loop, capability checks, and the live stream.

:class:`TierCaller` answers "call tier k for this request" — buffered (``call``) or streamed live
(``attempt`` with ``stream=…``) — retrying retryable failures with exponential backoff (honouring
``retry_after``) inside the request's deadline. Before a provider is called it enforces the tier's
capabilities (images need ``vision``; a ``tool_choice`` that demands a tool call needs ``tools``);
a returned tool call that does not validate against its declared JSON schema is a failed answer.

Only known upstream failures (see :func:`thrifty.serving.providers._errors.known_failure`) become a
:class:`ProviderError`; any other exception raised by a provider is a bug and propagates. Which tier
to call next, and what to do with the answer, is the policy's business (:mod:`thrifty.serving.engine`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import KW_ONLY, dataclass
from typing import Any, AsyncGenerator, Mapping

from thrifty.errors import ConfigError, ProviderError
from thrifty.serving.aio import aclose_quietly, within
from thrifty.serving.providers._errors import known_failure
from thrifty.serving.providers.base import ProviderInfo, stream_of
from thrifty.serving.toolcheck import tool_call_problem
from thrifty.serving.trace import Routed, StreamEvent, TextDelta
from thrifty.types import ChatRequest, Completion, Provider

__all__ = ["Attempts", "TierCaller"]


class Attempts:
    """Per-request bookkeeping: calls made and time spent per tier, completions received."""

    def __init__(self) -> None:
        self.calls: dict[int, int] = {}
        self.seconds: dict[int, float] = {}
        self.answers: list[tuple[int, Completion]] = []
        self.deadline_hit = False


@dataclass(frozen=True)
class TierCaller:
    """Calls tier k's provider (``providers[k]``, capability flags ``flags[k]``) for the engine."""

    tiers: tuple[str, ...]
    providers: tuple[Provider, ...]
    flags: tuple[ProviderInfo, ...]
    _: KW_ONLY
    deadline_s: float
    max_retries: int
    backoff_s: float

    def _precheck(self, k: int, request: ChatRequest) -> ProviderError | None:
        flags = self.flags[k]
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
            return ProviderError(f"invalid tool call: {problem}", provider=self.flags[k].name, status=502)
        return None

    def _delay(self, err: ProviderError, attempt: int) -> float:
        return float(max(err.retry_after or 0.0, self.backoff_s * (2**attempt)))

    def _deadline_error(self, k: int, att: Attempts) -> ProviderError:
        att.deadline_hit = True
        return ProviderError(f"deadline of {self.deadline_s:g}s exceeded", provider=self.flags[k].name, status=504)

    def _upstream_error(self, exc: Exception, k: int, deadline: float, att: Attempts) -> ProviderError:
        """A failed attempt as a ProviderError; a bug (not a known upstream failure) propagates."""
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) and time.monotonic() >= deadline - 1e-3:
            return self._deadline_error(k, att)
        err = known_failure(exc, self.flags[k].name)
        if err is None:
            raise exc  # a bug in an adapter: the gateway answers 500 (with the request id) and logs the traceback
        return err

    async def call(self, k: int, request: ChatRequest, deadline: float, att: Attempts) -> Completion | ProviderError:
        """Tier k's answer (buffered), with retries inside the deadline, or the error that ended the attempts."""
        out: dict[str, Any] = {}
        async for _ in self.attempt(k, request, deadline, att, out, None):
            pass  # buffered: nothing is yielded
        result: Completion | ProviderError = out["result"]
        return result

    async def attempt(
        self,
        k: int,
        request: ChatRequest,
        deadline: float,
        att: Attempts,
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
                            raise ProviderError("stream ended without a final answer", provider=self.flags[k].name, status=502)
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
        att: Attempts,
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
