"""The real gateway (uvicorn on a loopback port, official ``openai`` client) in front of real HTTP
upstreams that need no model weights: streams when an upstream fails (before the first token the
cascade moves on; after it the client gets an error event and no ``[DONE]``, and the log row keeps
the partial answer), the profile's system prompt and default ``max_tokens`` as the upstream sees
them, a profile budget, keys, and the cost-saved metric.

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
from thrifty.config import hash_key, parse_settings
from thrifty.store import LogStore

Q = [{"role": "user", "content": "hi"}]
ALICE = "sk-upstreams-test-key"


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
                # the upstream reports 5 output tokens per answer: $0.05 each at $10,000 per 1M
                "pricey": {"kind": "openai", "base_url": up.base_url("normal~pricey"), "prices": {"input": 0.0, "output": 10_000.0}},
            },
            "profiles": {
                "default": {"tiers": ["dead", "ok"], "thresholds": [0.5]},
                "support": {"tiers": ["ok"], "system": "You are ACME support ({profile})."},
                "capped": {"tiers": ["pricey"], "budget_usd": 0.2},
            },
            "keys": {"alice": {"sha256": hash_key(ALICE)}},
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
            yield {"base": f"http://127.0.0.1:{port}", "db": Path(data) / "logs.sqlite3", "up": up}
        finally:
            server.should_exit = True
            thread.join(10)


def client(gw: dict) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw["base"] + "/v1", api_key=ALICE, max_retries=0, timeout=30)


def test_upstream_dying_mid_stream_ends_with_an_error_event(gw: dict) -> None:
    got: list[str] = []
    with pytest.raises(openai.APIError, match="mid-stream"):
        for chunk in client(gw).chat.completions.create(model="cut", messages=Q, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                got.append(chunk.choices[0].delta.content)
    assert "".join(got) == "partial "  # what the upstream sent before it died reached the client
    raw = httpx.post(gw["base"] + "/v1/chat/completions", json={"model": "cut", "messages": Q, "stream": True},
                     headers={"authorization": f"Bearer {ALICE}"}, timeout=30).text
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
