"""The live path, hardened (pure logic, fake providers; the real-server side is tests/e2e/test_live_path_servers.py):

- a bug in a provider adapter is a bug (500 with the request id, traceback logged), not a quiet "next tier";
- one retry/deadline loop: a provider call runs in the request's own task, buffered or streamed;
- ``blocking`` is part of the Policy protocol; a policy that does not declare it is a ConfigError;
- every in-process memo is bounded; the embedding cache does not write per request;
- estimated token counts are flagged; cache tokens are priced at cache prices;
- the lean HTTP client touches no private attribute.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from thrifty.errors import ConfigError, ProviderError
from thrifty.policy.cascade import CascadePolicy
from thrifty.serving.engine import Engine
from thrifty.types import ChatRequest, Completion, Policy, Usage

REQ = ChatRequest.from_prompt("What is 2+2?")


class Scorer:
    def score(self, request, completion, model):  # noqa: ANN001
        return 0.0  # always escalate


class Provider:
    streams = True

    def __init__(self, name: str, fail: BaseException | None = None) -> None:
        self.name = self.model = name
        self.fail = fail
        self.calls = 0
        self.tasks: list[Any] = []

    async def complete(self, request):  # noqa: ANN001
        self.calls += 1
        self.tasks.append(asyncio.current_task())
        if self.fail is not None:
            raise self.fail
        return Completion(f"{self.name} answer", self.name, Usage(3, 4), cost_usd=0.001)

    async def stream(self, request):  # noqa: ANN001
        self.calls += 1
        self.tasks.append(asyncio.current_task())
        if self.fail is not None:
            raise self.fail
        yield f"{self.name} answer"
        yield Completion(f"{self.name} answer", self.name, Usage(3, 4), cost_usd=0.001)


def engine(small: Provider, big: Provider) -> Engine:
    return Engine(CascadePolicy(["small", "big"], [0.5], Scorer()), {"small": small, "big": big}, backoff_s=0.001)


# ---- adapter bugs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bug", [KeyError("choices"), TypeError("'NoneType' object is not subscriptable"), AttributeError("x")])
def test_a_bug_in_an_adapter_propagates_instead_of_moving_to_the_next_tier(bug: Exception) -> None:
    small, big = Provider("small", fail=bug), Provider("big")
    with pytest.raises(type(bug)):
        engine(small, big).complete_sync(REQ)
    assert small.calls == 1 and big.calls == 0  # not retried, no silent failover


def test_a_bug_while_streaming_propagates_too() -> None:
    small, big = Provider("small"), Provider("big", fail=KeyError("delta"))

    async def go() -> list[Any]:
        return [ev async for ev in engine(small, big).stream(REQ)]

    with pytest.raises(KeyError):
        asyncio.run(go())


def test_known_upstream_failures_still_fail_over() -> None:
    for failure in (
        httpx.ConnectError("refused"),
        asyncio.TimeoutError(),
        ConnectionResetError(),
        ValueError("Requested tokens exceed context window"),
        ProviderError("busy", provider="small", status=503),
    ):
        small, big = Provider("small", fail=failure), Provider("big")
        trace = engine(small, big).complete_sync(REQ)
        assert trace.model == "big", failure


def test_the_error_boundary_lets_bugs_through_and_translates_the_known() -> None:
    from thrifty.serving.providers._errors import known_failure, provider_errors

    with pytest.raises(KeyError):
        with provider_errors("p"):
            raise KeyError("usage")
    assert known_failure(KeyError("x"), "p") is None and known_failure(TypeError("x"), "p") is None
    import json

    bad_json = known_failure(json.JSONDecodeError("Expecting value", "<html>", 0), "p")
    assert bad_json is not None and bad_json.status == 502


def test_gateway_answers_a_bug_with_500_naming_the_request_id_and_logs_the_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from thrifty.config.settings import parse_settings
    from thrifty.gateway.app import create_app

    price = {"input": 1.0, "output": 2.0}
    settings = parse_settings(
        {
            "server": {"data_dir": str(tmp_path)},
            "providers": {
                "a": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "prices": price},
                "b": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "prices": price},
            },
            "profiles": {"default": {"tiers": ["a", "b"], "thresholds": [0.5], "scorer": "heuristic"}},
        }
    )
    app = create_app(settings)
    called: list[str] = []

    async def buggy(request: Any) -> Completion:
        called.append("a")
        return {}["choices"]  # an adapter bug: KeyError

    async def healthy(request: Any) -> Completion:
        called.append("b")
        return Completion("fine", "b", Usage(1, 1), cost_usd=0.0)

    async def go() -> httpx.Response:
        async with app.router.lifespan_context(app):
            engine_ = app.state.runtime.routes["thrifty/default"].engine
            engine_.providers[0].complete, engine_.providers[1].complete = buggy, healthy
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
                return await c.post(
                    "/v1/chat/completions", json={"model": "thrifty/default", "messages": [{"role": "user", "content": "hi"}]}
                )

    with caplog.at_level(logging.ERROR, logger="thrifty.gateway"):
        r = asyncio.run(go())
    rid = r.headers["x-thrifty-request-id"]
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert rid in r.json()["error"]["message"]
    assert called == ["a"]  # tier b was never asked
    logged = [rec for rec in caplog.records if rec.exc_info and rec.exc_info[0] is KeyError]
    assert logged and rid in logged[0].getMessage()
    db = sqlite3.connect(tmp_path / "logs.sqlite3")
    assert db.execute("SELECT status FROM requests WHERE id = ?", (rid,)).fetchone() == (500,)


# ---- one retry loop -------------------------------------------------------------------------------
def test_provider_calls_run_in_the_request_task_buffered_and_streamed() -> None:
    small, big = Provider("small"), Provider("big")
    eng = engine(small, big)

    async def go() -> tuple[Any, Any]:
        await eng.run(REQ)
        run_task = asyncio.current_task()
        async for _ in eng.stream(REQ):
            pass
        return run_task, asyncio.current_task()

    run_task, stream_task = asyncio.run(go())
    # no asyncio.wait_for Task per call: the deadline is a timeout scope in the caller's task
    assert small.tasks == [run_task, stream_task] and big.tasks[0] is run_task
    assert not hasattr(Engine, "_stream_tier")  # the streamed path uses the same loop as the buffered one


# ---- blocking in the protocol ---------------------------------------------------------------------
def test_blocking_is_declared_by_the_policy_protocol() -> None:
    assert "blocking" in Policy.__annotations__
    assert CascadePolicy(["a"], [], None).blocking is False

    class Bare:
        tiers = ("a",)

        def plan(self, request):  # noqa: ANN001
            yield from ()

    with pytest.raises(ConfigError, match="blocking"):
        Engine(Bare(), {"a": Provider("a")})  # type: ignore[arg-type]
    assert 'getattr(self.policy, "blocking"' not in inspect.getsource(Engine)


# ---- bounded memos --------------------------------------------------------------------------------
class CountingEmbedder:
    name, dim = "counting", 3

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts):  # noqa: ANN001
        self.calls += len(texts)
        return np.array([[len(t), 1.0, 0.0] for t in texts], dtype=np.float32)


def test_embedding_memo_is_bounded_and_the_disk_cache_is_written_in_batches(tmp_path: Path) -> None:
    from thrifty.scoring.embedding import CachedEmbedder

    inner = CountingEmbedder()
    emb = CachedEmbedder(inner, tmp_path / "emb.sqlite", memory_entries=2)
    for text in ("one", "three", "fifteen"):  # one request each
        emb.embed([text])
    assert len(emb._memory) == 2
    rows = lambda: sqlite3.connect(tmp_path / "emb.sqlite").execute("SELECT COUNT(*) FROM emb").fetchone()[0]  # noqa: E731
    assert rows() == 0  # no write per request: the disk cache only needs to be warm
    emb.flush()
    assert rows() == 3
    again = CachedEmbedder(inner, tmp_path / "emb.sqlite", memory_entries=2)
    assert again.embed(["one"])[0][0] == 3.0 and inner.calls == 3  # warm from disk, not re-embedded


def test_memo_entries_setting_bounds_every_per_text_memo(tmp_path: Path) -> None:
    from thrifty.config.settings import parse_settings
    from thrifty.scoring import answer_scorer, finetuned
    from thrifty.scoring.memo import DEFAULT_ENTRIES, LRUMemo, memo_entries, set_memo_entries

    assert parse_settings({"server": {"memo_entries": 3}}).server.memo_entries == 3
    with pytest.raises(ConfigError, match="server.memo_entries"):
        parse_settings({"server": {"memo_entries": 0}})
    assert isinstance(finetuned._MEMO, LRUMemo) and finetuned._MEMO.maxsize <= 8
    try:
        set_memo_entries(2)
        answer_scorer._features(["q1", "q2", "q3"], ["a", "b", "c"])
        assert len(answer_scorer._FEATURES) == 2 and memo_entries() == 2
        memo: LRUMemo[str, int] = LRUMemo()
        for i in range(5):
            memo.put(str(i), i)
        assert len(memo) == 2 and memo.get("4") == 4 and memo.get("0") is None
    finally:
        set_memo_entries(DEFAULT_ENTRIES)


def test_few_shot_selection_memo_is_an_lru_memo() -> None:
    from thrifty.scoring.memo import LRUMemo
    from thrifty.serving.adapted_provider import FewShotAdapter

    src = inspect.getsource(FewShotAdapter.__init__)
    assert "LRUMemo(" in src and isinstance(LRUMemo(), LRUMemo)


# ---- estimated tokens, cache prices ---------------------------------------------------------------
def test_usage_without_upstream_counts_is_flagged_estimated() -> None:
    from thrifty.serving.providers.openai_compat import _usage

    assert _usage({"prompt_tokens": 7, "completion_tokens": 2}, REQ, "four") == Usage(7, 2)
    for missing in (None, {}, {"prompt_tokens": "lots"}):
        u = _usage(missing, REQ, "four and more words")
        assert u.estimated and u.input_tokens >= 1 and u.output_tokens >= 1


def test_cost_prices_cache_reads_and_writes_at_their_own_prices() -> None:
    from thrifty.serving.providers.base import cost_usd

    u = Usage(1200, 10, cache_read_tokens=1000, cache_write_tokens=100)
    assert cost_usd(u, 1.0, 5.0) == pytest.approx((1200 * 1.0 + 10 * 5.0) / 1e6)  # no cache prices: all input at price_in
    assert cost_usd(u, 1.0, 5.0, (0.1, 1.25)) == pytest.approx((100 * 1.0 + 1000 * 0.1 + 100 * 1.25 + 10 * 5.0) / 1e6)


# ---- http1 ----------------------------------------------------------------------------------------
def test_http1_client_uses_no_private_attribute_of_foreign_objects() -> None:
    import thrifty.serving.providers.http1 as http1

    tree = ast.parse(Path(http1.__file__).read_text())
    private = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                private.append(node.attr)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("getattr", "hasattr") and len(node.args) > 1:
            arg = node.args[1]
            if isinstance(arg, ast.Constant) and str(arg.value).startswith("_"):
                private.append(arg.value)
    assert private == []
