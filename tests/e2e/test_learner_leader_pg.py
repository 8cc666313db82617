"""One learner per profile across replicas, on every replica's audits (thrifty.gateway.leadership).

Two real ``thrifty serve`` replicas share one PostgreSQL (initdb + pg_ctl, started here) and one
artefact folder; the tiers are two loopback upstreams replaying a table (the strong tier answers
yes/no, the cheap one agrees with it on a third of the prompts). The profile starts with
``thresholds = [0.0]`` (the cheap answer always accepted), audits every request
(``match:agree``) and has ``[profiles.qa.refit] every = 30``.

- Requests alternate between the replicas: 15 audits each. Neither reaches ``every`` on its own,
  yet exactly one refit happens — in the leader (the replica that took the lease first), on all 30
  audits — and is published once; both replicas serve it.
- 20 more audits (10 per replica), then ``kill -9`` the leader: the survivor takes the lease, loads
  the 50 audits in the store, and refits exactly when the store holds 60 (the next ``every`` after
  the first refit's 30), not before.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from db_servers import PostgresServer
from fault_upstream import FaultUpstream
from gateway_proc import GatewayProcess, toml_provider

psycopg = pytest.importorskip("psycopg", reason="the PostgreSQL store needs psycopg (pip install 'thrifty[postgres]')")
pytest.importorskip("sklearn", reason="the refit needs scikit-learn (pip install 'thrifty[lab]')")
pytestmark = pytest.mark.slow

EVERY = 30
POLL_S = 0.5


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


def _table(n: int) -> tuple[list[str], dict[str, str], dict[str, str]]:
    rng = random.Random(11)
    prompts = [f"Is claim {i} about the {rng.choice(['river', 'market', 'comet', 'harbour'])} true? Answer yes or no." for i in range(n)]
    strong = {q: rng.choice(["yes", "no"]) for q in prompts}
    cheap = {q: (a if i % 3 == 0 else {"yes": "no", "no": "yes"}[a]) for i, (q, a) in enumerate(strong.items())}
    return prompts, cheap, strong


def _ask(gw: GatewayProcess, q: str) -> str:
    r = httpx.post(
        gw.base_url + "/v1/chat/completions",
        json={"model": "thrifty/qa", "messages": [{"role": "user", "content": q}], "max_tokens": 4},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.headers["x-thrifty-model"]


def _until(what: str, check: Any, timeout_s: float, gws: list[GatewayProcess]) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    logs = "\n".join(g.output()[-3000:] for g in gws)
    raise AssertionError(f"{what} within {timeout_s}s:\n{logs}")


def test_one_leader_refits_on_the_sum_of_both_replicas_audits_and_a_survivor_takes_over_after_kill_9(
    tmp_path: Path, pg: PostgresServer
) -> None:
    prompts, cheap, strong = _table(EVERY + 20)
    store = pg.create_database()
    os.environ.update(pg.env())
    shared = tmp_path / "shared-artefacts"

    def sql(query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(store) as conn:
            return conn.execute(query, params).fetchall()

    def done() -> int:
        return int(sql("SELECT COUNT(*) FROM audits WHERE profile = 'qa' AND status = 'done'")[0][0])

    def history() -> list[tuple[Any, ...]]:
        return sql("SELECT version, status, evidence FROM artefact_history WHERE profile = 'qa' ORDER BY version")

    with FaultUpstream(answers=cheap) as up_cheap, FaultUpstream(answers=strong) as up_strong:
        cfg = (
            f'[server]\nstore = "{store}"\nartefact_poll_s = {POLL_S}\nhold_lease_s = 3\nartefact_dir = "{shared}"\n'
            "request_timeout_s = 30\n\n"
            + toml_provider("cheap", up_cheap.base_url("table"), price_in=1.0, price_out=2.0, timeout_s=10)
            + toml_provider("strong", up_strong.base_url("table"), price_in=10.0, price_out=20.0, timeout_s=10)
            + '[profiles.qa]\ntiers = ["cheap", "strong"]\nthresholds = [0.0]\n\n'
            + '[profiles.qa.audit]\nrate = 1.0\njudge = "match:agree"\n\n'
            + f"[profiles.qa.refit]\nevery = {EVERY}\ntarget = 0.95\n"
        )
        a = GatewayProcess(cfg, tmp_path / "replica-a", env=pg.env())
        b = GatewayProcess(cfg, tmp_path / "replica-b", env=pg.env())
        gws = [a, b]
        a.start()
        b.start()
        try:
            leader = sql("SELECT holder, term FROM learner_leases WHERE profile = 'qa'")
            assert leader and leader[0][0].split("|")[1] == str(a.proc.pid) and leader[0][1] == 1, leader  # A came up first
            assert "this process leads the learning (term 1)" in a.output()
            states = [httpx.get(g.base_url + "/healthz", timeout=10).json()["learning"]["qa"] for g in gws]
            assert [s["leader"] for s in states] == [True, False] and states[0]["holder"] == states[1]["holder"] == leader[0][0]

            t0 = time.monotonic()
            served = [_ask(a if i % 2 == 0 else b, q) for i, q in enumerate(prompts[:EVERY])]  # 15 audits per replica
            assert set(served) == {"cheap"}
            _until("the 30 audits done", lambda: done() == EVERY, 120, gws)
            rows = _until("one refit on the sum of both replicas' audits", history, 120, gws)
            took = time.monotonic() - t0
            assert len(rows) == 1 and rows[0][1] == "serving", rows
            assert '"audits": 30' in rows[0][2]  # fitted on all 30, not on one replica's 15
            version = sql("SELECT version, source FROM artefact_versions WHERE profile = 'qa'")[0]
            assert version[1].startswith("refit|") and version[1].endswith(f"|{a.proc.pid}")  # published once, by the leader
            on_both = _until(
                "both replicas serving the refit",
                lambda: all(
                    httpx.get(g.base_url + "/healthz", timeout=10).json()["artefacts"].get("qa", {}).get("version") == version[0]
                    for g in gws
                ),
                30,
                gws,
            )
            assert on_both
            again = prompts[EVERY : EVERY + 10]
            on_a, on_b = [_ask(a, q) for q in again], [_ask(b, q) for q in again]
            assert on_a == on_b and "strong" in on_a, (on_a, on_b)
            _until("50 audits done", lambda: done() == EVERY + 20, 120, gws)
            time.sleep(4 * POLL_S)
            assert len(history()) == 1  # 20 new audits < every: no refit anywhere (B never refits on its own 25)
            assert "this process leads" not in b.output()

            a.kill()  # kill -9 the leader
            rest = prompts[EVERY + 10 : EVERY + 20]  # 10 more: the store reaches 60 on the last one
            for q in rest[:-1]:
                _ask(b, q)
            _until("59 audits done", lambda: done() == 2 * EVERY - 1, 120, gws)
            _until("B leading", lambda: "this process leads the learning (term 2): " in b.output(), 30, gws)
            time.sleep(4 * POLL_S)
            assert len(history()) == 1  # 29 since the first refit: not yet
            t1 = time.monotonic()
            _ask(b, rest[-1])
            rows = _until("the survivor's refit at 60 audits", lambda: len(history()) == 2 and history(), 120, gws)
            took_over = time.monotonic() - t1
            assert '"audits": 60' in rows[1][2], rows[1]
            holder = sql("SELECT holder, term FROM learner_leases WHERE profile = 'qa'")[0]
            assert httpx.get(b.base_url + "/healthz", timeout=10).json()["learning"]["qa"] == {
                "leader": True,
                "term": 2,
                "holder": holder[0],
            }
            assert holder[0].split("|")[1] == str(b.proc.pid) and holder[1] == 2
            if rows[1][1] == "serving":
                assert sql("SELECT source FROM artefact_versions WHERE profile = 'qa'")[0][0].endswith(f"|{b.proc.pid}")
        finally:
            for g in gws:
                g.stop()
    print(f"first refit {took:.1f}s after the first request; the survivor's refit {took_over:.1f}s after the 60th request")
