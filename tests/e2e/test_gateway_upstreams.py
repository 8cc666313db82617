"""The real gateway (uvicorn on a loopback port, official ``openai`` client) in front of real HTTP
upstreams that need no model weights: streams when an upstream fails (before the first token the
cascade moves on; after it the client gets an error event and no ``[DONE]``, and the log row keeps
the partial answer), the profile's system prompt and default ``max_tokens`` as the upstream sees
them, a profile budget, keys, and the cost-saved metric.

Upstreams (stand-ins, not models): ``fault_upstream.FaultUpstream`` — a real HTTP server that
misbehaves on purpose — and ``ToolUpstream`` below, an OpenAI-compatible server that always answers
with one ``get_weather`` tool call whose arguments are valid (``/good``) or break the schema (``/bad``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import httpx
import openai
import pytest
from fault_upstream import FaultUpstream
from gateway_proc import serve_in_thread

from thrifty.config.settings import hash_key, parse_settings
from thrifty.store import LogStore

Q = [{"role": "user", "content": "hi"}]
ALICE = "sk-upstreams-test-key"


class ToolUpstream:
    """Answers every chat request with a tool call; ``/bad/v1`` sends ``{"city": 5}``, ``/good/v1`` ``{"city": "Paris"}``."""

    def __init__(self) -> None:
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        bodies = self.bodies = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                bodies.append((self.path, body))
                args = {"city": 5} if self.path.startswith("/bad/") else {"city": "Paris"}
                if body.get("stream"):
                    call = {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": json.dumps(args)},
                    }
                    events = [
                        {
                            "choices": [
                                {"index": 0, "delta": {"role": "assistant", "content": None, "tool_calls": [call]}, "finish_reason": None}
                            ]
                        },
                        {
                            "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
                            "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
                        },
                    ]
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("connection", "close")
                    self.end_headers()
                    for e in events:
                        e.update({"id": "chatcmpl-tool", "object": "chat.completion.chunk", "created": 0, "model": body["model"]})
                        self.wfile.write(b"data: " + json.dumps(e).encode() + b"\n\n")
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.close_connection = True
                    return
                out = json.dumps(
                    {
                        "id": "chatcmpl-tool",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "tool_calls",
                                "message": {
                                    "role": "assistant",
                                    "content": None,
                                    "tool_calls": [
                                        {
                                            "id": "call_1",
                                            "type": "function",
                                            "function": {"name": "get_weather", "arguments": json.dumps(args)},
                                        }
                                    ],
                                },
                            }
                        ],
                        "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def base_url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{mode}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


WEATHER = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    data = tmp_path_factory.mktemp("midstream")
    tools_up = ToolUpstream()
    with FaultUpstream() as up:
        price = {"input": 1.0, "output": 2.0}
        settings = parse_settings(
            {
                "server": {"data_dir": str(data), "request_timeout_s": 10},
                "providers": {
                    "cut": {"kind": "openai", "base_url": up.base_url("truncated"), "prices": price, "timeout_s": 2},
                    "ok": {"kind": "openai", "base_url": up.base_url("normal"), "prices": price},
                    "dead": {"kind": "openai", "base_url": up.base_url("503"), "prices": price, "timeout_s": 1},
                    # the upstream reports 5 output tokens per answer: $0.05 each at $10,000 per 1M
                    "tool_bad": {"kind": "openai", "base_url": tools_up.base_url("bad"), "prices": price},
                    "tool_good": {"kind": "openai", "base_url": tools_up.base_url("good"), "prices": price},
                    "pricey": {"kind": "openai", "base_url": up.base_url("normal~pricey"), "prices": {"input": 0.0, "output": 10_000.0}},
                },
                "profiles": {
                    "default": {"tiers": ["dead", "ok"], "thresholds": [0.5]},
                    "support": {"tiers": ["ok"], "system": "You are ACME support ({profile})."},
                    "capped": {"tiers": ["pricey"], "budget_usd": 0.2},
                    "tools": {"tiers": ["tool_bad", "tool_good"], "thresholds": [0.0]},  # any *valid* answer of tier 0 would do
                },
                "keys": {"alice": {"sha256": hash_key(ALICE)}},
            }
        )
        try:
            with serve_in_thread(settings, timeout_s=20) as base:
                yield {"base": base, "db": Path(data) / "logs.sqlite3", "up": up, "tools_up": tools_up}
        finally:
            tools_up.close()


def client(gw: dict) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw["base"] + "/v1", api_key=ALICE, max_retries=0, timeout=30)


def test_upstream_dying_mid_stream_ends_with_an_error_event(gw: dict) -> None:
    got: list[str] = []
    with pytest.raises(openai.APIError, match="mid-stream"):
        for chunk in client(gw).chat.completions.create(model="cut", messages=Q, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                got.append(chunk.choices[0].delta.content)
    assert "".join(got) == "partial "  # what the upstream sent before it died reached the client
    raw = httpx.post(
        gw["base"] + "/v1/chat/completions",
        json={"model": "cut", "messages": Q, "stream": True},
        headers={"authorization": f"Bearer {ALICE}"},
        timeout=30,
    ).text
    assert '"error"' in raw and "[DONE]" not in raw
    store = LogStore(gw["db"])
    row = next(r for r in store.list(50) if r["model_requested"] == "cut")
    full = store.get(row["id"])
    assert full["status"] == 502 and full["answer"] == "partial " and full["tiers_tried"] == ["cut"]
    assert [(s["model"], s["decision"]) for s in full["steps"]] == [("cut", "failed")]


def test_failure_before_the_first_token_falls_to_the_next_tier(gw: dict) -> None:
    with client(gw).chat.completions.with_streaming_response.create(model="thrifty/default", messages=Q, stream=True) as resp:
        assert resp.headers["x-thrifty-tiers"] == "dead,ok" and resp.headers["x-thrifty-model"] == "ok"
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    assert text.strip() == "answer from normal"
    store = LogStore(gw["db"])
    full = store.get(resp.headers["x-thrifty-request-id"])
    assert [(s["model"], s["decision"]) for s in full["steps"]] == [("dead", "failed"), ("ok", "accepted")]


def test_no_vision_tier_is_422_before_any_call(gw: dict) -> None:
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}]
    before = LogStore(gw["db"]).count()
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client(gw).chat.completions.create(model="ok", messages=image)
    assert info.value.body["code"] == "unprocessable"
    assert LogStore(gw["db"]).count() == before


def test_profile_system_prompt_and_default_max_tokens_reach_the_upstream(gw: dict) -> None:
    n = len(gw["up"].bodies)
    client(gw).chat.completions.create(model="thrifty/support", messages=Q)
    body = gw["up"].bodies[n]
    assert body["messages"][0] == {"role": "system", "content": "You are ACME support (support)."}
    assert body["messages"][1] == Q[0] and body["max_tokens"] == 512  # the provider's cap: no unbounded answers
    own = [{"role": "system", "content": "Be brief."}, *Q]
    client(gw).chat.completions.create(model="thrifty/support", messages=own, max_tokens=7)
    body = gw["up"].bodies[n + 1]
    assert body["messages"] == own and body["max_tokens"] == 7  # the client's own system prompt wins


def test_profile_budget_refuses_once_spent(gw: dict) -> None:
    # budget $0.20; each call holds 7 × $0.01 = $0.07 and really costs 5 × $0.01 = $0.05:
    # calls 1–3 fit (spent 0.15), the 4th would risk 0.15 + 0.07 > 0.20 and is refused
    outcomes = []
    for _ in range(5):
        try:
            raw = client(gw).chat.completions.with_raw_response.create(model="thrifty/capped", messages=Q, max_tokens=7)
            outcomes.append(float(raw.headers["x-thrifty-cost-usd"]))
        except openai.RateLimitError as exc:
            assert exc.body["code"] == "budget_exceeded" and exc.body["type"] == "insufficient_quota"
            outcomes.append("429")
    assert outcomes == [pytest.approx(0.05)] * 3 + ["429", "429"]
    spent = sum(r["cost_usd"] for r in LogStore(gw["db"]).list(200) if r["profile"] == "capped")
    assert spent == pytest.approx(0.15) and spent <= 0.2
    assert sum(1 for r in LogStore(gw["db"]).list(200) if r["profile"] == "capped") == 3  # refusals are not logged


def test_keys_are_required_and_never_logged(gw: dict) -> None:
    r = httpx.post(gw["base"] + "/v1/chat/completions", json={"model": "ok", "messages": Q}, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert ALICE.encode() not in gw["db"].read_bytes()


def test_cost_saved_against_the_most_expensive_tier_is_exported(gw: dict) -> None:
    client(gw).chat.completions.create(model="thrifty/default", messages=Q, max_tokens=5)
    text = httpx.get(gw["base"] + "/metrics", timeout=10).text
    line = next(ln for ln in text.splitlines() if ln.startswith('thrifty_baseline_cost_usd_total{model="thrifty/default"}'))
    assert float(line.split()[-1]) > 0
    assert 'thrifty_escalations_total{model="thrifty/default"}' in text


def test_tools_pass_through_and_a_schema_breaking_tool_call_escalates(gw: dict) -> None:
    n = len(gw["tools_up"].bodies)
    raw = client(gw).chat.completions.with_raw_response.create(
        model="thrifty/tools", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=WEATHER, tool_choice="auto"
    )
    r = raw.parse()
    assert raw.headers["x-thrifty-tiers"] == "tool_bad,tool_good" and raw.headers["x-thrifty-model"] == "tool_good"
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
    assert call.function.name == "get_weather" and call.function.arguments == '{"city": "Paris"}'
    sent = [b for _, b in gw["tools_up"].bodies[n:]]
    assert all(b["tools"][0]["function"]["name"] == "get_weather" and b["tool_choice"] == "auto" for b in sent)
    steps = LogStore(gw["db"]).get(raw.headers["x-thrifty-request-id"])["steps"]
    assert [(s["model"], s["decision"]) for s in steps] == [("tool_bad", "failed"), ("tool_good", "accepted")]
    assert "schema" in steps[0]["error"]
    # streamed: the tool call arrives as a tool_calls delta before the finish chunk
    chunks = list(
        client(gw).chat.completions.create(
            model="thrifty/tools", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=WEATHER, stream=True
        )
    )
    deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert deltas and deltas[0][0].function.arguments == '{"city": "Paris"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
