"""The gateway's SQLite work (budget hold, log row + settlement) never blocks its event loop.

Another connection holds the database's write lock (as a second worker, a WAL checkpoint or a slow
disk would) while a chat completion runs in-process: ``/healthz`` must still answer at once, the
completion must wait for its row (a 200 always has its log row), and a request whose client leaves
while its hold waits for the lock must not leave the hold behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from thrifty.config.settings import parse_settings
from thrifty.gateway.app import build_runtime, create_app
from thrifty.policy.cascade import CascadePolicy
from thrifty.serving.engine import Engine
from thrifty.store import LogStore
from thrifty.types import Completion, Usage

LOCK_S = 1.0  # how long the other connection holds the write lock
CHAT = {"model": "thrifty/p", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


class Instant:
    """An upstream that answers at once (no socket: only the gateway's own work is measured)."""

    name = model = "a"
    price_in, price_out = 1.0, 2.0

    async def complete(self, request: Any) -> Completion:
        return Completion("hello", "a", Usage(3, 2), cost_usd=7e-6)


def runtime(tmp_path: Path, budget_usd: float | None) -> Any:
    settings = parse_settings(
        {
            "server": {"data_dir": str(tmp_path)},
            "providers": {"a": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "prices": {"input": 1.0, "output": 2.0}}},
            "profiles": {"p": {"tiers": ["a"], **({} if budget_usd is None else {"budget_usd": budget_usd})}},
        }
    )
    rt = build_runtime(settings, db_path=tmp_path / "logs.sqlite3")
    route = rt.routes["thrifty/p"]
    rt.routes["thrifty/p"] = dataclasses.replace(route, engine=Engine(CascadePolicy(["a"], [], None), {"a": Instant()}))
    return rt


def lock_database(path: Path, seconds: float) -> threading.Thread:
    """Take the write lock now from another connection; a thread releases it after ``seconds``."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")

    def release() -> None:
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    t = threading.Thread(target=release, daemon=True)
    t.start()
    return t


def serve(rt: Any, fn) -> Any:
    app = create_app(rt.settings, runtime=rt)

    async def go() -> Any:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
                return await fn(c)

    return asyncio.run(go())


def healthz_while_chat_waits(rt: Any, tmp_path: Path) -> dict[str, Any]:
    async def fn(c: httpx.AsyncClient) -> dict[str, Any]:
        done: dict[str, float] = {}
        t0 = time.perf_counter()

        async def timed(name: str, call) -> httpx.Response:
            r = await call
            done[name] = time.perf_counter() - t0
            return r

        lock_database(tmp_path / "logs.sqlite3", LOCK_S)
        chat = asyncio.create_task(timed("chat", c.post("/v1/chat/completions", json=CHAT)))
        await asyncio.sleep(0.05)  # the chat is now waiting for the database
        health = await timed("healthz", c.get("/healthz"))
        return {"chat": await chat, "healthz": health, "done": done}

    return serve(rt, fn)


def test_a_locked_database_delays_the_log_row_not_the_event_loop(tmp_path: Path) -> None:
    rt = runtime(tmp_path, budget_usd=None)  # no budget: only the log row touches the database
    out = healthz_while_chat_waits(rt, tmp_path)
    assert out["healthz"].status_code == 200
    assert out["done"]["healthz"] < LOCK_S / 2, "healthz waited for the database"
    assert out["done"]["chat"] >= LOCK_S * 0.9, "the answer must wait until its log row is committed"
    chat = out["chat"]
    assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["content"] == "hello"
    row = LogStore(tmp_path / "logs.sqlite3").get(chat.headers["x-thrifty-request-id"])  # rt.store closed at shutdown
    assert row is not None and row["status"] == 200 and row["answer"] == "hello"


def test_a_budget_hold_waits_for_the_lock_off_the_loop_and_settles(tmp_path: Path) -> None:
    rt = runtime(tmp_path, budget_usd=1.0)  # the profile's limit: admission takes a hold in SQLite
    out = healthz_while_chat_waits(rt, tmp_path)
    assert out["done"]["healthz"] < LOCK_S / 2, "healthz waited for the budget hold"
    assert out["chat"].status_code == 200
    conn = sqlite3.connect(str(tmp_path / "logs.sqlite3"))
    assert conn.execute("SELECT COUNT(*) FROM reservations").fetchone()[0] == 0
    spent = conn.execute("SELECT spent_usd FROM spend WHERE scope = 'profile' AND name = 'p'").fetchone()[0]
    assert abs(spent - 7e-6) < 1e-12  # the real cost replaced the hold


def test_a_client_leaving_while_its_hold_waits_leaves_no_hold(tmp_path: Path) -> None:
    rt = runtime(tmp_path, budget_usd=1.0)

    async def fn(c: httpx.AsyncClient) -> bool:
        releaser = lock_database(tmp_path / "logs.sqlite3", LOCK_S / 2)
        chat = asyncio.create_task(c.post("/v1/chat/completions", json=CHAT))
        await asyncio.sleep(0.1)  # admission is waiting for the lock to take the hold
        chat.cancel()
        await asyncio.gather(chat, return_exceptions=True)
        await asyncio.to_thread(releaser.join)
        return chat.cancelled()

    assert serve(rt, fn)  # shutdown drained the writer: the hold was taken, then dropped
    conn = sqlite3.connect(str(tmp_path / "logs.sqlite3"))
    assert conn.execute("SELECT COUNT(*) FROM reservations").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 0  # it never ran: not logged


def test_a_request_waiting_for_its_hold_already_counts_in_its_generation(tmp_path: Path) -> None:
    """A reload meanwhile must not close the providers of the route the request looked up."""
    rt = runtime(tmp_path, budget_usd=1e-9)  # the second request cannot fit: 429

    async def fn(c: httpx.AsyncClient) -> tuple[int, int, int]:
        lock_database(tmp_path / "logs.sqlite3", LOCK_S / 2)
        chat = asyncio.create_task(c.post("/v1/chat/completions", json=CHAT))
        await asyncio.sleep(0.1)  # admitted, waiting for the lock to take its hold
        waiting = rt.inflight.get(rt.generation, 0)
        status = (await chat).status_code
        return waiting, status, rt.inflight.get(rt.generation, 0)

    waiting, status, after = serve(rt, fn)
    assert waiting == 1
    assert status == 429 and after == 0  # refused: it left its generation again
