"""Engine: drives the cascade live — retries, backoff, deadline, failover, streaming (fake providers)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from thrifty.errors import ConfigError, ProviderError
from thrifty.policy.cascade import CascadePolicy
from thrifty.serving.engine import Engine, Routed, TextDelta, Trace
from thrifty.types import ChatRequest, Completion, Usage


class FixedScorer:
    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores

    def score(self, request, completion, model):  # noqa: ANN001
        return self.scores[model]


class FakeProvider:
    """Answers ``text``; ``fail`` is a list of exceptions raised by the first calls, in order."""

    streams = True

    def __init__(self, name, text="an answer", *, fail=(), delay=0.0, cost=0.001, vision=False, tool_calls=None, die_after=None):
        self.name, self.model, self.text = name, name, text
        self.fail, self.delay, self.cost, self.vision = list(fail), delay, cost, vision
        self.tool_calls, self.die_after = tool_calls, die_after
        self.calls = self.stream_calls = 0
        self.call_times: list[float] = []

    def _answer(self) -> Completion:
        return Completion(self.text, self.name, Usage(5, 7), cost_usd=self.cost, latency_s=self.delay, tool_calls=self.tool_calls)

    async def complete(self, request):  # noqa: ANN001
        self.calls += 1
        self.call_times.append(time.monotonic())
        if self.fail:
            raise self.fail.pop(0)
        await asyncio.sleep(self.delay)
        return self._answer()

    async def stream(self, request):  # noqa: ANN001
        self.stream_calls += 1
        if self.fail:
            raise self.fail.pop(0)
        words = self.text.split(" ")
        for i, w in enumerate(words):
            if self.die_after is not None and i == self.die_after:
                raise httpx.RemoteProtocolError("peer closed connection")
            await asyncio.sleep(0)
            yield w if i == 0 else " " + w
        yield self._answer()


def cascade(threshold=0.5, **scores):
    return CascadePolicy(["small", "big"], [threshold], FixedScorer({"small": 0.0, "big": 1.0, **scores}))


REQ = ChatRequest.from_prompt("What is 2+2?")


def retryable(after=None, status=503):
    return ProviderError("busy", provider="x", status=status, retryable=True, retry_after=after)


def test_accepted_first_tier_stops_the_cascade():
    small, big = FakeProvider("small", "four"), FakeProvider("big", "4")
    trace = Engine(cascade(small=0.9), {0: small, 1: big}).complete_sync(REQ)
    assert trace.completion.text == "four" and trace.model == "small" and trace.tier == 0
    assert big.calls == 0 and trace.tiers_tried == ("small",)
    assert trace.steps[0].accepted and trace.steps[0].score == 0.9
    assert trace.ended_at >= trace.started_at and trace.request_id.startswith("req_")


def test_rejected_answer_escalates_and_costs_add_up():
    small, big = FakeProvider("small", "dunno", cost=0.001), FakeProvider("big", "4", cost=0.01)
    trace = Engine(cascade(small=0.2), {"small": small, "big": big}).complete_sync(REQ)  # keyed by tier name
    assert trace.model == "big" and trace.completion.text == "4"
    assert trace.tiers_tried == ("small", "big") and trace.escalated
    assert [s.accepted for s in trace.steps] == [False, True]
    assert trace.cost_usd == pytest.approx(0.011)
    assert trace.answer_for(0).text == "dunno"  # the rejected answer is kept for the log


def test_retries_a_retryable_failure_then_succeeds():
    small = FakeProvider("small", fail=[retryable(), retryable()])
    trace = Engine(cascade(small=0.9), {0: small, 1: FakeProvider("big")}, max_retries=2, backoff_s=0.01).complete_sync(REQ)
    assert small.calls == 3 and trace.model == "small"
    assert dict(trace.attempts)[0] == 3


def test_non_retryable_failure_is_not_retried_and_moves_to_next_tier():
    small = FakeProvider("small", fail=[ProviderError("bad request", provider="small", status=400, retryable=False)])
    big = FakeProvider("big", "4")
    trace = Engine(cascade(small=0.9), {0: small, 1: big}, backoff_s=0.01).complete_sync(REQ)
    assert small.calls == 1 and trace.model == "big"
    assert "bad request" in trace.steps[0].error and not trace.steps[0].accepted


def test_foreign_exceptions_are_translated_and_the_next_tier_answers():
    small = FakeProvider("small", fail=[httpx.ConnectError("refused")] * 3)
    big = FakeProvider("big", "4")
    trace = Engine(cascade(), {0: small, 1: big}, max_retries=2, backoff_s=0.001).complete_sync(REQ)
    assert small.calls == 3  # connection errors are retryable
    assert trace.model == "big" and "ProviderError" in trace.steps[0].error and "connection failed" in trace.steps[0].error


def test_backoff_is_exponential():
    small = FakeProvider("small", fail=[retryable(), retryable()])
    Engine(cascade(small=0.9), {0: small, 1: FakeProvider("big")}, max_retries=2, backoff_s=0.05).complete_sync(REQ)
    gaps = [b - a for a, b in zip(small.call_times, small.call_times[1:])]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.10
    assert gaps[1] < 0.5


def test_backoff_honours_retry_after():
    small = FakeProvider("small", fail=[retryable(after=0.3, status=429)])
    Engine(cascade(small=0.9), {0: small, 1: FakeProvider("big")}, max_retries=1, backoff_s=0.01).complete_sync(REQ)
    assert small.calls == 2
    assert small.call_times[1] - small.call_times[0] >= 0.3


def test_retry_after_beyond_the_deadline_gives_up_instead_of_sleeping():
    small = FakeProvider("small", fail=[retryable(after=30, status=429)])
    big = FakeProvider("big", "4")
    t0 = time.monotonic()
    trace = Engine(cascade(), {0: small, 1: big}, deadline_s=2, max_retries=3).complete_sync(REQ)
    assert time.monotonic() - t0 < 1.0 and small.calls == 1 and trace.model == "big"


def test_deadline_gives_504_with_the_trace_attached():
    slow = FakeProvider("small", delay=10)
    slower = FakeProvider("big", delay=10)
    t0 = time.monotonic()
    with pytest.raises(ProviderError) as info:
        Engine(cascade(), {0: slow, 1: slower}, deadline_s=0.3).complete_sync(REQ)
    assert time.monotonic() - t0 < 2.0
    assert info.value.status == 504
    trace = info.value.trace
    assert isinstance(trace, Trace) and trace.completion is None
    assert all("deadline" in s.error for s in trace.steps)


def test_deadline_after_a_rejected_answer_returns_that_answer():
    small, big = FakeProvider("small", "maybe 4"), FakeProvider("big", delay=10)
    trace = Engine(cascade(small=0.1), {0: small, 1: big}, deadline_s=0.3).complete_sync(REQ)
    assert trace.completion.text == "maybe 4" and trace.model == "small"
    assert "deadline" in trace.steps[1].error


def test_every_tier_failing_gives_502():
    bad = [ProviderError("boom", provider="p", status=500, retryable=False)]
    with pytest.raises(ProviderError) as info:
        Engine(cascade(), {0: FakeProvider("small", fail=list(bad)), 1: FakeProvider("big", fail=list(bad))}).complete_sync(REQ)
    assert info.value.status == 502 and "boom" in str(info.value)


def test_missing_provider_is_a_config_error():
    with pytest.raises(ConfigError, match="tier 1"):
        Engine(cascade(), {0: FakeProvider("small")})


def test_images_skip_tiers_that_are_not_vision_capable():
    req = ChatRequest(
        messages=(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
        )
    )
    small, big = FakeProvider("small", "a cat"), FakeProvider("big", "a dog", vision=True)
    trace = Engine(cascade(small=0.99), {0: small, 1: big}).complete_sync(req)
    assert small.calls == 0 and trace.model == "big"
    assert "vision" in trace.steps[0].error


def test_tool_call_that_breaks_its_schema_escalates():
    tool = {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]},
        },
    }
    req = ChatRequest(messages=({"role": "user", "content": "add 2 and 2"},), tools=(tool,))
    bad = ({"id": "1", "type": "function", "function": {"name": "add", "arguments": '{"a": "two"}'}},)
    good = ({"id": "2", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 2}'}},)
    small = FakeProvider("small", "", tool_calls=bad)
    big = FakeProvider("big", "", tool_calls=good)
    trace = Engine(cascade(small=0.99), {0: small, 1: big}).complete_sync(req)
    assert trace.model == "big" and trace.completion.tool_calls == good
    assert "schema" in trace.steps[0].error


def test_engine_is_itself_a_provider_costed_at_the_whole_cascade():
    small, big = FakeProvider("small", cost=0.001), FakeProvider("big", "4", cost=0.01)
    engine = Engine(cascade(small=0.0), {0: small, 1: big})
    completion = asyncio.run(engine.complete(REQ))
    assert completion.text == "4" and completion.cost_usd == pytest.approx(0.011)


async def _events(engine, req=REQ):
    return [e async for e in engine.stream(req)]


def test_stream_buffers_rejected_tier_and_streams_the_last():
    small, big = FakeProvider("small", "not sure"), FakeProvider("big", "two plus two is four")
    events = asyncio.run(_events(Engine(cascade(small=0.1), {0: small, 1: big})))
    assert isinstance(events[0], Routed) and events[0].model == "big" and events[0].tiers_tried == ("small", "big")
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert deltas == ["two", " plus", " two", " is", " four"]  # the live stream, chunk by chunk
    assert small.stream_calls == 0 and small.calls == 1  # the rejected tier was buffered, never streamed
    trace = events[-1]
    assert isinstance(trace, Trace) and trace.streamed and trace.completion.text == "two plus two is four"
    assert "not sure" not in "".join(deltas)
    assert events[0].cost_usd == small.cost  # spent before the live tier starts: the rejected answer


def test_stream_of_an_accepted_buffered_tier_replays_its_text():
    text = "Four. Two plus two equals four, which is an even number."
    small, big = FakeProvider("small", text), FakeProvider("big")
    events = asyncio.run(_events(Engine(cascade(small=0.9), {0: small, 1: big})))
    assert isinstance(events[0], Routed) and events[0].model == "small" and events[0].tiers_tried == ("small",)
    assert events[0].cost_usd == small.cost  # buffered and accepted: the exact total is known up front
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(deltas) == text and len(deltas) > 1
    assert big.calls == 0 and big.stream_calls == 0
    assert isinstance(events[-1], Trace) and not events[-1].streamed


def test_stream_last_tier_failing_before_output_falls_back_to_best_answer():
    small = FakeProvider("small", "probably four")
    big = FakeProvider("big", fail=[ProviderError("down", provider="big", status=503, retryable=False)])
    events = asyncio.run(_events(Engine(cascade(small=0.1), {0: small, 1: big})))
    assert events[0].model == "small" and events[0].tiers_tried == ("small", "big")
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "probably four"


def test_stream_retries_the_last_tier_before_the_first_token():
    big = FakeProvider("big", "four", fail=[retryable()])
    events = asyncio.run(_events(Engine(cascade(), {0: FakeProvider("small"), 1: big}, backoff_s=0.01)))
    assert big.stream_calls == 2 and events[-1].completion.text == "four"


def test_stream_dying_mid_answer_raises_a_partial_provider_error():
    big = FakeProvider("big", "one two three four", die_after=2)

    async def consume():
        seen = []
        with pytest.raises(ProviderError) as info:
            async for event in Engine(cascade(), {0: FakeProvider("small"), 1: big}, backoff_s=0.01).stream(REQ):
                seen.append(event)
        return seen, info.value

    seen, err = asyncio.run(consume())
    assert isinstance(seen[0], Routed) and [e.text for e in seen[1:]] == ["one", " two"]
    assert err.partial and big.stream_calls == 1  # no retry once text went out
    assert err.trace.completion.text == "one two" and err.trace.completion.finish_reason == "error"
    assert err.trace.tiers_tried == ("small", "big") and "peer closed" in err.trace.steps[1].error


def test_stream_deadline_without_any_answer_raises_504():
    async def consume():
        return [
            e
            async for e in Engine(cascade(), {0: FakeProvider("small", delay=5), 1: FakeProvider("big", delay=5)}, deadline_s=0.2).stream(
                REQ
            )
        ]

    with pytest.raises(ProviderError) as info:
        asyncio.run(consume())
    assert info.value.status == 504


def test_closing_the_stream_early_closes_the_upstream_stream():
    closed = []

    class Endless(FakeProvider):
        async def stream(self, request):  # noqa: ANN001
            try:
                while True:
                    await asyncio.sleep(0)
                    yield "tok "
            finally:
                closed.append(True)

    async def consume():
        agen = Engine(cascade(), {0: FakeProvider("small"), 1: Endless("big")}).stream(REQ)
        seen = []
        async for event in agen:
            seen.append(event)
            if len(seen) == 4:
                break
        await agen.aclose()  # what a server does when the client disconnects
        return seen

    seen = asyncio.run(consume())
    assert isinstance(seen[0], Routed) and [e.text for e in seen[1:]] == ["tok "] * 3
    assert closed == [True]


def test_concurrent_requests_share_one_engine_without_mixing_traces():
    small, big = FakeProvider("small", "s", delay=0.01), FakeProvider("big", "b", delay=0.01)
    engine = Engine(cascade(small=0.0), {0: small, 1: big})

    async def many():
        return await asyncio.gather(*(engine.run(REQ, request_id=f"r{i}") for i in range(20)))

    traces = asyncio.run(many())
    assert [t.request_id for t in traces] == [f"r{i}" for i in range(20)]
    assert all(t.tiers_tried == ("small", "big") and len(t.answers) == 2 for t in traces)
    assert small.calls == big.calls == 20


def test_forced_tool_choice_skips_tiers_without_tools():
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    call = ({"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}},)
    small, big = FakeProvider("small", "text only"), FakeProvider("big", "", tool_calls=call)
    big.tools = True
    forced = ChatRequest(messages=({"role": "user", "content": "call f"},), tools=(tool,), tool_choice="required")
    trace = Engine(cascade(small=0.99), {0: small, 1: big}).complete_sync(forced)
    assert small.calls == 0 and trace.model == "big" and "cannot call tools" in trace.steps[0].error
    auto = ChatRequest(messages=({"role": "user", "content": "call f"},), tools=(tool,), tool_choice="auto")
    assert Engine(cascade(small=0.99), {0: small, 1: big}).complete_sync(auto).model == "small"  # text is a valid answer
