"""Any OpenAI-compatible ``/chat/completions`` endpoint over HTTP (httpx, pooled, one client per provider).

Works with OpenAI, vLLM, the llama.cpp server, Ollama, Together, OpenRouter, Groq, Cerebras… —
anything that speaks the chat-completions wire format at ``base_url``. Request ``params``
(temperature, max_tokens, stop, seed, …), ``tools`` and ``tool_choice`` pass through unchanged;
messages (including image parts) are sent as given. Cost = reported usage × price per 1M tokens.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any, AsyncIterator, Mapping

from thrifty.errors import ConfigError, ProviderError
from thrifty.serving.aio import within
from thrifty.serving.providers import http1
from thrifty.serving.providers._errors import provider_errors, redact, status_error
from thrifty.serving.providers.base import StreamItem, cost_usd
from thrifty.serving.providers.prices import resolve_prices
from thrifty.types import ChatRequest, Completion, Usage, message_text

__all__ = ["OpenAICompatProvider"]

_RESERVED = {"model", "messages", "stream", "stream_options", "tools", "tool_choice"}


class OpenAICompatProvider:
    """``complete()`` and ``stream()`` against ``{base_url}/chat/completions``.

    ``api_key_env`` names the environment variable holding the key (read once, here, at
    construction; a missing variable is a ConfigError). Prices are USD per 1M tokens; when not
    given they are looked up in ``genai-prices`` (unknown model → ConfigError). The httpx client is
    created on first use and reused (connection pooling); ``aclose()`` releases it.
    """

    streams = True
    tools = True

    def __init__(
        self,
        name: str,
        model: str,
        base_url: str,
        api_key_env: str | None = None,
        price_in: float | None = None,
        price_out: float | None = None,
        vision: bool = False,
        timeout_s: float = 60.0,
        *,
        api_key: str | None = None,
        provider_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        stream_usage: bool = True,
        max_response_bytes: int | None = None,
        config_key: str | None = None,
    ) -> None:
        if not base_url:
            raise ConfigError("base_url is required for an OpenAI-compatible provider", key=config_key or f"{name}.base_url")
        self.name = name
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.vision = bool(vision)
        self.timeout_s = float(timeout_s)
        self.stream_usage = stream_usage
        if max_response_bytes is not None and (
            isinstance(max_response_bytes, bool) or not isinstance(max_response_bytes, int) or max_response_bytes < 1
        ):
            raise ConfigError(
                f"max_response_bytes must be a positive integer, got {max_response_bytes!r}",
                key=f"{config_key or name}.options.max_response_bytes",
                fix="write max_response_bytes = 16777216",
            )
        self.max_response_bytes = max_response_bytes
        if api_key is None and api_key_env:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise ConfigError(
                    f"environment variable {api_key_env} is not set",
                    key=config_key or f"{name}.api_key_env",
                    fix=f"export {api_key_env}=<your key>",
                )
        self._headers = dict(headers or {})
        self._secrets = (api_key,)  # redacted from upstream error text
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.price_in, self.price_out = resolve_prices(
            model,
            price_in=price_in,
            price_out=price_out,
            provider_id=provider_id,
            key=config_key or f"{name}.price_in",
        )
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: Any = None  # lean HTTP/1.1 pool for plain-http upstreams (see providers.http1)
        self._pool_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"OpenAICompatProvider(name={self.name!r}, model={self.model!r}, base_url={self.base_url!r})"

    # -- plumbing -------------------------------------------------------------------------------
    def _http(self) -> Any:
        import httpx

        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop or self._client.is_closed:
            # a client is bound to the loop that created it (complete_sync runs a fresh loop per call)
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                headers=self._headers,
                timeout=httpx.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s)),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            )
            self._loop = loop
        return self._client

    def _fast(self) -> Any:
        """The lean HTTP/1.1 pool for non-streamed calls to a plain ``http://`` upstream (no proxy), else None."""
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool_loop is not loop:
            if not http1.usable_for(self.base_url):  # decided once per event loop (reads proxy variables)
                self._pool, self._pool_loop = False, loop
                return None
            cap = {"max_response_bytes": self.max_response_bytes} if self.max_response_bytes else {}
            self._pool = http1.Http1Pool(self.base_url, self._headers, connect_timeout=min(10.0, self.timeout_s), name=self.name, **cap)
            self._pool_loop = loop
        return self._pool or None

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool:
            try:
                await pool.aclose()
            except RuntimeError:  # its loop is gone
                pass
        client, self._client = self._client, None
        if client is not None and not client.is_closed:
            try:
                await client.aclose()
            except RuntimeError:  # its loop is gone; nothing left to release
                pass

    def _body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {k: v for k, v in (request.params or {}).items() if v is not None and k not in _RESERVED}
        body["model"] = self.model
        body["messages"] = [dict(m) for m in request.messages]
        if request.tools:
            body["tools"] = [dict(t) for t in request.tools]
            if request.tool_choice is not None:
                body["tool_choice"] = request.tool_choice
        if stream:
            body["stream"] = True
            if self.stream_usage:
                body["stream_options"] = {"include_usage": True}
        return body

    def _completion(self, text: str, usage: Usage, finish: str | None, tool_calls: Any, started: float, raw: Any) -> Completion:
        return Completion(
            text=text,
            model=self.model,
            usage=usage,
            cost_usd=cost_usd(usage, self.price_in, self.price_out),
            latency_s=time.perf_counter() - started,
            finish_reason=finish or "stop",
            tool_calls=tuple(tool_calls) if tool_calls else None,
            raw=raw,
        )

    # -- API ------------------------------------------------------------------------------------
    async def complete(self, request: ChatRequest) -> Completion:
        """The answer; ``timeout_s`` bounds the whole call (httpx's timeouts are per read, so a
        slow-drip upstream would otherwise hold the tier for the request's entire deadline)."""
        started = time.perf_counter()
        with provider_errors(self.name, self._secrets):
            try:
                completion: Completion = await within(self._complete(request, started), self.timeout_s)  # no extra Task per call
                return completion
            except asyncio.TimeoutError:
                raise ProviderError(
                    f"timed out: no complete answer within {self.timeout_s:g}s", provider=self.name, status=504, retryable=True
                ) from None

    async def _complete(self, request: ChatRequest, started: float) -> Completion:
        with provider_errors(self.name, self._secrets):
            fast = self._fast()
            if fast is not None:
                payload = json.dumps(self._body(request, stream=False), ensure_ascii=False, separators=(",", ":")).encode()
                status, headers, raw = await fast.post_json("/chat/completions", payload)
                if status >= 400:
                    raise redact(status_error(self.name, status, headers, raw.decode("utf-8", "replace")), self._secrets)
                data = json.loads(raw)
            else:
                response = await self._http().post("/chat/completions", json=self._body(request, stream=False))
                response.raise_for_status()
                data = response.json()
            if not isinstance(data, Mapping):
                raise ProviderError(f"answer is not a JSON object: {str(data)[:200]}", provider=self.name, status=502)
            choices = data.get("choices")
            choice = choices[0] if isinstance(choices, list) and choices else None
            if not isinstance(choice, Mapping):
                raise ProviderError(f"answer has no choices: {str(data)[:200]}", provider=self.name, status=502)
            message = choice.get("message") or {}
            if not isinstance(message, Mapping):
                raise ProviderError(f"answer's message is not an object: {str(message)[:200]}", provider=self.name, status=502)
            text = message.get("content") or ""
            if not isinstance(text, str):
                raise ProviderError(f"answer's content is not text: {str(text)[:200]}", provider=self.name, status=502)
            usage = _usage(data.get("usage"), request, text)
            return self._completion(text, usage, choice.get("finish_reason"), message.get("tool_calls"), started, data)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        started = time.perf_counter()
        parts: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        finish: str | None = None
        usage_data: Any = None
        done = False
        with provider_errors(self.name, self._secrets):
            async with self._http().stream("POST", "/chat/completions", json=self._body(request, stream=True)) as response:
                if response.status_code >= 400:
                    await response.aread()
                    response.raise_for_status()
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        done = True
                        break
                    chunk = json.loads(payload)
                    if chunk.get("error"):
                        raise ProviderError(f"error mid-stream: {str(chunk['error'])[:300]}", provider=self.name, status=502)
                    if chunk.get("usage"):
                        usage_data = chunk["usage"]
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta") or {}
                        if delta.get("content"):
                            parts.append(delta["content"])
                            yield delta["content"]
                        for tc in delta.get("tool_calls") or ():
                            _merge_tool_call(calls, tc)
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
        if not done and finish is None:  # the connection closed before the answer was finished
            raise ProviderError(
                "stream ended before the answer was complete (no finish_reason, no [DONE])", provider=self.name, status=502, retryable=True
            )
        text = "".join(parts)
        tool_calls = [calls[i] for i in sorted(calls)]
        yield self._completion(text, _usage(usage_data, request, text, chunks=len(parts)), finish, tool_calls, started, None)


def _merge_tool_call(calls: dict[int, dict[str, Any]], delta: Mapping[str, Any]) -> None:
    """Accumulate one streamed tool-call delta (OpenAI sends the arguments string in pieces)."""
    slot = calls.setdefault(int(delta.get("index", len(calls))), {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
    if delta.get("id"):
        slot["id"] = delta["id"]
    fn = delta.get("function") or {}
    if fn.get("name"):
        slot["function"]["name"] += fn["name"]
    if fn.get("arguments"):
        slot["function"]["arguments"] += fn["arguments"]


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _usage(data: Any, request: ChatRequest, text: str, chunks: int | None = None) -> Usage:
    """Reported usage; if the upstream reports none (or nonsense), estimate (≈4 characters per
    token) and flag the counts ``estimated`` (the log and /metrics say so)."""
    if isinstance(data, Mapping):
        pin, pout = _count(data.get("prompt_tokens")), _count(data.get("completion_tokens"))
        if pin is not None or pout is not None:
            return Usage(pin or 0, pout or 0)
    prompt_chars = sum(len(message_text(m.get("content"))) for m in request.messages)
    out = chunks if chunks is not None else max(1, len(text) // 4) if text else 0
    return Usage(max(1, prompt_chars // 4), out, estimated=True)
