"""Anthropic Messages API through the official ``anthropic`` SDK (async client).

Translation from the OpenAI chat shape thrifty speaks:

- ``system`` / ``developer`` messages → the top-level ``system`` prompt;
- user/assistant text and image parts (``image_url`` data URLs → base64 blocks, http URLs → url
  blocks) → content blocks; consecutive same-role turns are merged;
- assistant ``tool_calls`` → ``tool_use`` blocks; ``tool`` messages → ``tool_result`` blocks;
- ``tools`` (JSON-schema ``parameters``) → ``input_schema``; ``tool_choice`` auto/none/required/named;
- ``max_tokens`` (required by Anthropic; default 1024), ``stop``; ``temperature`` / ``top_p`` / ``top_k``
  are sent in the JSON body;
- the answer: text blocks → text, ``tool_use`` → OpenAI ``tool_calls``, ``stop_reason`` →
  ``finish_reason``, ``usage`` → tokens × price; prompt-cache reads and writes count as input
  tokens, priced at the model's cache read / write prices (:func:`thrifty.serving.providers.prices.cache_prices`).

The SDK's own retries are off (``max_retries=0``): the engine retries, inside its deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any, AsyncIterator, Mapping

from thrifty.errors import ConfigError
from thrifty.serving.providers._errors import provider_errors
from thrifty.serving.providers.base import StreamItem, cost_usd, param
from thrifty.serving.providers.prices import cache_prices, resolve_prices
from thrifty.types import ChatRequest, Completion, Usage, message_text

__all__ = ["AnthropicProvider", "to_messages_request"]

_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls", "refusal": "content_filter"}


def _image_block(part: Mapping[str, Any]) -> dict[str, Any]:
    ref = part.get("image_url")
    url = str((ref.get("url") if isinstance(ref, Mapping) else (ref or part.get("url"))) or "")
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";")[0] or "image/png"
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type")
        if kind == "text" and part.get("text"):
            blocks.append({"type": "text", "text": part["text"]})
        elif kind in ("image_url", "input_image"):
            blocks.append(_image_block(part))
    return blocks


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        return {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}.get(choice)
    name = (choice.get("function") or {}).get("name")
    return {"type": "tool", "name": name} if name else None


def to_messages_request(request: ChatRequest, model: str, default_max_tokens: int = 1024) -> dict[str, Any]:
    """The keyword arguments of ``client.messages.create`` for ``request`` (pure; unit-testable)."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for m in request.messages:
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(message_text(m.get("content")))
        elif role == "user":
            add("user", _blocks(m.get("content")))
        elif role == "assistant":
            blocks = _blocks(m.get("content"))
            for call in m.get("tool_calls") or ():
                fn = call.get("function") or {}
                args = fn.get("arguments") or "{}"
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id", ""),
                        "name": fn.get("name", ""),
                        "input": json.loads(args) if isinstance(args, str) else args,
                    }
                )
            add("assistant", blocks)
        elif role == "tool":
            add("user", [{"type": "tool_result", "tool_use_id": m.get("tool_call_id", ""), "content": message_text(m.get("content"))}])
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": turns,
        "max_tokens": int(param(request, "max_completion_tokens", "max_tokens", default=default_max_tokens)),
    }
    if system:
        kwargs["system"] = "\n\n".join(s for s in system if s)
    # sampling params travel in the JSON body (recent SDKs no longer take them as arguments)
    sampling = {k: param(request, k) for k in ("temperature", "top_p", "top_k") if param(request, k) is not None}
    if sampling:
        kwargs["extra_body"] = sampling
    stop = param(request, "stop")
    if stop:
        kwargs["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if request.tools:
        kwargs["tools"] = [
            {
                "name": t["function"]["name"],
                "description": t["function"].get("description", ""),
                "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}},
            }
            for t in request.tools
            if t.get("type", "function") == "function"
        ]
        choice = _tool_choice(request.tool_choice)
        if choice is not None:
            kwargs["tool_choice"] = choice
    return kwargs


class AnthropicProvider:
    """``complete()`` / ``stream()`` with a Claude model. ``base_url`` may point at any Messages-API server."""

    streams = True
    tools = True

    def __init__(
        self,
        name: str,
        model: str,
        *,
        api_key_env: str | None = "ANTHROPIC_API_KEY",
        api_key: str | None = None,
        base_url: str | None = None,
        price_in: float | None = None,
        price_out: float | None = None,
        vision: bool = True,
        timeout_s: float = 60.0,
        max_tokens: int = 1024,
        config_key: str | None = None,
    ) -> None:
        if api_key is None and api_key_env:
            api_key = os.environ.get(api_key_env)
        if not api_key:
            raise ConfigError(
                f"no API key: environment variable {api_key_env} is not set",
                key=config_key or f"{name}.api_key_env",
                fix=f"export {api_key_env}=<your key>",
            )
        self.name, self.model = name, model
        self.base_url, self.vision, self.timeout_s, self.max_tokens = base_url, bool(vision), float(timeout_s), int(max_tokens)
        self._api_key = api_key
        self.price_in, self.price_out = resolve_prices(
            model, price_in=price_in, price_out=price_out, provider_id="anthropic", key=config_key or f"{name}.price_in"
        )
        self.cache_prices = cache_prices(model, self.price_in, provider_id="anthropic", configured=price_in is not None)
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"AnthropicProvider(name={self.name!r}, model={self.model!r})"

    def _sdk(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            try:
                import anthropic
            except ImportError as exc:
                raise ConfigError(
                    "the anthropic SDK is not installed", key=f"{self.name}.provider", fix="pip install 'thrifty[serve]'"
                ) from exc
            self._client = anthropic.AsyncAnthropic(api_key=self._api_key, base_url=self.base_url, timeout=self.timeout_s, max_retries=0)
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.close()
            except RuntimeError:
                pass

    def _completion(self, message: Any, started: float) -> Completion:
        texts, calls = [], []
        for block in message.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                calls.append({"id": block.id, "type": "function", "function": {"name": block.name, "arguments": json.dumps(block.input)}})
        u = message.usage
        written = int(getattr(u, "cache_creation_input_tokens", 0) or 0)
        read = int(getattr(u, "cache_read_input_tokens", 0) or 0)
        usage = Usage(
            int(u.input_tokens or 0) + written + read, int(u.output_tokens or 0), cache_read_tokens=read, cache_write_tokens=written
        )
        return Completion(
            text="".join(texts),
            model=self.model,
            usage=usage,
            cost_usd=cost_usd(usage, self.price_in, self.price_out, self.cache_prices),
            latency_s=time.perf_counter() - started,
            finish_reason=_FINISH.get(message.stop_reason or "", "stop"),
            tool_calls=tuple(calls) or None,
            raw=message,
        )

    async def complete(self, request: ChatRequest) -> Completion:
        started = time.perf_counter()
        with provider_errors(self.name, (self._api_key,)):
            message = await self._sdk().messages.create(**to_messages_request(request, self.model, self.max_tokens))
            return self._completion(message, started)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        started = time.perf_counter()
        with provider_errors(self.name, (self._api_key,)):
            async with self._sdk().messages.stream(**to_messages_request(request, self.model, self.max_tokens)) as events:
                async for text in events.text_stream:
                    if text:
                        yield text
                message = await events.get_final_message()
            yield self._completion(message, started)
