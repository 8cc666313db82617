"""OpenAI-compatible adapter against a real misbehaving HTTP server (tests/e2e/fault_upstream.py)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from thrifty.errors import ConfigError, ProviderError
from thrifty.policy.cascade import CascadePolicy
from thrifty.serving.engine import Engine
from thrifty.serving.providers.openai_compat import OpenAICompatProvider
from thrifty.types import ChatRequest, Completion

sys.path.insert(0, str(Path(__file__).parent))
from fault_upstream import FaultUpstream  # noqa: E402

REQ = ChatRequest.from_prompt("hello", temperature=0.3, max_tokens=12)


@pytest.fixture(scope="module")
def up():
    with FaultUpstream(hang_s=5.0) as server:
        yield server


def provider(up, mode="normal", **kw):
    kw.setdefault("price_in", 1.0)
    kw.setdefault("price_out", 2.0)
    return OpenAICompatProvider("up", "test-model", up.base_url(mode), timeout_s=kw.pop("timeout_s", 5.0), **kw)


async def collect(agen):
    return [x async for x in agen]


def test_complete_passes_params_and_tools_through_and_costs_usage(up):
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    req = ChatRequest(
        messages=({"role": "user", "content": "hi"},), params={"temperature": 0.3, "seed": 7}, tools=(tool,), tool_choice="auto"
    )
    c = asyncio.run(provider(up).complete(req))
    body = up.bodies[-1]
    assert body["model"] == "test-model" and body["temperature"] == 0.3 and body["seed"] == 7
    assert body["tools"] == [tool] and body["tool_choice"] == "auto" and "stream" not in body
    assert c.text == "answer from normal" and c.usage.input_tokens == 10 and c.usage.output_tokens == 5
    assert c.cost_usd == pytest.approx((10 * 1.0 + 5 * 2.0) / 1e6)


def test_stream_yields_deltas_then_the_completion(up):
    items = asyncio.run(collect(provider(up).stream(REQ)))
    assert isinstance(items[-1], Completion) and all(isinstance(i, str) for i in items[:-1])
    assert "".join(items[:-1]) == items[-1].text and items[-1].text.strip() == "answer from normal"
    assert up.bodies[-1]["stream"] is True and up.bodies[-1]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("mode,status,retryable", [("503", 503, True), ("500", 500, True), ("malformed", 502, False)])
def test_http_failures_map_to_provider_errors(up, mode, status, retryable):
    with pytest.raises(ProviderError) as info:
        asyncio.run(provider(up, mode).complete(REQ))
    assert info.value.status == status and info.value.retryable is retryable and info.value.provider == "up"


def test_429_carries_retry_after(up):
    with pytest.raises(ProviderError) as info:
        asyncio.run(provider(up, "429-ra3").complete(REQ))
    assert info.value.status == 429 and info.value.retryable and info.value.retry_after == 3.0


def test_reset_and_hang_are_retryable_connection_and_timeout_errors(up):
    with pytest.raises(ProviderError) as info:
        asyncio.run(provider(up, "reset").complete(REQ))
    assert info.value.status == 502 and info.value.retryable
    with pytest.raises(ProviderError) as info:
        asyncio.run(provider(up, "hang", timeout_s=0.4).complete(REQ))
    assert info.value.status == 504 and info.value.retryable


def test_truncated_stream_is_an_error_not_a_short_answer(up):
    with pytest.raises(ProviderError) as info:
        asyncio.run(collect(provider(up, "truncated").stream(REQ)))
    assert info.value.status == 502 and info.value.retryable


def test_engine_retries_a_flaky_upstream_then_answers(up):
    engine = Engine(CascadePolicy(["up"], [], None), {"up": provider(up, "flaky2-503~a")}, max_retries=2, backoff_s=0.01)
    trace = engine.complete_sync(REQ)
    assert trace.completion.text == "answer from normal" and up.calls["flaky2-503~a"] == 3


def test_engine_fails_over_to_the_next_tier(up):
    policy = CascadePolicy(["bad", "good"], [0.5], scorer=type("S", (), {"score": lambda self, r, c, m: 1.0})())
    engine = Engine(policy, {"bad": provider(up, "500~b"), "good": provider(up, "normal")}, max_retries=1, backoff_s=0.01)
    trace = engine.complete_sync(REQ)
    assert trace.model == "good" and up.calls["500~b"] == 2 and "HTTP 500" in trace.steps[0].error


def test_missing_key_env_and_unknown_price_are_config_errors(monkeypatch, up):
    monkeypatch.delenv("THRIFTY_TEST_KEY_XYZ", raising=False)
    with pytest.raises(ConfigError, match="THRIFTY_TEST_KEY_XYZ"):
        provider(up, api_key_env="THRIFTY_TEST_KEY_XYZ")
    with pytest.raises(ConfigError, match="price_in"):
        OpenAICompatProvider("x", "my-private-model-9000", up.base_url())
    known = OpenAICompatProvider("x", "gpt-4o-mini", up.base_url())  # genai-prices knows it
    assert known.price_in == pytest.approx(0.15) and known.price_out == pytest.approx(0.6)
