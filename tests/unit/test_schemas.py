"""OpenAI wire format: strict request validation, exact response/chunk shapes, error mapping."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from thrifty.errors import AuthError, BudgetExceeded, ProviderError, RequestError
from thrifty.gateway.errors import PayloadTooLarge, status_and_body
from thrifty.gateway.schemas import ChatCompletionRequest, chunk_body, completion_body, to_chat_request, tool_call_deltas
from thrifty.types import Completion, Usage

USER = [{"role": "user", "content": "hi"}]


def parse(**body):
    return ChatCompletionRequest.model_validate({"model": "thrifty/default", "messages": USER, **body})


def test_valid_request_becomes_a_chat_request_with_only_the_params_set() -> None:
    tools = [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
        }
    ]
    req = to_chat_request(
        parse(max_tokens=8, temperature=0.0, stop=["\n"], tools=tools, tool_choice="auto", stream=True, metadata={"x": 1})
    )
    assert req.params == {"max_tokens": 8, "temperature": 0.0, "stop": ["\n"]}
    assert req.tools[0]["function"]["name"] == "get_weather" and req.tool_choice == "auto" and req.stream
    assert req.messages == ({"role": "user", "content": "hi"},)
    assert req.prompt_text == "hi"


def test_image_parts_are_kept() -> None:
    msg = {
        "role": "user",
        "content": [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
    }
    req = to_chat_request(ChatCompletionRequest.model_validate({"model": "m", "messages": [msg]}))
    assert req.has_images and req.prompt_text == "what is this?"


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": USER}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": "m", "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user"}]}, "messages[0]"),
        ({"model": "m", "messages": [{"role": "tool", "content": "42"}]}, "messages[0]"),
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": "video", "url": "x"}]}]}, "messages[0].content"),
        ({"model": "m", "messages": USER, "max_tokens": "5"}, "max_tokens"),
        ({"model": "m", "messages": USER, "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "messages": USER, "temperature": 3}, "temperature"),
        ({"model": "m", "messages": USER, "n": 2}, "n"),
        ({"model": "m", "messages": USER, "stream": "yes"}, "stream"),
        ({"model": 7, "messages": USER}, "model"),
        ({"model": "m", "messages": USER, "tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
    ],
)
def test_bad_requests_are_400_naming_the_param(body: dict, param: str) -> None:
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate(body)
    status, err, _ = status_and_body(info.value)
    assert status == 400
    assert err["error"]["type"] == "invalid_request_error"
    assert (err["error"]["param"] or "").startswith(param), err


def test_completion_body_is_openai_shaped() -> None:
    c = Completion(text="4", model="small", usage=Usage(7, 1))
    body = completion_body("chatcmpl-1", "small", c, created=123)
    assert body == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 123,
        "model": "small",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "4", "refusal": None}, "logprobs": None, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8},
        "system_fingerprint": None,
    }


def test_tool_calls_in_bodies_and_chunks() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}
    c = Completion(text="", model="m", tool_calls=(call,))
    body = completion_body("id", "m", c, created=1)
    msg = body["choices"][0]["message"]
    assert msg["content"] is None and body["choices"][0]["finish_reason"] == "tool_calls"
    assert msg["tool_calls"] == [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]
    assert tool_call_deltas(c)[0]["index"] == 0
    delta = chunk_body("id", "m", 1, delta={"content": "a"})
    assert delta["object"] == "chat.completion.chunk" and delta["choices"][0]["delta"] == {"content": "a"}
    usage = chunk_body("id", "m", 1, usage=Completion("x", "m", Usage(2, 3)), usage_only=True)
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 5


@pytest.mark.parametrize(
    "exc, status, type_",
    [
        (RequestError("nope", param="model", code="model_not_found"), 404, "invalid_request_error"),
        (RequestError("no vision", code="unprocessable"), 422, "invalid_request_error"),
        (RequestError("bad json", code="invalid_json"), 400, "invalid_request_error"),
        (PayloadTooLarge(10), 413, "invalid_request_error"),
        (AuthError("unknown API key"), 401, "authentication_error"),
        (BudgetExceeded("over"), 429, "insufficient_quota"),
        (ProviderError("down", provider="p", status=503), 502, "upstream_error"),
        (ProviderError("slow", provider="p", status=504), 504, "upstream_error"),
        (ProviderError("too long", provider="p", status=400), 400, "invalid_request_error"),
        (ProviderError("slow down", provider="p", status=429, retry_after=2.0), 429, "rate_limit_error"),
        (ZeroDivisionError("secret internals"), 500, "server_error"),
    ],
)
def test_every_error_maps_to_openai_error_json(exc: BaseException, status: int, type_: str) -> None:
    got, body, headers = status_and_body(exc)
    assert got == status and body["error"]["type"] == type_
    assert set(body["error"]) == {"message", "type", "param", "code"}
    if status == 500:
        assert "secret internals" not in body["error"]["message"]  # no internals leak
    if status == 401:
        assert headers.get("www-authenticate") == "Bearer"


def test_openapi_message_schema_agrees_with_the_validator():
    """The published JSON schema of a message accepts exactly what the server accepts: content is
    required for system/developer/user/tool, optional for an assistant message with tool_calls."""
    jsonschema = pytest.importorskip("jsonschema")
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from pydantic import ValidationError

    from thrifty.gateway.schemas import ChatMessage

    schema = jsonschema.Draft202012Validator(ChatMessage.model_json_schema())
    part = st.one_of(
        st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(st.text(max_size=2), st.integers())}),
        st.fixed_dictionaries(
            {"type": st.sampled_from(["image_url", "video", "file"])},
            optional={"image_url": st.fixed_dictionaries({"url": st.sampled_from(["", "http://x/i.png"])})},
        ),
    )
    content = st.one_of(st.none(), st.text(max_size=3), st.lists(part, max_size=2))
    message = st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"])},
        optional={
            "content": content,
            "tool_call_id": st.one_of(st.none(), st.sampled_from(["", "call_1"])),
            "tool_calls": st.one_of(st.none(), st.lists(st.just({"id": "call_1", "type": "function"}), max_size=1)),
        },
    )
    seen: set[tuple[str, bool]] = set()

    @settings(max_examples=1500, deadline=None, database=None)
    @given(message)
    def agree(m: dict) -> None:
        try:
            ChatMessage.model_validate(m)
            accepted = True
        except ValidationError:
            accepted = False
        assert schema.is_valid(m) == accepted, m
        seen.add((m["role"], accepted))

    agree()
    for role in ("user", "tool", "assistant"):
        assert (role, True) in seen and (role, False) in seen  # both outcomes were exercised
    assert schema.is_valid({"role": "assistant", "tool_calls": [{"id": "c"}]})
    assert not schema.is_valid({"role": "user"}) and not schema.is_valid({"role": "user", "content": None})
