"""``thrifty store migrate`` SQLite → PostgreSQL → SQLite on a real 100,000-request log, and the bad
inputs that must stop ``thrifty serve`` before it binds (unreachable server, wrong password, a schema
from a newer thrifty). PostgreSQL is a real server (initdb + pg_ctl) started here.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from db_servers import PASSWORD, PostgresServer, free_port

pytest.importorskip("psycopg", reason="the PostgreSQL store needs psycopg (pip install 'thrifty[postgres]')")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
N = 100_000


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


def _real_log(path: Path, n: int) -> None:
    """A gateway log of ``n`` requests written through the store (schema, migrations) with the shapes
    the gateway writes: one or two steps, scores, labels on some, costs, spend rows."""
    from thrifty.store import LogStore

    LogStore(path).close()  # the schema, by the store's own migrations
    rng = random.Random(3)
    conn = sqlite3.connect(path)
    t0 = 1_790_000_000.0
    reqs, steps = [], []
    for i in range(n):
        rid = f"req-{i:06d}"
        two = rng.random() < 0.4
        cost0, cost1 = rng.random() * 1e-4, rng.random() * 1e-3
        reqs.append(
            (
                rid,
                t0 + i * 0.731,
                f"key{i % 7}",
                "default",
                "thrifty/default",
                json.dumps({"messages": [{"role": "user", "content": f"q{i}"}]}),
                f"question {i} – ünïcode ✓",
                "strong" if two else "cheap",
                json.dumps(["cheap", "strong"] if two else ["cheap"]),
                f"answer {i}",
                10 + i % 50,
                5 + i % 20,
                cost0 + (cost1 if two else 0.0),
                rng.random(),
                200 if i % 97 else 502,
                None if i % 97 else "upstream failed",
                i % 3 == 0,
                (round(rng.random(), 3) if i % 5 == 0 else None),
                "miss",
            )
        )
        steps.append(
            (
                rid,
                0,
                0,
                "cheap",
                f"cheap {i}",
                rng.random(),
                0.5,
                cost0,
                0.01,
                10,
                5,
                "escalated" if two else "accepted",
                None,
                (round(rng.random(), 2) if i % 11 == 0 else None),
                "miss",
            )
        )
        if two:
            steps.append((rid, 1, 1, "strong", f"strong {i}", None, None, cost1, 0.2, 10, 9, "accepted", None, None, None))
    conn.executemany(
        "INSERT INTO requests (id, created, key_name, profile, model_requested, request_json, prompt, final_model, tiers_tried,"
        " answer, input_tokens, output_tokens, cost_usd, latency_s, status, error, stream, label, cache)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        reqs,
    )
    conn.executemany(
        "INSERT INTO steps (request_id, idx, tier, model, answer, score, threshold, cost_usd, latency_s, input_tokens,"
        " output_tokens, decision, error, label, cache) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        steps,
    )
    conn.execute("INSERT INTO spend (scope, name, spent_usd) SELECT 'key', key_name, SUM(cost_usd) FROM requests GROUP BY key_name")
    conn.commit()
    conn.close()


def _export(store: str, out: Path) -> dict[str, list[dict]]:
    from thrifty.store import LogStore
    from thrifty.store.export import export_table

    s = LogStore(store)
    try:
        export_table(s, out)
    finally:
        s.close()
    files = {}
    for name in sorted(os.listdir(out)):
        raw = (out / name).read_bytes()
        text = gzip.decompress(raw).decode() if name.endswith(".gz") else raw.decode(errors="replace")
        files[name] = [json.loads(line) for line in text.splitlines() if line.strip()] if ".jsonl" in name else text
    return files


def test_migrate_100k_rows_to_postgres_and_back_gives_the_same_report(
    tmp_path: Path, pg: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from thrifty.cli.main import main
    from thrifty.store import LogStore
    from thrifty.store.transfer import copy_store

    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    src = tmp_path / "logs.sqlite3"
    _real_log(src, N)
    url = pg.create_database()

    class Interrupted(Exception):
        pass

    def crash_after_a_few_batches(table: str, copied: int) -> None:
        if table == "requests" and copied >= 20_000:
            raise Interrupted  # a copy killed half-way: the rows committed so far stay

    a, b = LogStore(src), LogStore(url)
    with pytest.raises(Interrupted):
        copy_store(a, b, batch=5000, progress=crash_after_a_few_batches)
    a.close(), b.close()

    t0 = time.perf_counter()
    assert main(["store", "migrate", "--from", f"sqlite:///{src}", "--to", url]) == 0  # resumes
    took = time.perf_counter() - t0
    assert main(["store", "migrate", "--from", f"sqlite:///{src}", "--to", url]) == 0  # idempotent: nothing left to copy
    back = tmp_path / "back.sqlite3"
    assert main(["store", "migrate", "--from", url, "--to", f"sqlite:///{back}"]) == 0

    original = _export(str(src), tmp_path / "export-original")
    round_trip = _export(str(back), tmp_path / "export-back")  # SQLite → PostgreSQL → SQLite
    for name in ("outcomes.jsonl.gz", "prompts.jsonl.gz", "pending.jsonl.gz"):
        if name in original:
            assert round_trip[name] == original[name], name
    assert len({r["prompt_id"] for r in original["outcomes.jsonl.gz"]}) > N // 2
    print(f"migrated {N} requests to PostgreSQL in {took:.1f}s")


def test_logs_list_reads_a_postgres_store(
    tmp_path: Path, pg: PostgresServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from thrifty.cli.main import main

    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    src = tmp_path / "logs.sqlite3"
    _real_log(src, 50)
    url = pg.create_database()
    assert main(["store", "migrate", "--from", str(src), "--to", url]) == 0
    capsys.readouterr()
    assert main(["logs", "--store", url, "list", "--limit", "5", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == [f"req-{i:06d}" for i in range(49, 44, -1)]
    assert main(["logs", "--store", url, "show", "req-000003", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"][0]["model"] == "cheap"


def _serve(store: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    port = free_port()
    cfg = tmp_path / "thrifty.toml"
    cfg.write_text(
        f'[server]\ndata_dir = "{tmp_path}"\n\n[providers.fast]\nkind = "openai"\nmodel = "m"\n'
        f'base_url = "http://127.0.0.1:9/v1"\nprices = {{ input = 1, output = 1 }}\n\n[profiles.default]\ntiers = ["fast"]\n'
    )
    return subprocess.run(
        [sys.executable, "-m", "thrifty", "serve", "--config", str(cfg), "--port", str(port), "--store", store],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **env},
        check=False,
    )


@pytest.mark.parametrize("case", ["unreachable", "wrong password", "newer schema"])
def test_bad_store_stops_serve_before_binding_with_the_setting_and_the_fix(case: str, tmp_path: Path, pg: PostgresServer) -> None:
    env = pg.env()
    if case == "unreachable":
        store, expect = f"postgresql://thrifty@127.0.0.1:{free_port()}/nowhere", "start PostgreSQL or fix host/port"
    elif case == "wrong password":
        store, expect, env = pg.create_database(), "PGPASSWORD", {"PGPASSWORD": "not-the-password"}
    else:
        store, expect = pg.create_database(), "newer thrifty"
        import psycopg

        _open_with(store)  # the schema of this thrifty, then a migration it does not know
        with psycopg.connect(store, password=PASSWORD, autocommit=True) as conn:
            conn.execute("INSERT INTO migrations (name, applied) VALUES ('9999_written_by_a_newer_thrifty', 0)")
    out = _serve(store, env, tmp_path)
    assert out.returncode != 0, out.stdout + out.stderr
    assert "server.store" in out.stderr and "fix:" in out.stderr and expect in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and PASSWORD not in out.stderr
    assert "ready" not in out.stdout  # never bound: the error came before the server started


def _open_with(store: str) -> None:
    from thrifty.store import LogStore

    old = os.environ.get("PGPASSWORD")
    os.environ["PGPASSWORD"] = PASSWORD
    try:
        LogStore(store).close()
    finally:
        if old is None:
            os.environ.pop("PGPASSWORD", None)
        else:
            os.environ["PGPASSWORD"] = old
