"""Three real ``thrifty serve`` replicas on different ports sharing one PostgreSQL (and one Redis cache).

- budget race: 300 concurrent requests spread over the replicas against a key with a small limit →
  the key's total spend never exceeds the limit by more than one request's maximum cost, refused
  requests are 429 ``insufficient_quota``, every 200 has its row;
- ``kill -9`` one replica under load → every acknowledged request has its row, the dead replica's
  budget holds lapse (lease) and are deleted, the other replicas keep serving;
- a refit published by replica 1 (``POST /admin/reload``) is served by replicas 2 and 3 within the
  poll bound, prompt for prompt as the new artefact predicts; ``thrifty store publish`` from the CLI
  moves every replica's version too.

PostgreSQL (initdb + pg_ctl), redis-server and the upstreams (``FaultUpstream``) are real servers on
loopback, started here.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from db_servers import PostgresServer, RedisServer
from fault_upstream import FaultUpstream
from gateway_proc import GatewayProcess, toml_provider

pytest.importorskip("psycopg", reason="the PostgreSQL store needs psycopg (pip install 'thrifty[postgres]')")
pytestmark = pytest.mark.slow

KEY = "sk-replica-test-key-0123456789abcdef"
ADMIN_KEY = "admin-secret-key"
PRICE_IN, PRICE_OUT, MAX_TOKENS = 1000.0, 2000.0, 16


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with RedisServer() as server:
        yield server.url


def _sql(url: str, sql: str, params: tuple = ()) -> list[tuple[Any, ...]]:
    import psycopg
    from db_servers import PASSWORD

    with psycopg.connect(url, password=PASSWORD, autocommit=True) as conn:
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]


def _config(store: str, upstream: str, *, limit: float, redis: bool, extra: str = "", lease_s: float = 2.0, period: str = "total") -> str:
    from thrifty.config.settings import hash_key

    cache = '[profiles.default.cache]\nmode = "exact"\nredis_url_env = "THRIFTY_TEST_REDIS"\n\n' if redis else ""
    return (
        f'[server]\nstore = "{store}"\nrequest_timeout_s = 30\nhold_lease_s = {lease_s}\nartefact_poll_s = 0.5\n'
        f'admin_sha256 = "{hash_key(ADMIN_KEY)}"\n\n'
        + toml_provider("fast", upstream, price_in=PRICE_IN, price_out=PRICE_OUT, timeout_s=10, max_tokens=MAX_TOKENS)
        + '[profiles.default]\ntiers = ["fast"]\n\n'
        + cache
        + extra
        + f'[keys.racer]\nsha256 = "{hash_key(KEY)}"\nlimit_usd = {limit}\nlimit_period = "{period}"\n'
    )


def _replicas(tmp_path: Path, cfg: str, env: dict[str, str], n: int = 3) -> list[GatewayProcess]:
    gws = [GatewayProcess(cfg, tmp_path / f"replica{i}", env=env) for i in range(n)]
    threads = [threading.Thread(target=g.start) for g in gws]  # start together: concurrent migrations
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g in gws:
        if g.proc is None or g.proc.poll() is not None:
            for other in gws:
                other.stop()
            raise RuntimeError(f"a replica did not start:\n{g.output()[-3000:]}")
    return gws


async def _storm(urls: list[str], n: int, prompt: str) -> list[tuple[int, str | None, dict | None]]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=400)) as client:

        async def one(i: int) -> tuple[int, str | None, dict | None]:
            body = {"model": "thrifty/default", "messages": [{"role": "user", "content": f"{prompt} {i}"}], "temperature": 0}
            r = await client.post(urls[i % len(urls)] + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"})
            return r.status_code, r.headers.get("x-thrifty-request-id"), (r.json() if r.status_code != 200 else None)

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_three_replicas_share_one_budget_and_every_200_has_its_row(tmp_path: Path, pg: PostgresServer, redis_url: str) -> None:
    from thrifty.serving.budget import TierPrice, max_cost_usd
    from thrifty.types import ChatRequest

    store = pg.create_database()
    budget, started = 0.5, time.time()
    env = {**pg.env(), "THRIFTY_TEST_REDIS": redis_url}
    with FaultUpstream() as up:
        # a daily limit: the replicas agree on the UTC day's spend row as well as on the holds
        gws = _replicas(tmp_path, _config(store, up.base_url("normal"), limit=budget, redis=True, period="day"), env)
        try:
            results = asyncio.run(_storm([g.base_url for g in gws], 300, "Say OK, request"))
            upstream_calls = up.calls["normal"]
            # then one at a time, round the replicas, until refused: the storm's holds were all released
            after = []
            for i in range(60):
                r = httpx.post(
                    gws[i % 3].base_url + "/v1/chat/completions",
                    headers={"authorization": f"Bearer {KEY}"},
                    timeout=30,
                    json={"model": "thrifty/default", "messages": [{"role": "user", "content": f"Say OK, after {i}"}]},
                )
                if r.status_code == 429:
                    break
                assert r.status_code == 200, r.text
                after.append(r.headers["x-thrifty-request-id"])
            else:
                pytest.fail("the budget never ran out")
            health = [httpx.get(g.base_url + "/healthz").json() for g in gws]
        finally:
            for g in gws:
                g.stop()
    import redis

    cached = redis.Redis.from_url(redis_url).dbsize()
    assert cached > 0, "the replicas did not write their answers to the shared Redis cache"
    statuses = [s for s, _, _ in results]
    ok_ids = [rid for s, rid, _ in results if s == 200]
    refused = [b for s, _, b in results if s == 429]
    assert set(statuses) <= {200, 429}, sorted(set(statuses))
    assert ok_ids and refused, f"{len(ok_ids)} ok, {len(refused)} refused: the limit should bind"
    assert all(b["error"]["type"] == "insufficient_quota" for b in refused)
    assert upstream_calls == len(ok_ids), "a refused request must not reach the upstream"
    ok_ids += after
    assert all(h["store"] == "postgresql" for h in health)
    rows = _sql(pg.url(store.rsplit("/", 1)[1]), "SELECT id, cost_usd, status FROM requests WHERE key_name = 'racer'")
    logged = {r[0]: r for r in rows}
    assert set(ok_ids) <= set(logged), "a 200 without its log row"
    spent = sum(r[1] for r in rows)
    worst = max_cost_usd(ChatRequest.from_prompt("Say OK, request 299"), [TierPrice(PRICE_IN, PRICE_OUT, MAX_TOKENS)])
    assert spent <= budget + worst + 1e-9, f"overspent: {spent} > {budget} + {worst}"
    assert spent >= budget - worst, f"the limit refused too early: spent {spent} of {budget}"
    ledger = _sql(pg.url(store.rsplit("/", 1)[1]), "SELECT spent_usd FROM spend WHERE scope = 'key' AND name = 'racer'")
    assert ledger[0][0] == pytest.approx(spent)
    days = _sql(pg.url(store.rsplit("/", 1)[1]), "SELECT period, spent_usd FROM spend_period WHERE name = 'racer' AND period LIKE 'day:%%'")
    assert {p for p, _ in days} <= {time.strftime("day:%Y-%m-%d", time.gmtime(t)) for t in (started, time.time())}
    assert sum(v for _, v in days) == pytest.approx(spent)  # one UTC-day row shared by the replicas (two across midnight)
    assert _sql(pg.url(store.rsplit("/", 1)[1]), "SELECT COUNT(*) FROM reservations")[0][0] == 0


def test_kill_9_one_replica_loses_no_acknowledged_row_and_its_holds_lapse(tmp_path: Path, pg: PostgresServer) -> None:
    store = pg.create_database()
    db = pg.url(store.rsplit("/", 1)[1])
    lease = 2.0
    with FaultUpstream() as up:
        gws = _replicas(tmp_path, _config(store, up.base_url("sleep400-normal"), limit=1e6, redis=False, lease_s=lease), pg.env())
        victim = gws[0]
        acked: list[tuple[int, str]] = []
        errors: list[tuple[int, str]] = []
        stop = threading.Event()

        def load(i: int) -> None:
            with httpx.Client(timeout=30) as c:
                n = 0
                while not stop.is_set():
                    g = gws[i % 3]
                    n += 1
                    try:
                        r = c.post(
                            g.base_url + "/v1/chat/completions",
                            headers={"authorization": f"Bearer {KEY}"},
                            json={"model": "thrifty/default", "messages": [{"role": "user", "content": f"load {i} {n}"}]},
                        )
                    except httpx.HTTPError as exc:
                        errors.append((i % 3, type(exc).__name__))
                        continue
                    if r.status_code == 200:
                        acked.append((i % 3, r.headers["x-thrifty-request-id"]))
                    else:
                        errors.append((i % 3, str(r.status_code)))

        try:
            workers = [threading.Thread(target=load, args=(i,)) for i in range(24)]
            for w in workers:
                w.start()
            time.sleep(1.5)
            pid = victim.proc.pid
            held_by_victim = _sql(db, "SELECT COUNT(*) FROM reservations WHERE owner LIKE %s", (f"%|{pid}|%",))[0][0]
            victim.kill()  # SIGKILL mid-flight: its in-flight requests keep their holds in the database
            killed_at = time.monotonic()
            orphaned = _sql(db, "SELECT COUNT(*) FROM reservations WHERE owner LIKE %s", (f"%|{pid}|%",))[0][0]
            time.sleep(1.5)
            survivors_before = sum(1 for r, _ in acked if r != 0)
            time.sleep(lease + 1.0)
            stop.set()
            for w in workers:
                w.join(30)
            lapsed = _sql(db, "SELECT COUNT(*) FROM reservations WHERE owner LIKE %s", (f"%|{pid}|%",))[0][0]
            waited = time.monotonic() - killed_at
            survivors_after = sum(1 for r, _ in acked if r != 0)
            health = [httpx.get(g.base_url + "/healthz").status_code for g in gws[1:]]
        finally:
            stop.set()
            for g in gws:
                g.stop()
    assert held_by_victim > 0 and orphaned > 0, "the victim held nothing when killed: the test did not test the lease"
    assert lapsed == 0, f"{lapsed} holds of the dead replica still in the ledger {waited:.1f}s after the kill"
    assert health == [200, 200]
    assert survivors_after > survivors_before, "the surviving replicas stopped serving"
    assert not [e for r, e in errors if r != 0], f"a surviving replica failed requests: {errors[:5]}"
    ids = [rid for _, rid in acked]
    logged = {r[0] for r in _sql(db, "SELECT id FROM requests")}
    missing = [rid for rid in ids if rid not in logged]
    assert not missing, f"{len(missing)} acknowledged requests have no row (e.g. {missing[:3]})"
    assert _sql(db, "SELECT COUNT(*) FROM reservations")[0][0] == 0


def test_a_refit_published_by_replica_1_is_served_by_replicas_2_and_3(tmp_path: Path, pg: PostgresServer) -> None:
    pytest.importorskip("sklearn")
    from test_reload_artefact import _fit, _predicted_escalations, _table

    from thrifty.cli.main import main

    prompts, cheap, strong = _table(tmp_path / "table")
    artefact = tmp_path / "artefact"
    _fit(tmp_path / "table", artefact, budget=0.004)
    low, _ = _predicted_escalations(artefact, prompts, cheap)
    store = pg.create_database()
    with FaultUpstream(answers=cheap) as up_cheap, FaultUpstream(answers=strong) as up_strong:
        profile = f'[profiles.qa]\ntiers = ["cheap", "strong"]\nartefact = "{artefact}"\n\n'
        cfg = (
            _config(store, up_cheap.base_url("normal"), limit=1e6, redis=False, extra=profile)
            + toml_provider("cheap", up_cheap.base_url("table"), timeout_s=10)
            + toml_provider("strong", up_strong.base_url("table"), timeout_s=10)
        )
        gws = _replicas(tmp_path, cfg, pg.env())
        try:
            first = [httpx.get(g.base_url + "/healthz").json()["artefacts"]["qa"] for g in gws]
            assert len({(v["version"], v["sha256"]) for v in first}) == 1, first

            _fit(tmp_path / "table", artefact, budget=0.008)  # refit in place (the shared folder)
            high, _ = _predicted_escalations(artefact, prompts, cheap)
            assert len(high) > len(low)
            r = httpx.post(gws[0].base_url + "/admin/reload", headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=60)
            assert r.status_code == 200, r.text
            t0 = time.monotonic()
            bound_s = 0.5 + 15.0  # the poll interval plus one reload (fit artefact load) on a busy 2-core machine
            seen: dict[int, float] = {}
            while len(seen) < 2 and time.monotonic() - t0 < bound_s:
                for i in (1, 2):
                    v = httpx.get(gws[i].base_url + "/healthz").json()["artefacts"]["qa"]
                    if i not in seen and v["version"] > first[i]["version"]:
                        seen[i] = time.monotonic() - t0
                time.sleep(0.1)
            assert sorted(seen) == [1, 2], f"replicas 2/3 did not pick the refit up within {bound_s}s"
            now = [httpx.get(g.base_url + "/healthz").json()["artefacts"]["qa"] for g in gws]
            assert len({(v["version"], v["sha256"]) for v in now}) == 1 and now[0]["sha256"] != first[0]["sha256"]
            for g in gws[1:]:  # what replicas 2 and 3 serve is the new artefact, prompt for prompt
                ids = _send(g, prompts)
                assert _answered_by_strong_pg(pg, store, ids) == high

            before = now[0]["version"]  # a publish from the CLI: every replica reloads (rollback's path)
            os.environ.update(pg.env())
            assert main(["store", "publish", "--store", store, "--profile", "qa"]) == 0
            deadline = time.monotonic() + bound_s
            while time.monotonic() < deadline:
                if all(httpx.get(g.base_url + "/healthz").json()["artefacts"]["qa"]["version"] > before for g in gws):
                    break
                time.sleep(0.1)
            else:
                pytest.fail("a CLI publish was not picked up by every replica")
        finally:
            for g in gws:
                g.stop()
    print(f"refit seen by replicas 2 and 3 after {seen[1]:.2f}s and {seen[2]:.2f}s")


def _send(gw: GatewayProcess, prompts: list[str]) -> list[str]:
    ids = []
    with httpx.Client(base_url=gw.base_url, timeout=30) as c:
        for q in prompts:
            r = c.post(
                "/v1/chat/completions",
                headers={"authorization": f"Bearer {KEY}"},
                json={"model": "thrifty/qa", "messages": [{"role": "user", "content": q}], "max_tokens": 32},
            )
            assert r.status_code == 200, r.text
            ids.append(r.headers["x-thrifty-request-id"])
    return ids


def _answered_by_strong_pg(pg: PostgresServer, store: str, ids: list[str]) -> set[str]:
    rows = _sql(pg.url(store.rsplit("/", 1)[1]), "SELECT prompt, final_model FROM requests WHERE id = ANY(%s)", (ids,))
    assert len(rows) == len(ids)
    return {prompt for prompt, model in rows if model == "strong"}
