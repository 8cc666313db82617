"""Dashboard benchmark, search part (run through ``benchmarks/dashboard_queries.py``): the prompt
searches on a throwaway PostgreSQL store (``--postgres``), and the gateway's CPU per request with
the search index fed and without it (``--write-cost``)."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from dashboard_queries import COLUMNS, PROMPT, ROOT, SEARCHES, _timed, start_gateway, synthetic_rows
from harness.load import run_wrk
from harness.servers import start_upstream, stop


def time_search_postgres(n: int, reps: int) -> dict[str, Any]:
    """The same searches on a PostgreSQL store of ``n`` rows (a throwaway server: initdb + pg_ctl, as
    the e2e tests start it); the pg_trgm index is built by its migration on the rows already there."""
    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    from db_servers import PASSWORD, PostgresServer, pg_bin

    from thrifty.store import LogStore
    from thrifty.ui import api, queries

    if pg_bin() is None:
        return {"skipped": "PostgreSQL is not installed (apt-get install -y postgresql)"}
    import psycopg

    os.environ.setdefault("PGPASSWORD", PASSWORD)
    with PostgresServer() as pg:
        url = pg.create_database()
        store = LogStore(url)
        store.run_in_transaction(lambda c: c.execute("DROP INDEX requests_prompt_trgm"))  # a store from before the index
        store.run_in_transaction(lambda c: c.execute("DELETE FROM migrations WHERE name = '0012_dash_prompt_search'"))
        store.close()
        t0 = time.perf_counter()
        with psycopg.connect(url, password=os.environ["PGPASSWORD"]) as conn, conn.cursor() as cur:
            with cur.copy(f"COPY requests ({COLUMNS}) FROM STDIN") as copy:
                for row in synthetic_rows(n, now=time.time()):
                    copy.write_row(row)
        insert_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        store = LogStore(url)  # 0012_dash_prompt_search: CREATE EXTENSION pg_trgm + the GIN index over every prompt
        backfill_s = time.perf_counter() - t0
        store.run_in_transaction(lambda c: c.execute("ANALYZE requests"))
        db = queries.Reader(store)
        assert db.search_mode() == "trigram", db.search_mode()
        print(f"  PostgreSQL: {n:,} rows copied in {insert_s:.1f}s; pg_trgm index built by its migration in {backfill_s:.1f}s", flush=True)
        out: dict[str, Any] = {"rows": n, "insert_s": insert_s, "search_backfill_s": backfill_s, "queries": {}}
        for name, (text, extra) in SEARCHES.items():
            out["queries"][f"search_{name}"] = _timed(
                f"pg search_{name}",
                lambda text=text, extra=extra: api.requests_doc(db, queries.RequestFilter(text=text, **extra), None, 50, None),
                reps,
            )
        store.close()
    return out


def set_search_index(db_path: Path, on: bool, state: dict[str, int]) -> None:
    """Keep the prompt-search index fed (its triggers, and the log writer's batches) or not, on a live
    store: off, the triggers go and the index claims every rowid, so the writer finds nothing to do;
    on, they come back and the writer indexes the rows written meanwhile."""
    import sqlite3

    from thrifty.store import search

    conn = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        if on:
            for stmt in search._SQLITE_SCHEMA[2:]:  # the triggers
                conn.execute(stmt.replace("CREATE TRIGGER", "CREATE TRIGGER IF NOT EXISTS"))
            if "indexed" in state:
                search.set_indexed_until(conn, state.pop("indexed"))
        else:
            for trigger in ("requests_fts_insert", "requests_fts_delete", "requests_fts_update"):
                conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
            if "indexed" not in state:  # off already (two "without" runs in a row): keep the real mark
                state["indexed"] = search.indexed_until(conn)
                search.set_indexed_until(conn, 2**62)
        conn.execute("COMMIT")
    finally:
        conn.close()


def write_cost(db_path: Path, duration: float, n_rounds: int = 3) -> dict[str, Any]:
    """The gateway's CPU per request (every process of its group, the log writer included) with the
    prompt-search index fed (the writer's batches, the triggers' checks) and without it, interleaved on
    the same running server."""
    import shutil

    from harness.cpu import group_cpu_s
    from harness.load import post_script, run_wrk_scripts

    if not shutil.which("wrk"):
        return {"skipped": "wrk is not installed (apt-get install -y wrk)"}
    prompt = PROMPT + "ticket 123456 about product 7"  # as long as the benchmark's logged prompts
    lua = post_script(json.dumps({"model": "thrifty/cascade", "messages": [{"role": "user", "content": prompt}], "max_tokens": 8}))
    up, up_port = start_upstream()
    gw, state = None, {}
    runs: dict[str, list[float]] = {"indexed": [], "not_indexed": []}
    try:
        gw, base = start_gateway(db_path, up_port)
        run_wrk(base + "/v1/chat/completions", "thrifty/cascade", 4, 2)  # warm
        for i in range(n_rounds):  # the order flipped every round, so drift hits both alike
            for on in (True, False) if i % 2 == 0 else (False, True):
                set_search_index(db_path, on, state)
                cpu0 = group_cpu_s(gw.pid)
                (r,) = run_wrk_scripts([(base + "/v1/chat/completions", lua)], 4, duration)
                ms = (group_cpu_s(gw.pid) - cpu0) * 1e3 / max(1, r.requests)
                runs["indexed" if on else "not_indexed"].append(ms)
                print(
                    f"  write cost round {i + 1}: {'with' if on else 'without'} the search index {ms:.3f} CPU ms/request ({r.rps:.0f} req/s)",
                    flush=True,
                )
    finally:
        set_search_index(db_path, True, state)
        stop(gw)
        stop(up)
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"  median gateway CPU ms/request: {med['indexed']:.3f} with the search index, {med['not_indexed']:.3f} without", flush=True)
    return {"runs_ms": runs, "median_cpu_ms_per_request": med, "tool": "wrk -t1 -c4", "duration_s": duration, "prompt_chars": len(prompt)}
