"""Dashboard benchmark: query times on 1,000,000 logged requests, and the gateway's latency while the
dashboard polls.

1. **Queries.** A fresh log database (every migration, ``0008_dashboard_indexes`` included) gets
   1,000,000 synthetic ``requests`` rows spread over the last 30 days (5 keys, 4 profiles plus
   pass-through, ~4% errors, a cached profile, ~30% escalations), inserted with ``executemany`` in
   one transaction. Then each dashboard document — the overview (24h/7d/30d), the profiles page, one
   profile's page, keys, the first page of requests and a filtered/text-searched page — is computed
   ``--reps`` times through the same functions the endpoints call; p50/p95 per query. Target: every
   overview/profile query ≤ 300 ms p95.
2. **Load** (``wrk``, Debian package; skipped with a note when absent). ``thrifty serve``'s app (with
   the dashboard) runs on that same 1M-row database in front of the benchmark upstream; ``wrk``
   loads a 2-tier cascade at low concurrency, interleaved without and with a poller that fetches
   ``/ui/api/overview?range=30d``, ``/ui/api/profiles`` and ``/ui/api/overview?range=24h`` every
   ``--poll-every`` seconds (default 1: 15× what an open overview page does). Added latency =
   gateway − direct upstream in the same round; medians over ``--rounds``, with the spread of the
   quiet runs alone as the noise it must be compared with.

3. **Search** (in 1.): prompt searches from a text in 11 rows to one in every row, a 2-character
   text and one found nowhere, p50/p95 like the rest; the search index's backfill by its migration
   on the 1M rows already logged is timed. ``--write-cost``: the gateway's CPU per request with the
   search index fed and without it, side by side on one running server. ``--postgres``: the same
   searches on a throwaway PostgreSQL server (initdb + pg_ctl, as the e2e tests start it).

    python benchmarks/dashboard_queries.py [--rows 1000000] [--reps 20] [--duration 8] [--no-load] [--quick]
        [--write-cost] [--postgres]

Writes ``results/dashboard_queries.json`` (with the git commit it ran on).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from harness.load import run_wrk
from harness.measure import git_commit
from harness.servers import start_upstream, start_uvicorn, stop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

KEYS = ["team-a", "team-b", "team-c", "batch", "ci"]
PROFILES = ["default", "cascade", "escalate", "cached"]
PROMPT = "Summarise the following support ticket in one sentence and name the product it is about: "
#: prompt searches timed (name → text, other filters): rare to everywhere, a 2-character text (no trigram), none
SEARCHES: dict[str, tuple[str, dict[str, Any]]] = {
    "rare_11_rows": ("ticket 99999", {}),
    "one_in_97": ("product 42", {}),
    "every_row": ("support ticket", {}),
    "two_chars": ("42", {}),
    "no_match": ("zebra crossing", {}),
    "rare_with_key_and_profile": ("ticket 12345", {"key": "ci", "profile": "cascade"}),
    "one_in_97_last_24h": ("product 42", {"start": time.time() - 86_400}),
}


COLUMNS = (
    "id, created, key_name, profile, model_requested, request_json, prompt, final_model, tiers_tried,"
    " answer, input_tokens, output_tokens, cost_usd, latency_s, status, error, stream, cache"
)


def synthetic_rows(n: int, *, now: float, seed: int = 0) -> Any:
    """The benchmark's ``requests`` rows (columns :data:`COLUMNS`), oldest first over the last 30 days."""
    rng = random.Random(seed)
    start = now - 30 * 86_400
    for i in range(n):
        created = start + (i + rng.random()) * (30 * 86_400 / n)
        profile = rng.choice(PROFILES) if rng.random() > 0.05 else None
        esc = profile == "escalate" or (profile is not None and rng.random() < 0.2)
        tiers = ["cheap", "strong"] if esc else ["cheap"]
        u = rng.random()
        status = 200 if u < 0.96 else (502 if u < 0.98 else (429 if u < 0.99 else 400))
        cache = ("hit" if rng.random() < 0.25 else "miss") if profile == "cached" else None
        tin, tout = rng.randint(20, 500), rng.randint(10, 300)
        cost = 0.0 if cache == "hit" else (tin * 0.1 + tout * 0.4) / 1e6 * (1 if not esc else 26)
        prompt = PROMPT + f"ticket {i} about product {i % 97}"
        yield (
            f"req_{i:024x}",
            created,
            rng.choice(KEYS),
            profile,
            f"thrifty/{profile}" if profile else "cheap",
            json.dumps({"messages": [{"role": "user", "content": prompt}]}),
            prompt,
            tiers[-1] if status < 400 else None,
            json.dumps(tiers),
            "A short answer." if status < 400 else None,
            tin,
            tout if status < 400 else 0,
            cost if status < 400 else 0.0,
            rng.lognormvariate(-1.5, 0.8),
            status,
            None if status < 400 else "synthetic error",
            int(rng.random() < 0.2),
            cache,
        )


def fill(db_path: Path, n: int, *, now: float, seed: int = 0) -> tuple[float, float]:
    """Insert ``n`` synthetic requests (last 30 days, oldest first) in one transaction, then apply the
    search migration ``0012_dash_prompt_search`` to them as an existing store would; seconds each."""
    from thrifty.store.db import connect, migrate

    conn = connect(db_path)

    from thrifty.store.db import MIGRATIONS, _statements

    # bulk load: the dashboard's indexes are dropped first and rebuilt after (the same SQL as the migration)
    indexes = [st for st in _statements(dict(MIGRATIONS)["0008_dashboard_indexes"]) if st.startswith("CREATE INDEX")]
    for st in indexes:
        conn.execute(f"DROP INDEX {st.split()[2]}")
    unindex_search(conn)  # the store predates the search index: its migration backfills it below
    t0 = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO requests (id, created, key_name, profile, model_requested, request_json, prompt, final_model, tiers_tried,"
        " answer, input_tokens, output_tokens, cost_usd, latency_s, status, error, stream, cache)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        synthetic_rows(n, now=now, seed=seed),
    )
    for st in indexes:
        conn.execute(st)
    conn.execute("COMMIT")
    insert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    migrate(conn)  # 0012_dash_prompt_search: the FTS5 index of every prompt already logged
    search_backfill_s = time.perf_counter() - t0
    conn.execute("ANALYZE")
    conn.close()
    return insert_s, search_backfill_s


def unindex_search(conn: Any) -> None:
    """Drop the prompt-search index and its triggers (and forget its migration)."""
    for trigger in ("requests_fts_insert", "requests_fts_delete", "requests_fts_update"):
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    conn.execute("DROP TABLE IF EXISTS requests_fts")
    conn.execute("DROP TABLE IF EXISTS requests_fts_state")
    conn.execute("DELETE FROM migrations WHERE name = '0012_dash_prompt_search'")


def settings_for(data_dir: Path, upstream_port: int = 9) -> Any:
    from thrifty.config.settings import parse_settings

    url = f"http://127.0.0.1:{upstream_port}/v1"
    doc: dict[str, Any] = {"server": {"data_dir": str(data_dir), "request_timeout_s": 30}, "providers": {}, "profiles": {}}
    for name in ("cheap", "strong"):
        doc["providers"][name] = {
            "kind": "openai",
            "model": f"bench-{name}",
            "base_url": url,
            "timeout_s": 10,
            "max_tokens": 16,
            "prices": {"input": 0.1 if name == "cheap" else 2.5, "output": 0.4 if name == "cheap" else 10.0},
        }
    doc["profiles"] = {
        "default": {"tiers": ["cheap"]},
        "cascade": {"tiers": ["cheap", "strong"], "thresholds": [0.0]},
        "escalate": {"tiers": ["cheap", "strong"], "thresholds": [1.5]},
        "cached": {"tiers": ["cheap", "strong"], "thresholds": [0.0], "budget_usd": 100.0, "budget_period": "month"},
    }
    return parse_settings(doc)


def time_queries(db_path: Path, reps: int) -> dict[str, dict[str, float]]:
    from thrifty.gateway.app import build_runtime
    from thrifty.ui import api, params, queries
    from thrifty.ui.rollup import Roller

    rt = build_runtime(settings_for(db_path.parent), db_path=db_path)
    t0 = time.perf_counter()
    Roller(rt.store, settle_s=rt.settings.server.request_timeout_s + api.SETTLE_MARGIN_S).catch_up(force=True)
    backfill_s = time.perf_counter() - t0
    print(f"  rolled up the settled hours in {backfill_s:.1f}s (once per database; then an hour at a time)", flush=True)
    db = queries.Reader(rt.store)
    w = {r: params.window_from({"range": r}) for r in params.RANGES}
    prof = next(p for p in api.context.profiles_in_service(rt) if p["name"] == "cascade")
    newest = queries.RequestFilter()
    cases: dict[str, Callable[[], Any]] = {
        **{f"overview_{r}": (lambda r=r: api.overview_doc(db, rt, w[r], None)) for r in ("24h", "7d", "30d")},
        **{f"profiles_{r}": (lambda r=r: api.profiles_doc(db, rt, w[r], None)) for r in ("24h", "30d")},
        **{f"profile_cascade_{r}": (lambda r=r: api.profile_doc(db, rt, w[r], None, prof)) for r in ("24h", "30d")},
        "keys_30d": lambda: api.keys_doc(db, rt, w["30d"], None),
        "requests_first_page": lambda: api.requests_doc(db, newest, None, 50, None),
        "requests_profile_key_errors": lambda: api.requests_doc(
            db, queries.RequestFilter(profile="escalate", key="ci", status="error"), None, 50, None
        ),
        **{
            f"search_{name}": (
                lambda text=text, extra=extra: api.requests_doc(db, queries.RequestFilter(text=text, **extra), None, 50, None)
            )
            for name, (text, extra) in SEARCHES.items()
        },
    }
    out: dict[str, dict[str, float]] = {name: _timed(name, fn, reps) for name, fn in cases.items()}
    db.close()
    rt.store.close()
    out["_backfill"] = {"seconds": backfill_s}
    return out


def start_gateway(db_path: Path, up_port: int) -> tuple[Any, str]:
    """``thrifty serve``'s app (gateway + dashboard) on the benchmark database, over the upstream at
    ``up_port`` (the 0008 indexes exist already); the process and its base URL."""
    data_dir = db_path.parent
    s = settings_for(data_dir, up_port)  # the same profiles, now pointing at the live upstream
    lines = [f'[server]\ndata_dir = "{data_dir}"\nrequest_timeout_s = 30\n']
    for n, p in s.providers.items():
        lines.append(
            f'[providers.{n}]\nkind = "openai"\nmodel = "{p.model}"\nbase_url = "{p.base_url}"\n'
            f"prices = {{ input = {p.price_input}, output = {p.price_output} }}\ntimeout_s = 10\nmax_tokens = 16\n"
        )
    lines.append('[profiles.default]\ntiers = ["cheap"]\n\n[profiles.cascade]\ntiers = ["cheap", "strong"]\nthresholds = [0.0]\n')
    gw, port = start_uvicorn(data_dir, "\n".join(lines), app="thrifty.ui.serve:app_from_env", timeout=300)
    return gw, f"http://127.0.0.1:{port}"


def load_test(db_path: Path, duration: float, n_rounds: int = 4, poll_every: float = 1.0) -> dict[str, Any]:
    import shutil

    import httpx

    if not shutil.which("wrk"):
        return {"skipped": "wrk is not installed (apt-get install -y wrk)"}
    up, up_port = start_upstream()
    gw = None
    try:
        gw, base = start_gateway(db_path, up_port)
        polls: list[float] = []
        stop_poll = threading.Event()

        def poll() -> None:
            with httpx.Client(base_url=base, timeout=30) as c:
                while not stop_poll.is_set():
                    for path in ("/ui/api/overview?range=30d", "/ui/api/profiles", "/ui/api/overview?range=24h"):
                        t0 = time.perf_counter()
                        assert c.get(path).status_code == 200
                        polls.append((time.perf_counter() - t0) * 1000)
                    stop_poll.wait(poll_every)

        run_wrk(f"http://127.0.0.1:{up_port}/v1/chat/completions", "bench", 4, 2)  # warm both
        run_wrk(base + "/v1/chat/completions", "thrifty/cascade", 4, 2)

        def gateway(poll_on: bool) -> Any:
            stop_poll.clear()
            t = threading.Thread(target=poll, daemon=True) if poll_on else None
            if t:
                t.start()
            r = run_wrk(base + "/v1/chat/completions", "thrifty/cascade", 4, duration)
            stop_poll.set()
            if t:
                t.join(60)
            return r

        rounds = []
        for i in range(n_rounds):  # interleaved, the order flipped every round, so drift hits both alike
            direct = run_wrk(f"http://127.0.0.1:{up_port}/v1/chat/completions", "bench", 4, duration)
            first, second = (False, True) if i % 2 == 0 else (True, False)
            runs = {first: gateway(first)}
            runs[second] = gateway(second)
            quiet, busy = runs[False], runs[True]
            rounds.append(
                {
                    "direct": vars(direct),
                    "quiet": vars(quiet),
                    "polling": vars(busy),
                    "added_p50_quiet_ms": quiet.p50_ms - direct.p50_ms,
                    "added_p50_polling_ms": busy.p50_ms - direct.p50_ms,
                    "added_p99_quiet_ms": quiet.p99_ms - direct.p99_ms,
                    "added_p99_polling_ms": busy.p99_ms - direct.p99_ms,
                    "rps_quiet": quiet.rps,
                    "rps_polling": busy.rps,
                }
            )
            print(
                f"  round {i + 1}: added p50 {rounds[-1]['added_p50_quiet_ms']:.2f} ms quiet, {rounds[-1]['added_p50_polling_ms']:.2f} ms polling;"
                f" added p99 {rounds[-1]['added_p99_quiet_ms']:.2f} / {rounds[-1]['added_p99_polling_ms']:.2f} ms;"
                f" rps {quiet.rps:.0f} / {busy.rps:.0f}",
                flush=True,
            )
        med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0] if k.startswith(("added", "rps"))}
        quiet_p50 = [r["added_p50_quiet_ms"] for r in rounds]
        med["noise_added_p50_quiet_range_ms"] = max(quiet_p50) - min(quiet_p50)
        print(
            f"  median added p50: {med['added_p50_quiet_ms']:.2f} ms quiet vs {med['added_p50_polling_ms']:.2f} ms polling"
            f" (quiet runs alone span {med['noise_added_p50_quiet_range_ms']:.2f} ms)",
            flush=True,
        )
        polls.sort()
        return {
            "rounds": rounds,
            "median": med,
            "poll_every_s": poll_every,
            "poll_requests": len(polls),
            "poll_p50_ms": statistics.median(polls) if polls else None,
            "poll_max_ms": polls[-1] if polls else None,
            "tool": "wrk -t1 -c4",
            "duration_s": duration,
        }
    finally:
        stop(gw)
        stop(up)


def _timed(name: str, fn: Callable[[], Any], reps: int) -> dict[str, float]:
    fn()  # warm the page cache
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
    ts.sort()
    out = {"p50_ms": statistics.median(ts), "p95_ms": ts[min(len(ts) - 1, int(0.95 * len(ts) + 0.999) - 1)], "max_ms": ts[-1]}
    print(f"  {name:32s} p50 {out['p50_ms']:8.1f} ms   p95 {out['p95_ms']:8.1f} ms", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    from dashboard_search import time_search_postgres, write_cost  # its helpers import this module's

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--duration", type=float, default=6.0, help="seconds per wrk run")
    ap.add_argument("--no-load", action="store_true", help="skip the wrk part (dashboard polling)")
    ap.add_argument(
        "--write-cost", action="store_true", help="also measure the gateway's CPU per request with and without the search index"
    )
    ap.add_argument("--no-queries", action="store_true", help="skip the query timings (e.g. with --write-cost on a kept --db)")
    ap.add_argument("--postgres", action="store_true", help="also time the searches on a throwaway PostgreSQL server (--rows rows)")
    ap.add_argument("--rounds", type=int, default=4, help="wrk rounds (each: direct, quiet gateway, polled gateway)")
    ap.add_argument("--poll-every", type=float, default=1.0, help="seconds between dashboard polls (an open page: 15)")
    ap.add_argument("--out", default=str(ROOT / "results" / "dashboard_queries.json"))
    ap.add_argument("--db", help="keep the database at this path (…/logs.sqlite3) and reuse it when it exists")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 20,000 rows, 3 reps, one 1 s wrk round")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.reps, args.duration, args.rounds = 20_000, 3, 1.0, 1  # --write-cost / --postgres: as small
    with tempfile.TemporaryDirectory(prefix="thrifty-dash-") as tmp:
        if args.db:  # reuse a database filled by an earlier run (its roll-ups are kept)
            tmp = str(Path(args.db).parent)
        db_path = Path(tmp) / "logs.sqlite3"
        fresh = not db_path.exists()
        insert_s, search_backfill_s = fill(db_path, args.rows, now=time.time()) if fresh else (float("nan"), float("nan"))
        size_mb = sum(p.stat().st_size for p in Path(tmp).glob("logs.sqlite3*")) / 1e6
        print(f"inserted {args.rows:,} rows in {insert_s:.1f}s ({args.rows / insert_s:,.0f} rows/s); database {size_mb:.0f} MB", flush=True)
        print(f"  search index backfilled by its migration in {search_backfill_s:.1f}s", flush=True)
        queries = {"_backfill": {"seconds": float("nan")}} if args.no_queries else time_queries(db_path, args.reps)
        load = {"skipped": "--no-load"} if args.no_load else load_test(db_path, args.duration, args.rounds, args.poll_every)
        writes = write_cost(db_path, args.duration, args.rounds) if args.write_cost else {"skipped": "no --write-cost"}
    postgres = time_search_postgres(args.rows, args.reps) if args.postgres else {"skipped": "no --postgres"}
    backfill_s = queries.pop("_backfill")["seconds"]
    target = {k: v["p95_ms"] <= 300 for k, v in queries.items() if k.startswith(("overview", "profile", "search"))}
    target.update({f"postgres_{k}": v["p95_ms"] <= 300 for k, v in postgres.get("queries", {}).items()})
    commit = git_commit()
    doc = {
        "benchmark": "dashboard_queries",
        "commit": commit,
        "rows": args.rows,
        "reps": args.reps,
        "insert_s": insert_s,
        "db_mb": size_mb,
        "rollup_backfill_s": backfill_s,
        "search_backfill_s": search_backfill_s,
        "queries": queries,
        "target_p95_ms": 300,
        "meets_target": all(target.values()),
        "target_by_query": target,
        "load": load,
        "write_cost": writes,
        "postgres_search": postgres,
        "python": sys.version.split()[0],
        "sqlite": __import__("sqlite3").sqlite_version,
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"overview/profile/search queries ≤ 300 ms p95: {'yes' if doc['meets_target'] else 'NO'}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
