"""``thrifty audit report --store postgresql://…`` and ``thrifty fit --from-logs --store …`` on a real
PostgreSQL server (initdb + pg_ctl, started here): the same audit rows, written by the audit loop's
own store functions into SQLite and into PostgreSQL, give the same report and the same training
table on both engines; a bad store URL is the same clear ConfigError as ``thrifty logs --store``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from db_servers import PASSWORD, PostgresServer, free_port

pytest.importorskip("psycopg", reason="the PostgreSQL store needs psycopg (pip install 'thrifty[postgres]')")

T0 = 1_796_000_000.0


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


def _write_audits(store: Any, n: int, seed: int = 5) -> None:
    """``n`` served requests of profiles p and q, audited through ``store.audits``: most judged
    (served answer sometimes worse than the reference's), some failed, skipped or left pending."""
    from thrifty.store import RequestRecord, StepRecord
    from thrifty.store.audits import PendingAudit, fail_in, finish_in, insert_pending_in, skip_in, start_in

    rng = random.Random(seed)
    for i in range(n):
        rid = f"a{i:04d}"
        served = "small" if rng.random() < 0.7 else "big"
        small_cost, big_cost = 0.001 * rng.uniform(0.5, 1.5), 0.01 * rng.uniform(0.5, 1.5)
        steps = (StepRecord(0, "small", "accepted" if served == "small" else "escalated", answer="up", cost_usd=small_cost),)
        if served == "big":
            steps += (StepRecord(1, "big", "accepted", answer="down", cost_usd=big_cost),)
        profile = "q" if i % 6 == 0 else "p"
        created = T0 + 37.25 * i
        cost = sum(s.cost_usd for s in steps)
        rec = RequestRecord(
            id=rid,
            created=created,
            model_requested=f"thrifty/{profile}",
            request={"messages": [{"role": "user", "content": f"headline {i}"}]},
            status=200,
            profile=profile,
            prompt=f"headline {i}",
            final_model=served,
            tiers_tried=tuple(s.model for s in steps),
            answer="x",
            cost_usd=cost,
            steps=steps,
        )
        pending = PendingAudit(
            rid,
            profile,
            created,
            {"messages": [{"role": "user", "content": f"headline {i}"}], "params": {}},
            ("small", "big"),
            "big",
            "match:exact",
            None,
            "match-exact-v1",
            "all",
            served,
            cost,
        )
        store.record(rec, also=lambda c, p=pending: insert_pending_in(c, p))
        state = "done" if i % 11 else ("pending", "error", "skipped")[(i // 11) % 3]
        if state == "pending":
            continue
        store.run_in_transaction(start_in, rid, created + 1, owner="test", attempts=0)
        if state == "error":
            store.run_in_transaction(fail_in, rid, "judge timed out", judge_cost_usd=0.0004, now=created + 2)
            continue
        if state == "skipped":
            store.run_in_transaction(skip_in, rid, "audit budget spent", now=created + 2)
            continue
        good = rng.random() < 0.75
        answers = [
            {
                "model": "small",
                "tier": 0,
                "answer": "up",
                "cost_usd": small_cost,
                "reused": served == "small",
                "quality": float(good),
                "at_least_as_good": good,
            },
            {
                "model": "big",
                "tier": 1,
                "answer": "b",
                "cost_usd": big_cost,
                "reused": served == "big",
                "quality": 1.0,
                "at_least_as_good": True,
            },
        ]
        store.run_in_transaction(finish_in, rid, answers, judge_cost_usd=0.0005, now=created + 3)


def _close(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-9 relative (the engines may sum in another order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def _report(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    from thrifty.cli.main import main

    capsys.readouterr()
    assert main(["audit", "report", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_audit_report_and_fit_table_from_postgresql_equal_sqlite(
    tmp_path: Path, pg: PostgresServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from thrifty.cli.fit_cmd import audited_pool
    from thrifty.store import LogStore

    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    lite_path, url = tmp_path / "logs.sqlite3", pg.create_database()
    for target in (lite_path, url):
        store = LogStore(target)
        try:
            _write_audits(store, 90)
        finally:
            store.close()

    on_lite = _report(["--db", str(lite_path)], capsys)
    assert _report(["--store", str(lite_path)], capsys) == on_lite  # --db and --store name the same file
    on_pg = _report(["--store", url], capsys)
    assert set(on_lite["profiles"]) == {"p", "q"} and on_lite["profiles"]["p"]["audited"] > 50
    assert on_lite["profiles"]["p"]["served"]["n"] > 0 and 0 < on_lite["profiles"]["p"]["served"]["share"] < 1
    assert _close(on_pg, on_lite), (on_pg, on_lite)
    # the filters run on PostgreSQL too
    since = str(T0 + 37.25 * 45)
    scoped = _report(["--store", url, "--profile", "p", "--since", since], capsys)
    assert list(scoped["profiles"]) == ["p"] and scoped["profiles"]["p"]["audited"] < on_pg["profiles"]["p"]["audited"]
    assert _close(scoped, _report(["--db", str(lite_path), "--profile", "p", "--since", since], capsys))

    # thrifty fit --from-logs reads the same training table from either store
    def table(**where: Any) -> Any:
        return audited_pool(argparse.Namespace(**{"profile": "p", "config": None, "db": None, "store": None, **where}))

    lite_t, pg_t = table(db=str(lite_path)), table(store=url)
    assert lite_t.n_prompts == pg_t.n_prompts > 50
    assert (lite_t.prompt_ids, lite_t.models) == (pg_t.prompt_ids, pg_t.models)
    np.testing.assert_array_equal(lite_t.quality, pg_t.quality)
    np.testing.assert_allclose(lite_t.cost, pg_t.cost, rtol=1e-12)


def test_bad_store_urls_are_the_same_clear_error_as_thrifty_logs(
    tmp_path: Path, pg: PostgresServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from thrifty.cli.main import main

    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    out = str(tmp_path / "artefact")
    for url in ("mysql://thrifty@127.0.0.1/logs", f"postgresql://thrifty@127.0.0.1:{free_port()}/nowhere"):
        errors = []
        for argv in (
            ["logs", "--store", url, "list"],
            ["audit", "report", "--store", url, "--json"],
            ["fit", "--from-logs", "--profile", "p", "--store", url, "--out", out],
        ):
            capsys.readouterr()
            assert main(argv) == 3, argv
            err = capsys.readouterr().err
            assert "Traceback" not in err and "fix:" in err, err
            errors.append(err)
        assert errors[0] == errors[1] == errors[2], errors
        assert "--store: " in errors[0], errors[0]  # names the flag that was typed
        assert ("unknown store URL scheme 'mysql'" in errors[0]) == url.startswith("mysql"), errors[0]
    assert "127.0.0.1" in errors[0] and "Connection refused" in errors[0]
    assert not Path(out).exists()
