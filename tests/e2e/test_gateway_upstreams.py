"""Streams through the real gateway (uvicorn on a loopback port, official ``openai`` client) when an
upstream fails: before the first token the cascade moves on; after it the client gets an error event
and no ``[DONE]``, and the log row keeps the partial answer.

Upstream: ``fault_upstream.FaultUpstream`` — a real HTTP server that misbehaves on purpose (a stand-in
for a broken provider, not a model).
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import openai
import pytest

from fault_upstream import FaultUpstream
from thrifty.config import parse_settings
from thrifty.store import LogStore

Q = [{"role": "user", "content": "hi"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    import uvicorn

    from thrifty.gateway.app import create_app

    data = tmp_path_factory.mktemp("midstream")
    with FaultUpstream() as up:
        price = {"input": 1.0, "output": 2.0}
        settings = parse_settings({
            "server": {"data_dir": str(data), "request_timeout_s": 10},
            "providers": {
                "cut": {"kind": "openai", "base_url": up.base_url("truncated"), "prices": price, "timeout_s": 2},
                "ok": {"kind": "openai", "base_url": up.base_url("normal"), "prices": price},
                "dead": {"kind": "openai", "base_url": up.base_url("503"), "prices": price, "timeout_s": 1},
            },
            "profiles": {"default": {"tiers": ["dead", "ok"], "thresholds": [0.5]}},
        })
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        try:
            yield {"base": f"http://127.0.0.1:{port}", "db": Path(data) / "logs.sqlite3"}
        finally:
            server.should_exit = True
            thread.join(10)


def client(gw: dict) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw["base"] + "/v1", api_key="unused", max_retries=0, timeout=30)


def test_upstream_dying_mid_stream_ends_with_an_error_event(gw: dict) -> None:
    got: list[str] = []
    with pytest.raises(openai.APIError, match="mid-stream"):
        for chunk in client(gw).chat.completions.create(model="cut", messages=Q, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                got.append(chunk.choices[0].delta.content)
    assert "".join(got) == "partial "  # what the upstream sent before it died reached the client
    raw = httpx.post(gw["base"] + "/v1/chat/completions", json={"model": "cut", "messages": Q, "stream": True}, timeout=30).text
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
