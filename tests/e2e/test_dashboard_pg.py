"""The dashboard on a PostgreSQL store: real PostgreSQL (initdb + pg_ctl), real ``thrifty serve``,
the official ``openai`` client, headless Chromium.

- the same synthetic log in SQLite and in PostgreSQL gives the same figures on both engines, before
  and after the hourly/daily roll-ups (the roll-ups run as store transactions on PostgreSQL);
- ``thrifty serve --store postgresql://…``: requests through the gateway, then ``/ui/api/...``
  numbers equal a recount from PostgreSQL, and the overview and a request page render in Chromium
  with zero console errors.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from db_servers import PASSWORD, PostgresServer
from fault_upstream import FaultUpstream
from gateway_proc import GatewayProcess, toml_provider

pytest.importorskip("psycopg", reason="the PostgreSQL store needs psycopg (pip install 'thrifty[postgres]')")

NOW = 1_796_000_000.0
BASELINE = {"p1": (5.0, 15.0), "p2": (1.0, 2.0)}
ADMIN = "admin-secret-pg"
PRICES = {"cheap": (0.1, 0.2), "dear": (5.0, 15.0), "down": (1.0, 2.0)}
AUDITED = 4  # requests of the audited profile


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


def _sql(url: str, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(url, password=PASSWORD, autocommit=True, row_factory=dict_row) as conn:
        return list(conn.execute(sql, params).fetchall())


def _fill(store: Any, n: int, seed: int = 3) -> None:
    """``n`` requests over the 3 days before NOW, with escalations, errors, keys, cache states and
    timestamps on and next to hour boundaries (where a rounding CAST would move a row)."""
    from thrifty.store import RequestRecord, StepRecord

    rng = random.Random(seed)
    for i in range(n):
        esc = rng.random() < 0.3
        status = 200 if rng.random() < 0.9 else rng.choice([502, 504])
        steps = (StepRecord(0, "small", "escalated" if esc else ("accepted" if status < 400 else "failed"), answer="a", cost_usd=0.001),)
        if esc:
            steps += (StepRecord(1, "big", "accepted" if status < 400 else "failed", answer="b", cost_usd=0.01),)
        created = NOW - rng.uniform(0, 3 * 86_400)
        if i % 5 == 0:  # just before an hour's end: CAST(… AS INTEGER) rounds it into the next bucket on PostgreSQL
            created = (created // 3_600) * 3_600 + 3_599.7
        store.record(
            RequestRecord(
                id=f"r{i:05d}",
                created=created,
                model_requested="thrifty/p",
                request={"messages": []},
                status=status,
                key_name=rng.choice(["alice", "bob", None]),
                profile=rng.choice(["p1", "p2", None]),
                prompt=f"prompt {i}",
                final_model=steps[-1].model if status < 400 else None,
                tiers_tried=tuple(s.model for s in steps),
                cost_usd=sum(s.cost_usd for s in steps),
                latency_s=rng.lognormvariate(-2, 1),
                input_tokens=rng.randint(5, 50),
                output_tokens=rng.randint(1, 30),
                steps=steps,
                cache=rng.choice([None, "hit", "miss"]),
            )
        )


def _figures(db: Any) -> list[Any]:
    from thrifty.ui import params, queries

    out: list[Any] = []
    for q in (
        {"range": "24h"},
        {"range": "7d"},
        {"range": "7d", "bucket": "hour"},
        {"start": str(NOW - 2.5 * 86_400 + 123.4), "end": str(NOW - 3_000.5)},
    ):
        w = params.window_from(q, now=NOW)
        out += [
            queries.overview(db, w, scope_key=None, baseline=BASELINE),
            queries.overview(db, w, scope_key="bob", baseline=BASELINE),
            queries.latency_percentiles(db, w, scope_key=None),
            queries.profile_series(db, w, "p1", scope_key=None),
            queries.key_spend(db, w, scope_key=None),
        ]
    return out


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def test_same_figures_on_sqlite_and_postgres_before_and_after_rollups(
    tmp_path: Path, pg: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from thrifty.store import LogStore
    from thrifty.ui import queries
    from thrifty.ui.rollup import Roller

    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    lite, post = LogStore(tmp_path / "logs.sqlite3"), LogStore(pg.create_database())
    try:
        for store in (lite, post):
            _fill(store, 400)
        db_lite, db_pg = queries.Reader(lite), queries.Reader(post)
        raw = _figures(db_lite)
        assert raw[0]["totals"]["requests"] > 0 and raw[0]["totals"]["escalated"] > 0
        assert _close(_figures(db_pg), raw)
        until = [Roller(s, settle_s=3_600).catch_up(now=NOW, force=True) for s in (lite, post)]
        assert until[0] == until[1] == (int(NOW) - 3_600) // 3_600 * 3_600
        for db in (db_lite, db_pg):
            assert db.rows("SELECT COUNT(*) AS n FROM dash_hourly WHERE span = 86400")[0]["n"] > 0  # whole days too
            assert int(db.rows("SELECT SUM(n) AS n FROM dash_hourly WHERE span = 3600")[0]["n"]) == int(
                db.rows("SELECT COUNT(*) AS n FROM requests WHERE created < ?", (until[0],))[0]["n"]
            )
            assert _close(_figures(db), raw)
        assert Roller(post, settle_s=3_600).catch_up(now=NOW + 60, force=True) == until[1]  # another process: nothing rolled twice
        assert _close(_figures(db_pg), raw)
        like = "SELECT COUNT(*) AS n FROM requests WHERE prompt LIKE 'prompt 1%' AND status >= ?"  # a '%' in a literal, and a parameter
        assert db_pg.rows(like, (0,)) == db_lite.rows(like, (0,)) == [{"n": 111}]
        assert queries.table_columns(db_pg, "no_such_table") is None
        assert queries.table_columns(db_pg, "requests")[:2] == ("id", "created")
    finally:
        lite.close()
        post.close()


SEARCH_WORDS = ["Tides", "moon", "gravity", "ocean", "ticket", "42", "100%", "snake_case", "back\\slash", "a", "zz"]
SEARCH_TEXTS = ["tides", "TIDES", "moon gravity", "100%", "%", "_", "snake_case", "back\\slash", "42 #1", "a", "zz", "nothing"]


def _search_all(db: Any, text: str) -> list[str]:
    from thrifty.ui import queries

    out: list[str] = []
    before = None
    while True:
        rows, more = queries.list_requests(db, queries.RequestFilter(text=text), scope_key=None, limit=9, before=before)
        out += [r["id"] for r in rows]
        if not more:
            return out
        before = (rows[-1]["created"], rows[-1]["id"])


def _fill_prompts(store: Any, n: int) -> None:
    from thrifty.store import RequestRecord

    rng = random.Random(5)
    for i in range(n):
        prompt = None if i % 37 == 0 else " ".join(rng.choice(SEARCH_WORDS) for _ in range(rng.randint(1, 5))) + f" #{i}"
        store.record(RequestRecord(id=f"s{i:04d}", created=NOW + i, model_requested="m", request={}, status=200, prompt=prompt))


@pytest.mark.parametrize("owner", ["thrifty", "postgres"])  # postgres: thrifty may not CREATE EXTENSION there
def test_prompt_search_on_postgres_equals_a_recount(
    pg: PostgresServer, owner: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from thrifty.store import LogStore
    from thrifty.ui import queries

    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    name = f"search_{owner}"
    pg.admin(f'CREATE DATABASE "{name}" OWNER {owner}')
    pg.admin("GRANT CREATE, USAGE ON SCHEMA public TO thrifty", dbname=name)
    store = LogStore(pg.url(name))
    try:
        _fill_prompts(store, 400)
        db = queries.Reader(store)
        indexed = owner == "thrifty"  # pg_trgm is a trusted extension: the database's owner may create it
        assert db.search_mode() == ("trigram" if indexed else "scan")
        assert ("prompt search is not indexed" in caplog.text) == (not indexed) and ("CREATE EXTENSION pg_trgm" in caplog.text) == (
            not indexed
        )
        rows = _sql(pg.url(name), "SELECT id, prompt FROM requests ORDER BY created DESC, id DESC")
        for text in SEARCH_TEXTS:
            assert _search_all(db, text) == [r["id"] for r in rows if r["prompt"] and text.lower() in r["prompt"].lower()], text
        if indexed:  # the index serves the very condition the dashboard sends (seq scans off: a 400-row table)
            import psycopg

            with psycopg.connect(pg.url(name), password=PASSWORD, autocommit=True) as conn:
                conn.execute("SET enable_seqscan = off")
                plan = " ".join(r[0] for r in conn.execute("EXPLAIN SELECT id FROM requests WHERE LOWER(prompt) LIKE '%gravity%'"))
            assert "requests_prompt_trgm" in plan, plan
    finally:
        store.close()


def _config(up: FaultUpstream) -> str:
    import hashlib

    modes = {"cheap": "normal", "dear": "normal", "down": "503"}
    cfg = f'[server]\nadmin_sha256 = "{hashlib.sha256(ADMIN.encode()).hexdigest()}"\n\n'
    cfg += "".join(toml_provider(n, up.base_url(modes[n]), price_in=PRICES[n][0], price_out=PRICES[n][1]) for n in modes)
    cfg += '[profiles.fast]\ntiers = ["cheap", "dear"]\nthresholds = [0.0]\n\n[profiles.fast.cache]\nmode = "exact"\n\n'
    cfg += '[profiles.careful]\ntiers = ["cheap", "dear"]\nthresholds = [1.5]\n\n'  # above any score: always escalates
    cfg += '[profiles.broken]\ntiers = ["down"]\n\n'
    # every request audited: each tier's answer judged against the dear tier's (the audit loop, on PostgreSQL too)
    cfg += '[profiles.audited]\ntiers = ["cheap", "dear"]\nthresholds = [0.0]\n\n'
    cfg += '[profiles.audited.audit]\nrate = 1.0\njudge = "match:exact"\nreference = "dear"\n\n'
    return cfg


@pytest.fixture(scope="module")
def served_pg(pg: PostgresServer, tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("openai")
    tmp = tmp_path_factory.mktemp("dash-pg")
    url = pg.create_database()
    with FaultUpstream() as up, GatewayProcess(_config(up), tmp, cli=True, env=pg.env(), extra_args=("--store", url)) as gw:
        from openai import APIError, OpenAI

        client = OpenAI(base_url=gw.base_url + "/v1", api_key="unused", max_retries=0, timeout=30)
        ids: dict[str, str] = {}
        msg = [{"role": "user", "content": "Name a prime number."}]
        for kind in ("accepted", "cached"):
            raw = client.chat.completions.with_raw_response.create(model="thrifty/fast", messages=msg, temperature=0)
            ids[kind] = raw.headers["x-thrifty-request-id"]
        assert raw.headers["x-thrifty-cache"] == "hit"
        raw = client.chat.completions.with_raw_response.create(model="thrifty/careful", messages=[{"role": "user", "content": "Why?"}])
        ids["escalated"] = raw.headers["x-thrifty-request-id"]
        with client.chat.completions.with_streaming_response.create(
            model="thrifty/fast", messages=[{"role": "user", "content": "stream"}], stream=True
        ) as resp:
            "".join((c.choices[0].delta.content or "") for c in resp.parse() if c.choices)
        with pytest.raises(APIError):
            client.chat.completions.create(model="thrifty/broken", messages=[{"role": "user", "content": "this one fails"}])
        for i in range(AUDITED):
            client.chat.completions.create(model="thrifty/audited", messages=[{"role": "user", "content": f"audit me {i}"}])
        deadline = time.monotonic() + 30
        while _sql(url, "SELECT COUNT(*) AS n FROM audits WHERE status = 'done'")[0]["n"] < AUDITED:
            assert time.monotonic() < deadline, _sql(url, "SELECT request_id, status, error FROM audits")
            time.sleep(0.2)
        assert not gw.db_path.exists()  # everything went to PostgreSQL
        yield gw, url, ids, tmp


def _api(gw: GatewayProcess, path: str) -> Any:
    resp = httpx.get(gw.base_url + path, headers={"authorization": f"Bearer {ADMIN}"}, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_api_figures_equal_a_recount_from_postgres(served_pg, monkeypatch: pytest.MonkeyPatch) -> None:
    gw, url, ids, _ = served_pg
    rows = _sql(url, "SELECT * FROM requests")
    ok = [r for r in rows if r["status"] < 400]
    assert len(rows) == 5 + AUDITED and len(ok) == 4 + AUDITED
    doc = _api(gw, "/ui/api/overview?range=24h")
    t = doc["totals"]
    assert (t["requests"], t["answered"], t["errors"]) == (len(rows), len(ok), len(rows) - len(ok))
    assert math.isclose(t["spend_usd"], sum(r["cost_usd"] for r in rows)) and t["spend_usd"] > 0
    dearest = {"fast": PRICES["dear"], "careful": PRICES["dear"], "broken": PRICES["down"], "audited": PRICES["dear"]}
    saved = sum(
        (r["input_tokens"] * dearest[r["profile"]][0] + r["output_tokens"] * dearest[r["profile"]][1]) / 1e6 - r["cost_usd"] for r in ok
    )
    assert math.isclose(t["saved_usd"], saved) and saved > 0
    assert t["escalated"] == sum(1 for r in ok if r["tiers_tried"].count(",") >= 1) == 1
    assert (t["cache_hits"], t["cache_lookups"]) == (
        sum(1 for r in ok if r["cache"] == "hit"),
        sum(1 for r in ok if r["cache"] in ("hit", "semantic", "miss")),
    )
    assert t["cache_hits"] == 1
    assert doc["errors_by_status"] == {str(r["status"]): 1 for r in rows if r["status"] >= 400}
    assert sum(doc["series"]["requests"]) == len(rows)
    keys = _api(gw, "/ui/api/keys?range=24h")  # no keys configured: every request is "(no key)"
    assert [(k["name"], k["requests"], k["errors"]) for k in keys["unconfigured"]] == [("(no key)", len(rows), len(rows) - len(ok))]
    assert math.isclose(keys["unconfigured"][0]["spend_usd"], t["spend_usd"])
    listed = _api(gw, "/ui/api/requests?limit=50")
    assert [r["id"] for r in listed["requests"]] == [r["id"] for r in sorted(rows, key=lambda r: (r["created"], r["id"]), reverse=True)]
    assert [r["id"] for r in _api(gw, "/ui/api/requests?limit=50&status=error")["requests"]] == [
        r["id"] for r in rows if r["status"] >= 400
    ]
    assert [r["id"] for r in _api(gw, "/ui/api/requests?limit=50&q=PRIME")["requests"]] == [ids["cached"], ids["accepted"]]
    for text in ("audit me", "PRIME", "fails", "zebra"):  # through the pg_trgm index: a recount from the rows
        found = _api(gw, f"/ui/api/requests?limit=50&q={text.replace(' ', '+')}")
        newest = sorted(rows, key=lambda r: (r["created"], r["id"]), reverse=True)
        assert found["search"] == "trigram"
        assert [r["id"] for r in found["requests"]] == [r["id"] for r in newest if text.lower() in (r["prompt"] or "").lower()], text
    detail = _api(gw, f"/ui/api/requests/{ids['escalated']}")
    steps = _sql(url, "SELECT model, decision FROM steps WHERE request_id = %s ORDER BY idx", (ids["escalated"],))
    assert [(s["model"], s["decision"]) for s in detail["request"]["steps"]] == [(s["model"], s["decision"]) for s in steps]
    from thrifty.calibration.audit_report import audit_report
    from thrifty.store import LogStore

    audit = doc["audit"]
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    store = LogStore(url)
    try:
        report = audit_report(store, None, since=doc["window"]["start"])["profiles"]["audited"]
    finally:
        store.close()
    assert audit["enabled"] and list(audit["profiles"]) == ["audited"] and audit["audited"] == report["audited"] == AUDITED
    assert (audit["judged"], audit["at_least_as_good"]) == (report["served"]["n"], report["served"]["k"])
    assert audit["ci95"] == pytest.approx([report["served"]["low"], report["served"]["high"]])
    assert audit["audit_cost_usd"] == pytest.approx(report["audit_cost_usd"]) and audit["audit_cost_usd"] > 0
    profiles = {p["name"]: p for p in _api(gw, "/ui/api/profiles?range=24h")["profiles"]}
    fast = sum(1 for r in ok if r["profile"] == "fast")
    assert profiles["fast"]["answered"] == fast == 3
    careful = [r for r in ok if r["profile"] == "careful"]
    assert profiles["careful"]["tier_shares"] == {careful[0]["final_model"]: 1.0} and profiles["careful"]["escalation_rate"] == 1.0


def test_pages_render_in_chromium_without_console_errors(served_pg) -> None:
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
    if not os.path.exists(chromium):
        pytest.skip("Chromium is not installed (apt-get install -y chromium): the dashboard's browser tests need it")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (drives the system Chromium; no browser download)")
    from playwright.sync_api import sync_playwright
    from test_dashboard_browser import FLAGS, Page

    gw, url, ids, tmp = served_pg
    n = len(_sql(url, "SELECT id FROM requests"))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=FLAGS)
        ctx = browser.new_context(http_credentials={"username": "admin", "password": ADMIN}, viewport={"width": 1360, "height": 900})
        try:
            p = Page(ctx, gw.base_url + "/ui", tmp / "screens", "overview_pg")
            assert p.text("#fig-requests") == str(n) == str(5 + AUDITED)
            assert p.text("#fig-errors") == "1"
            assert p.text("#audit-n").startswith(f"{AUDITED} (")
            p.done()
            p = Page(ctx, gw.base_url + f"/ui/requests/{ids['escalated']}", tmp / "screens", "request_pg")
            nodes = set(p.page.evaluate("window.thriftyCy.nodes().map(n => n.id())"))
            assert nodes == {"request", "tier0", "tier1", "answer"}
            p.done()
        finally:
            ctx.close()
            browser.close()


def test_audit_panel_is_the_same_on_both_engines_and_equals_the_report(
    tmp_path: Path, pg: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from thrifty.calibration.audit_report import audit_report
    from thrifty.store import LogStore
    from thrifty.store.audits import PendingAudit, fail_in, finish_in, insert_pending_in
    from thrifty.ui import params, queries
    from thrifty.ui.optional_tables import audit_summary

    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    lite, post = LogStore(tmp_path / "logs.sqlite3"), LogStore(pg.create_database())
    try:
        panels = []
        for store in (lite, post):
            _fill(store, 150)
            rows = store.iter_rows(
                "SELECT id, profile, created, final_model, cost_usd FROM requests"
                " WHERE status < 400 AND profile IS NOT NULL ORDER BY id LIMIT 40"
            )
            for i, r in enumerate(rows):
                store.run_in_transaction(
                    insert_pending_in,
                    PendingAudit(
                        request_id=r["id"],
                        profile=r["profile"],
                        created=r["created"],
                        request={"messages": []},
                        tiers=("small", "big"),
                        reference="big",
                        judge="match:exact",
                        rubric=None,
                        rubric_version="match-exact-v1",
                        explore="all",
                        served_model=r["final_model"],
                        served_cost_usd=r["cost_usd"],
                    ),
                )
                if i % 9 == 8:
                    store.run_in_transaction(fail_in, r["id"], "judge timed out", judge_cost_usd=0.0002, now=NOW)
                    continue
                answers = [
                    {
                        "model": "small",
                        "tier": 0,
                        "answer": "a",
                        "cost_usd": 0.001,
                        "reused": False,
                        "quality": float(i % 4 != 0),
                        "at_least_as_good": i % 4 != 0,
                    },
                    {"model": "big", "tier": 1, "answer": "b", "cost_usd": 0.01, "reused": False, "quality": 1.0, "at_least_as_good": True},
                ]
                store.run_in_transaction(finish_in, r["id"], answers, judge_cost_usd=0.0005, now=NOW)
            w = params.window_from({"range": "7d"}, now=NOW)
            panel = audit_summary(queries.Reader(store), w, scope_key=None)
            report = audit_report(store, None, since=w.start)["profiles"]
            for name, rep in report.items():
                mine = panel["profiles"][name]
                assert (mine["judged"], mine["at_least_as_good"]) == (rep["served"]["n"], rep["served"]["k"])
                assert mine["ci95"] == pytest.approx([rep["served"]["low"], rep["served"]["high"]])
                assert mine["audit_cost_usd"] == pytest.approx(rep["audit_cost_usd"])
            panels.append(panel)
        assert panels[0]["audited"] > 20 and _close(panels[1], panels[0])
    finally:
        lite.close()
        post.close()
