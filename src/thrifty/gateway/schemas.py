"""The OpenAI chat-completions wire format: request validation and exact response/chunk bodies.

Requests are validated strictly (a string where a number belongs is an error, not coerced).
Parameters thrifty does not model are accepted and dropped (``metadata``, ``store`` …), as long as
the body is a JSON object; ``n`` other than 1 is refused (one answer per request).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal, Mapping, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from thrifty.types import ChatRequest, Completion

__all__ = [
    "ChatMessage",
    "ChatCompletionRequest",
    "to_chat_request",
    "completion_body",
    "chunk_body",
    "models_body",
    "new_completion_id",
    "PASSTHROUGH_PARAMS",
]

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
_PART_TYPES = ("text", "image_url", "input_audio", "file", "refusal")

#: Sampling parameters forwarded to the provider (when the client set them).
PASSTHROUGH_PARAMS = (
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "response_format",
    "parallel_tool_calls",
    "user",
)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class FunctionDef(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDef


_TEXT_PART = {"type": "object", "required": ["type", "text"], "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}
_IMAGE_PART = {
    "type": "object",
    "required": ["type", "image_url"],
    "properties": {
        "type": {"const": "image_url"},
        "image_url": {"type": "object", "required": ["url"], "properties": {"url": {"type": "string", "minLength": 1}}},
    },
}
_OTHER_PART = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"enum": [t for t in _PART_TYPES if t not in ("text", "image_url")]}},
}
_CONTENT = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"anyOf": [_TEXT_PART, _IMAGE_PART, _OTHER_PART]}}]}


def _message_schema(schema: dict[str, Any]) -> None:
    """What :meth:`ChatMessage._content_required` enforces, in the OpenAPI schema (OpenAI's rules):
    ``content`` is required (not null) for system, developer, user and tool messages — a tool message
    also needs ``tool_call_id`` — and for an assistant message unless it carries ``tool_calls`` (or
    the legacy ``function_call``)."""
    schema["properties"]["content"] = {"anyOf": [*_CONTENT["anyOf"], {"type": "null"}], "default": None, "title": "Content"}

    def branch(roles: tuple[str, ...], **required: Any) -> dict[str, Any]:
        return {"properties": {"role": {"enum": list(roles)}, **required}, "required": ["role", *required]}

    schema["anyOf"] = [
        branch(("system", "developer", "user"), content=_CONTENT),
        branch(("tool",), content=_CONTENT, tool_call_id={"type": "string", "minLength": 1}),
        branch(("assistant",), content=_CONTENT),
        branch(("assistant",), tool_calls={"type": "array", "minItems": 1, "items": {"type": "object"}}),
        branch(("assistant",), function_call={"type": "object"}),
        branch(("function",)),
    ]


class ChatMessage(_Strict):
    model_config = ConfigDict(strict=True, extra="allow", json_schema_extra=_message_schema)

    role: Role
    content: Union[str, list[dict[str, Any]], None] = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @field_validator("content")
    @classmethod
    def _parts(cls, v: Any) -> Any:
        if isinstance(v, list):
            for i, part in enumerate(v):
                t = part.get("type")
                if t not in _PART_TYPES:
                    raise ValueError(f"content[{i}].type must be one of {', '.join(_PART_TYPES)}, got {t!r}")
                if t == "text" and not isinstance(part.get("text"), str):
                    raise ValueError(f"content[{i}].text must be a string")
                if t == "image_url":
                    iu = part.get("image_url")
                    url = iu.get("url") if isinstance(iu, dict) else None
                    if not isinstance(url, str) or not url:
                        raise ValueError(f"content[{i}].image_url.url must be a string")
        return v

    @model_validator(mode="after")
    def _content_required(self) -> "ChatMessage":  # mirrored in the OpenAPI schema by _message_schema
        if self.content is None and self.role in ("system", "developer", "user", "tool"):
            raise ValueError(f"a {self.role} message needs content")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id")
        if self.role == "assistant" and self.content is None and not self.tool_calls and not (self.model_extra or {}).get("function_call"):
            raise ValueError("an assistant message needs content, unless it has tool_calls")
        return self


class StreamOptions(_Strict):
    include_usage: bool | None = None


class ChatCompletionRequest(_Strict):
    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=4096)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=1)
    stop: Union[str, list[str], None] = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    tools: list[Tool] | None = None
    tool_choice: Union[Literal["none", "auto", "required"], dict[str, Any], None] = None
    parallel_tool_calls: bool | None = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: Any) -> Any:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v


def to_chat_request(body: ChatCompletionRequest) -> ChatRequest:
    """The validated wire request as thrifty's ChatRequest (params: only what the client set)."""
    params = {k: getattr(body, k) for k in PASSTHROUGH_PARAMS if getattr(body, k) is not None}
    messages = tuple(m.model_dump(exclude_none=True) for m in body.messages)
    tools = tuple(t.model_dump(exclude_none=True) for t in body.tools) if body.tools else None
    return ChatRequest(
        messages=messages, model=body.model, params=params, tools=tools, tool_choice=body.tool_choice, stream=bool(body.stream)
    )


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def _usage(c: Completion | None) -> dict[str, int]:
    i = c.usage.input_tokens if c else 0
    o = c.usage.output_tokens if c else 0
    return {"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o}


def _tool_calls(c: Completion) -> list[dict[str, Any]]:
    out = []
    for tc in c.tool_calls or ():
        fn = tc.get("function") or {}
        args = fn.get("arguments", "{}")
        out.append(
            {
                "id": tc.get("id") or f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": fn.get("name", ""), "arguments": args if isinstance(args, str) else json.dumps(args)},
            }
        )
    return out


def completion_body(completion_id: str, model: str, c: Completion, created: int | None = None) -> dict[str, Any]:
    """A ``chat.completion`` object exactly as OpenAI shapes it."""
    message: dict[str, Any] = {"role": "assistant", "content": c.text if (c.text or not c.tool_calls) else None, "refusal": None}
    finish = c.finish_reason or "stop"
    if c.tool_calls:
        message["tool_calls"] = _tool_calls(c)
        finish = "tool_calls" if finish in ("stop", "tool_calls") else finish
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(created if created is not None else time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": _usage(c),
        "system_fingerprint": None,
    }


def chunk_body(
    completion_id: str,
    model: str,
    created: int,
    *,
    delta: Mapping[str, Any] | None = None,
    finish_reason: str | None = None,
    usage: Completion | None = None,
    usage_only: bool = False,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``: a delta, a finish chunk, or (``usage_only``) the usage chunk."""
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
    }
    if usage_only:
        body["choices"] = []
        body["usage"] = _usage(usage)
    else:
        body["choices"] = [{"index": 0, "delta": dict(delta or {}), "logprobs": None, "finish_reason": finish_reason}]
    return body


def tool_call_deltas(c: Completion) -> list[dict[str, Any]]:
    """Tool calls of a finished answer as one streaming delta list (with ``index``)."""
    return [{"index": i, **tc} for i, tc in enumerate(_tool_calls(c))]


def models_body(names: list[tuple[str, str]], created: int) -> dict[str, Any]:
    """``GET /v1/models``: (id, owner) pairs as OpenAI's model list."""
    return {"object": "list", "data": [{"id": n, "object": "model", "created": created, "owned_by": owner} for n, owner in names]}
