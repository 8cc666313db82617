"""The engine with answer selection: the last tier is buffered, the best-scored answer is returned
(streamed or not), and every tier called is paid."""

from __future__ import annotations

import asyncio

import pytest
from test_engine import REQ, FakeProvider, FixedScorer

from thrifty.policy.cascade import CascadePolicy
from thrifty.serving.engine import Engine, Routed, TextDelta, Trace


def _engine(select, big_score):
    small, big = FakeProvider("small", "a fine answer", cost=0.001), FakeProvider("big", "a worse answer", cost=0.01)
    pol = CascadePolicy(["small", "big"], [0.9], FixedScorer({"small": 0.6, "big": big_score}), select=select)
    return Engine(pol, {0: small, 1: big}), small, big


async def _events(engine):
    return [e async for e in engine.stream(REQ)]


def test_stream_with_select_best_buffers_the_last_tier_and_returns_the_better_earlier_answer():
    engine, small, big = _engine("best", 0.3)
    events = asyncio.run(_events(engine))
    assert isinstance(events[0], Routed) and events[0].model == "small" and events[0].tiers_tried == ("small", "big")
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "a fine answer"
    assert big.stream_calls == 0 and big.calls == 1  # buffered, not streamed live
    trace = events[-1]
    assert isinstance(trace, Trace) and trace.completion.text == "a fine answer"
    assert trace.cost_usd == pytest.approx(0.011)  # both tiers paid
    assert events[0].cost_usd == pytest.approx(0.011)


def test_complete_and_stream_agree_with_select_best():
    for big_score, winner in ((0.3, "a fine answer"), (0.8, "a worse answer")):
        engine, _, _ = _engine("best", big_score)
        assert asyncio.run(engine.complete(REQ)).text == winner
        engine, _, _ = _engine("best", big_score)
        assert "".join(e.text for e in asyncio.run(_events(engine)) if isinstance(e, TextDelta)) == winner
    # select="last" keeps streaming the last tier live
    engine, _, big = _engine("last", 0.3)
    events = asyncio.run(_events(engine))
    assert big.stream_calls == 1 and "".join(e.text for e in events if isinstance(e, TextDelta)) == "a worse answer"
