"""Providers against real servers on loopback sockets.

- OpenAI-compatible adapter → a real ``python -m llama_cpp.server`` subprocess serving SmolLM2 (1 thread);
- llama.cpp adapter → both GGUF models in process (SmolLM2 chat, Gemma-3 transcript completion);
- Anthropic adapter → :mod:`anthropic_standin`, a STAND-IN HTTP server speaking the Messages wire
  format (no Anthropic key is reachable here; it is not Claude).

Generations are kept short (max_tokens ≤ 24) so the whole file runs in well under a minute.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from thrifty.errors import ProviderError
from thrifty.types import ChatRequest, Completion

sys.path.insert(0, str(Path(__file__).parent))
from anthropic_standin import AnthropicStandIn  # noqa: E402

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
needs_llama = pytest.mark.skipif(not HAVE_LLAMA, reason="llama-cpp-python not installed (pip install 'thrifty[local]')")


async def collect(agen):
    return [item async for item in agen]


# ---------------------------------------------------------------------------------------------------
# Anthropic adapter against the Messages-API STAND-IN
# ---------------------------------------------------------------------------------------------------
@pytest.fixture
def standin():
    with AnthropicStandIn(api_key="sk-standin") as server:
        yield server


def anthropic_provider(standin, **kw):
    from thrifty.serving.providers.anthropic import AnthropicProvider

    return AnthropicProvider("claude", "claude-3-5-haiku-latest", api_key="sk-standin", base_url=standin.base_url, timeout_s=10, **kw)


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_anthropic_translates_system_prompt_params_and_usage(standin):
    provider = anthropic_provider(standin)
    req = ChatRequest(
        messages=({"role": "system", "content": "Be terse."}, {"role": "user", "content": "Name a colour"}),
        params={"max_tokens": 20, "temperature": 0.1, "stop": "END"},
    )
    c = asyncio.run(provider.complete(req))
    sent = standin.requests[-1]
    assert sent["system"] == "Be terse."
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Name a colour"}]}]
    assert sent["max_tokens"] == 20 and sent["temperature"] == 0.1 and sent["stop_sequences"] == ["END"]
    assert sent["model"] == "claude-3-5-haiku-latest"
    assert c.text == "stand-in reply: Name a colour" and c.finish_reason == "stop"
    assert c.usage.input_tokens == 5 and c.usage.output_tokens == 5  # words, as the stand-in counts them
    # genai-prices knows claude-3-5-haiku: $0.80 in / $4 out per 1M tokens
    assert provider.price_in == pytest.approx(0.8) and provider.price_out == pytest.approx(4.0)
    assert c.cost_usd == pytest.approx((5 * 0.8 + 5 * 4.0) / 1e6)


def test_anthropic_translates_tools_tool_calls_and_tool_results(standin):
    provider = anthropic_provider(standin, price_in=1.0, price_out=2.0)
    req = ChatRequest(messages=({"role": "user", "content": "Weather in Paris?"},), tools=(WEATHER,), tool_choice="required")
    c = asyncio.run(provider.complete(req))
    sent = standin.requests[-1]
    assert sent["tools"] == [
        {"name": "get_weather", "description": "Weather for a city", "input_schema": WEATHER["function"]["parameters"]}
    ]
    assert sent["tool_choice"] == {"type": "any"}
    assert c.finish_reason == "tool_calls"
    assert c.tool_calls == (
        {"id": "toolu_standin_1", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}},
    )
    # second turn: the assistant's tool call and the tool's result go back in Anthropic's shape
    follow = ChatRequest(
        messages=(
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": list(c.tool_calls)},
            {"role": "tool", "tool_call_id": "toolu_standin_1", "content": "18C and sunny"},
            {"role": "user", "content": "Thanks, summarise."},
        ),
        tools=(WEATHER,),
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    asyncio.run(provider.complete(follow))
    sent = standin.requests[-1]
    assert sent["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]  # tool result merged into one user turn
    assert sent["messages"][1]["content"] == [
        {"type": "tool_use", "id": "toolu_standin_1", "name": "get_weather", "input": {"city": "Paris"}}
    ]
    assert sent["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_standin_1", "content": "18C and sunny"},
        {"type": "text", "text": "Thanks, summarise."},
    ]


def test_anthropic_translates_images(standin):
    provider = anthropic_provider(standin, price_in=1.0, price_out=2.0)
    req = ChatRequest(
        messages=(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                ],
            },
        )
    )
    asyncio.run(provider.complete(req))
    blocks = standin.requests[-1]["messages"][0]["content"]
    assert blocks[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/AAAA"}}
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}


def test_anthropic_stream_yields_text_then_a_costed_completion(standin):
    provider = anthropic_provider(standin, price_in=1.0, price_out=2.0)
    items = asyncio.run(collect(provider.stream(ChatRequest.from_prompt("stream three words", max_tokens=16))))
    deltas, final = items[:-1], items[-1]
    assert all(isinstance(d, str) for d in deltas) and len(deltas) == 5
    assert "".join(deltas) == "stand-in reply: stream three words" == final.text
    assert isinstance(final, Completion) and final.usage.output_tokens == 5
    assert standin.requests[-1]["stream"] is True


def test_anthropic_errors_become_provider_errors_with_retry_after(standin):
    provider = anthropic_provider(standin, price_in=1.0, price_out=2.0)
    standin.fail_next = [(529, {"retry-after": "2"})]
    with pytest.raises(ProviderError) as info:
        asyncio.run(provider.complete(ChatRequest.from_prompt("hi")))
    assert info.value.status == 529 and info.value.retryable and info.value.retry_after == 2.0
    bad = anthropic_provider(standin, price_in=1.0, price_out=2.0)
    bad._api_key = "sk-wrong-secret-123"
    with pytest.raises(ProviderError) as info:
        asyncio.run(bad.complete(ChatRequest.from_prompt("hi")))
    assert info.value.status == 401 and not info.value.retryable
    # the stand-in echoes the key it was sent; it must not reach the error text (client, log)
    assert "sk-wrong-secret-123" not in str(info.value) and "[redacted]" in str(info.value)


def test_engine_retries_an_overloaded_anthropic_tier(standin):
    from thrifty.policy.cascade import CascadePolicy
    from thrifty.serving.engine import Engine

    standin.fail_next = [(529, {"retry-after-ms": "50"})]
    engine = Engine(
        CascadePolicy(["claude"], [], None), {"claude": anthropic_provider(standin, price_in=1.0, price_out=2.0)}, backoff_s=0.01
    )
    trace = engine.complete_sync(ChatRequest.from_prompt("after a retry"))
    assert trace.completion.text == "stand-in reply: after a retry"
    assert dict(trace.attempts) == {0: 2} and len(standin.requests) == 2


# ---------------------------------------------------------------------------------------------------
# OpenAI-compatible adapter against a real llama.cpp server subprocess (SmolLM2, 1 thread)
# ---------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    if not HAVE_LLAMA:
        pytest.skip("llama-cpp-python not installed")
    from thrifty.serving.local import smollm2_path

    port = _free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(smollm2_path()),
                "--model_alias",
                "smollm2",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_threads",
                "1",
                "--n_threads_batch",
                "1",
                "--n_ctx",
                "1024",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server not ready after 90 s: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def server_provider(base):
    from thrifty.serving.providers.openai_compat import OpenAICompatProvider

    return OpenAICompatProvider("llama-server", "smollm2", base, price_in=0.5, price_out=1.5, timeout_s=60)


CAPITAL = ChatRequest.from_prompt("What is the capital of France?", max_tokens=16, temperature=0)


@needs_llama
def test_openai_compat_plain_answer_from_llama_server(llama_server):
    c = asyncio.run(server_provider(llama_server).complete(CAPITAL))
    assert any(ch.isalpha() for ch in c.text)  # a 135M model: real words, not necessarily the right ones
    assert c.usage.input_tokens > 5 and 1 <= c.usage.output_tokens <= 16 and c.finish_reason in ("stop", "length")
    assert c.cost_usd == pytest.approx((c.usage.input_tokens * 0.5 + c.usage.output_tokens * 1.5) / 1e6)


@needs_llama
def test_openai_compat_stream_from_llama_server(llama_server):
    items = asyncio.run(collect(server_provider(llama_server).stream(CAPITAL)))
    deltas, final = items[:-1], items[-1]
    assert isinstance(final, Completion) and len(deltas) >= 2 and all(isinstance(d, str) for d in deltas)
    assert "".join(deltas) == final.text and any(ch.isalpha() for ch in final.text)
    assert final.usage.output_tokens >= 1


# ---------------------------------------------------------------------------------------------------
# In-process llama.cpp provider, both embedded models
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_tiers():
    if not HAVE_LLAMA:
        pytest.skip("llama-cpp-python not installed")
    from thrifty.serving.local import embedded_default

    return embedded_default()


@needs_llama
def test_smollm2_chat_in_process_matches_the_server_prompt(local_tiers, llama_server):
    from thrifty.serving.local import SMOLLM2

    c = asyncio.run(local_tiers[1][SMOLLM2].complete(CAPITAL))
    assert c.text and 1 <= c.usage.output_tokens <= 16
    # the embedded default prices SmolLM2 notionally at USD 0.0135 per 1M tokens, in and out
    assert c.cost_usd == pytest.approx((c.usage.input_tokens + c.usage.output_tokens) * 0.0135 / 1e6)
    via_server = asyncio.run(server_provider(llama_server).complete(CAPITAL))
    # same GGUF chat template → same prompt tokens; greedy decoding (temperature 0) → the same answer
    assert c.usage.input_tokens == via_server.usage.input_tokens
    assert c.text == via_server.text


@needs_llama
def test_gemma_base_model_answers_through_a_transcript(local_tiers):
    from thrifty.serving.local import GEMMA3

    gemma = local_tiers[1][GEMMA3]
    c = asyncio.run(gemma.complete(CAPITAL))
    assert "paris" in c.text.lower()
    assert "User:" not in c.text and "Assistant:" not in c.text  # stop sequences end the turn
    items = asyncio.run(collect(gemma.stream(CAPITAL)))
    assert "".join(items[:-1]).strip() == items[-1].text and items[-1].usage.output_tokens >= 1


@needs_llama
def test_deadline_cancels_local_generation_and_frees_the_model(local_tiers):
    from thrifty.policy.cascade import CascadePolicy
    from thrifty.serving.engine import Engine
    from thrifty.serving.local import SMOLLM2

    small = local_tiers[1][SMOLLM2]
    engine = Engine(CascadePolicy([SMOLLM2], [], None), {SMOLLM2: small}, deadline_s=0.3)
    long = ChatRequest.from_prompt("Write a very long essay about the history of Europe.", max_tokens=900)
    t0 = time.monotonic()
    with pytest.raises(ProviderError) as info:
        engine.complete_sync(long)
    assert info.value.status == 504
    c = asyncio.run(small.complete(CAPITAL))  # the lock was released: the model answers again at once
    assert c.text and time.monotonic() - t0 < 10


@needs_llama
def test_embedded_cascade_escalates_on_threshold(local_tiers):
    from thrifty.serving.engine import Engine
    from thrifty.serving.local import GEMMA3, SMOLLM2, embedded_default

    policy, providers = embedded_default(threshold=1.01)  # nothing reaches 1.01: always escalate
    trace = Engine(policy, providers).complete_sync(CAPITAL)
    assert trace.tiers_tried == (SMOLLM2, GEMMA3) and trace.model == GEMMA3
    assert trace.steps[0].score is not None and not trace.steps[0].accepted
    policy, providers = embedded_default(threshold=0.0)  # anything passes: tier 0 answers
    trace = Engine(policy, providers).complete_sync(CAPITAL)
    assert trace.tiers_tried == (SMOLLM2,) and trace.model == SMOLLM2


@needs_llama
def test_abandoned_local_stream_stops_generating(local_tiers):
    from thrifty.serving.local import SMOLLM2

    small = local_tiers[1][SMOLLM2]

    async def run():
        agen = small.stream(ChatRequest.from_prompt("Write a very long essay about the history of Europe.", max_tokens=900))
        seen = []
        async for item in agen:
            seen.append(item)
            if len(seen) == 3:
                break
        await agen.aclose()  # the client went away
        t0 = time.monotonic()
        c = await small.complete(CAPITAL)  # needs the model lock: only free if generation stopped
        return seen, c, time.monotonic() - t0

    seen, c, waited = asyncio.run(run())
    assert all(isinstance(s, str) for s in seen) and c.text
    assert waited < 10  # 900 tokens would take far longer at 1 thread
