"""Pure helpers of the providers: error translation, Retry-After parsing, transcript prompts, stream_of."""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate

import httpx
import pytest

from thrifty.errors import ProviderError
from thrifty.serving.providers._errors import provider_errors, retry_after_from, translate
from thrifty.serving.providers.base import cost_usd, info, stream_of
from thrifty.serving.providers.llamacpp import LlamaCppProvider, _Loaded, raw_prompt, transcript_prompt
from thrifty.types import ChatRequest, Completion, Usage


def test_retry_after_forms():
    assert retry_after_from({"retry-after": "7"}) == 7.0
    assert retry_after_from({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after_from({"retry-after": date}) <= 31
    assert retry_after_from({"retry-after": "soon"}) is None and retry_after_from({}) is None


def test_translate_status_errors():
    req = httpx.Request("POST", "http://x/chat/completions")
    resp = httpx.Response(429, headers={"retry-after": "2"}, text='{"error": "slow down"}', request=req)
    err = translate(httpx.HTTPStatusError("x", request=req, response=resp), "p")
    assert (err.status, err.retryable, err.retry_after, err.provider) == (429, True, 2.0, "p")
    assert "slow down" in str(err)
    resp = httpx.Response(404, text="no such model", request=req)
    err = translate(httpx.HTTPStatusError("x", request=req, response=resp), "p")
    assert err.status == 404 and not err.retryable


def test_translate_transport_errors_and_passthrough():
    assert translate(httpx.ReadTimeout("t"), "p").status == 504
    assert translate(httpx.ConnectError("c"), "p").retryable
    original = ProviderError("mine", provider="p", status=418)
    assert translate(original, "q") is original
    assert translate(ValueError("Requested tokens exceed context window"), "p").status == 400


def test_provider_errors_boundary_chains_the_cause():
    with pytest.raises(ProviderError) as info_:
        with provider_errors("p"):
            raise httpx.ConnectError("refused")
    assert isinstance(info_.value.__cause__, httpx.ConnectError)


def test_transcript_prompt_for_base_models():
    msgs = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": [{"type": "text", "text": "2+2?"}]},
    ]
    text = transcript_prompt(msgs, examples=[("Capital of Italy?", "Rome.")])
    assert text == "You are terse.\n\nUser: Capital of Italy?\nAssistant: Rome.\nUser: Hi\nAssistant: Hello.\nUser: 2+2?\nAssistant:"
    assert transcript_prompt([{"role": "user", "content": "x"}], preamble="P.").startswith("P.\n\nUser: x\n")


class _Tokenizer:
    """Records what the provider would feed llama.cpp (one token per byte)."""

    def __init__(self) -> None:
        self.seen: list[tuple[bytes, bool]] = []

    def tokenize(self, data: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        self.seen.append((data, add_bos))
        return list(data)


def test_raw_mode_sends_the_prompt_text_as_is():
    few_shot = "Q: up or down? gold rises\nA: up\n\nQ: up or down? gold falls\nA:"
    assert raw_prompt([{"role": "user", "content": few_shot}]) == few_shot
    assert raw_prompt([{"role": "system", "content": "S"}, {"role": "user", "content": [{"type": "text", "text": "U"}]}]) == "S\n\nU"
    llm = _Tokenizer()
    raw = LlamaCppProvider("g", "/nonexistent.gguf", mode="raw", stop=("\n\n",), n_ctx=4096)
    req = ChatRequest(messages=({"role": "user", "content": few_shot},), params={"max_tokens": 4, "stop": "Q:"})
    tokens, kwargs, extra = raw._prepare(_Loaded(llm=llm), req)
    assert llm.seen == [(few_shot.encode(), True)] and tokens == list(few_shot.encode())
    assert kwargs["stop"] == ["\n\n", "Q:"] and kwargs["max_tokens"] == 4 and extra == []
    # the transcript mode wraps the same text in User:/Assistant: turns — raw must not
    LlamaCppProvider("g", "/nonexistent.gguf", mode="completion")._prepare(_Loaded(llm=llm), req)
    assert llm.seen[-1][0].endswith(b"Assistant:") and b"User: Q: up" in llm.seen[-1][0]
    with pytest.raises(ProviderError, match="does not fit"):
        LlamaCppProvider("g", "/nonexistent.gguf", mode="raw", n_ctx=8)._prepare(_Loaded(llm=llm), req)
    with pytest.raises(Exception, match="mode must be one of"):
        LlamaCppProvider("g", "/x.gguf", mode="transcript")


class Plain:
    name = "plain"

    async def complete(self, request):  # noqa: ANN001
        return Completion("whole answer", "plain", Usage(3, 2))


def test_stream_of_a_non_streaming_provider_yields_the_whole_text_once():
    async def run():
        return [x async for x in stream_of(Plain(), ChatRequest.from_prompt("q"))]

    items = asyncio.run(run())
    assert items[0] == "whole answer" and isinstance(items[1], Completion) and len(items) == 2
    flags = info(Plain())
    assert not flags.streams and not flags.vision and flags.name == "plain"


def test_cost_is_usage_times_price_per_million():
    assert cost_usd(Usage(1_000_000, 500_000), 0.5, 2.0) == pytest.approx(1.5)
    assert cost_usd(Usage(10, 10), None, None) == 0.0
