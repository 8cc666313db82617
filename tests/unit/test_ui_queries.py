"""Dashboard aggregations: the roll-ups change no figure, scopes never leak, bad parameters are clear errors."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from thrifty.errors import RequestError
from thrifty.store import LogStore, RequestRecord, StepRecord
from thrifty.ui import params, queries
from thrifty.ui.graph import request_graph
from thrifty.ui.optional_tables import audit_summary, refit_history, wilson_interval
from thrifty.ui.rollup import LATENCY_LE_MS, OVERFLOW_MS, Roller, latency_bucket_ms, latency_bucket_sql

NOW = 1_796_000_000.0  # a fixed "now" (2026-11-30) so the windows are reproducible
BASELINE = {"p1": (5.0, 15.0), "p2": (1.0, 2.0)}


def _fill(store: LogStore, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    for i in range(n):
        esc = rng.random() < 0.3
        status = 200 if rng.random() < 0.9 else rng.choice([502, 504])
        steps = (
            StepRecord(
                0,
                "small",
                "escalated" if esc else ("accepted" if status < 400 else "failed"),
                answer="a",
                score=0.3,
                threshold=0.5,
                cost_usd=0.001,
            ),
        ) + ((StepRecord(1, "big", "accepted" if status < 400 else "failed", answer="b", cost_usd=0.01),) if esc else ())
        store.record(
            RequestRecord(
                id=f"r{i:05d}",
                created=NOW - rng.uniform(0, 3 * 86_400),
                model_requested="thrifty/p",
                request={"messages": []},
                status=status,
                key_name=rng.choice(["alice", "bob", None]),
                profile=rng.choice(["p1", "p2", None]),
                prompt=f"prompt {i} {'needle' if i % 17 == 0 else ''}",
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


@pytest.fixture()
def log(tmp_path: Path):
    store = LogStore(tmp_path / "logs.sqlite3")
    _fill(store, 600)
    db = queries.Reader(store)
    yield store, db
    db.close()
    store.close()


def _all_figures(db: queries.Reader, scope: str | None = None) -> list:
    out = []
    for q in (
        {"range": "24h"},
        {"range": "7d"},
        {"range": "7d", "bucket": "hour"},
        {"start": str(NOW - 2.5 * 86_400 + 123.4), "end": str(NOW - 3_000.5)},
    ):
        w = params.window_from(q, now=NOW)
        out.append(queries.overview(db, w, scope_key=scope, baseline=BASELINE))
        out.append(queries.latency_percentiles(db, w, scope_key=scope))
        out.append(queries.profile_series(db, w, "p1", scope_key=scope))
        out.append(queries.key_spend(db, w, scope_key=scope))
    return out


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def test_rolled_up_hours_give_the_same_figures_as_the_raw_log(log) -> None:
    store, db = log
    before = _all_figures(db)
    roller = Roller(store, settle_s=3_600)
    until = roller.catch_up(now=NOW, force=True)
    assert until == (int(NOW) - 3_600) // 3_600 * 3_600
    assert db.rows("SELECT COUNT(*) AS n FROM dash_hourly WHERE span = 86400")[0]["n"] > 0  # whole days too
    assert _close(_all_figures(db), before)
    assert roller.catch_up(now=NOW + 60, force=True) == until  # nothing new settled: nothing rolled twice
    assert (
        db.rows("SELECT SUM(n) AS n FROM dash_hourly WHERE span = 3600")[0]["n"]
        == db.rows("SELECT COUNT(*) AS n FROM requests WHERE created < ?", (until,))[0]["n"]
    )
    roller.close()


def test_overview_totals_equal_a_recount(log) -> None:
    store, db = log
    w = params.window_from({"range": "7d"}, now=NOW)
    doc = queries.overview(db, w, scope_key=None, baseline=BASELINE)
    rows = db.rows("SELECT * FROM requests")
    ok = [r for r in rows if r["status"] < 400]
    assert doc["totals"]["requests"] == len(rows) == sum(doc["series"]["requests"])
    assert doc["totals"]["errors"] == len(rows) - len(ok)
    assert math.isclose(doc["totals"]["spend_usd"], sum(r["cost_usd"] for r in rows))
    dearest = sum(
        (r["input_tokens"] * BASELINE[r["profile"]][0] + r["output_tokens"] * BASELINE[r["profile"]][1]) / 1e6
        if r["profile"]
        else r["cost_usd"]
        for r in ok
    ) + sum(r["cost_usd"] for r in rows if r["status"] >= 400)
    assert math.isclose(doc["totals"]["dearest_usd"], dearest)
    assert doc["totals"]["escalated"] == sum(1 for r in ok if "," in r["tiers_tried"])
    assert doc["totals"]["cache_hits"] == sum(1 for r in ok if r["cache"] == "hit")
    lat = sorted(latency_bucket_ms(r["latency_s"]) for r in ok)
    assert queries.latency_percentiles(db, w, scope_key=None)["p50_ms"] == lat[math.ceil(0.5 * len(lat)) - 1]


def test_a_key_scope_never_sees_another_keys_rows(log) -> None:
    store, db = log
    Roller(store, settle_s=3_600).catch_up(now=NOW, force=True)
    w = params.window_from({"range": "7d"}, now=NOW)
    alice = queries.overview(db, w, scope_key="alice", baseline=BASELINE)
    assert alice["totals"]["requests"] == db.rows("SELECT COUNT(*) AS n FROM requests WHERE key_name = 'alice'")[0]["n"]
    assert set(queries.key_spend(db, w, scope_key="alice")) == {"alice"}
    rows, _ = queries.list_requests(db, queries.RequestFilter(key="bob"), scope_key="alice", limit=200, before=None)
    assert rows and {r["key_name"] for r in rows} == {"alice"}  # the filter cannot widen the scope
    bob_id = db.rows("SELECT id FROM requests WHERE key_name = 'bob' LIMIT 1")[0]["id"]
    assert queries.request_detail(db, bob_id, scope_key="alice") is None
    assert queries.request_detail(db, bob_id, scope_key=None)["key_name"] == "bob"


def test_request_list_pages_and_filters(log) -> None:
    _, db = log
    seen, before = [], None
    while True:
        rows, more = queries.list_requests(db, queries.RequestFilter(status="ok", text="NEEDLE"), scope_key=None, limit=7, before=before)
        seen += rows
        if not more:
            break
        before = (rows[-1]["created"], rows[-1]["id"])
    expected = db.rows("SELECT id FROM requests WHERE status < 400 AND prompt LIKE '%needle%' ORDER BY created DESC, id DESC")
    assert [r["id"] for r in seen] == [r["id"] for r in expected] and len(expected) > 7
    rows, _ = queries.list_requests(db, queries.RequestFilter(text="50%_"), scope_key=None, limit=10, before=None)
    assert rows == []  # % and _ are matched literally


def test_latency_buckets_agree_in_python_and_sql(tmp_path: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(":memory:")
    for s in (0.0, 0.0004, 0.001, 0.0011, 0.0999, 0.1, 0.25, 1.0, 299.0, 300.0, 301.0, 5_000.0):
        assert conn.execute(f"SELECT {latency_bucket_sql('x')} FROM (SELECT ? AS x)", (s,)).fetchone()[0] == latency_bucket_ms(s), s
    assert latency_bucket_ms(10_000) == OVERFLOW_MS and list(LATENCY_LE_MS) == sorted(LATENCY_LE_MS)


@pytest.mark.parametrize(
    "q, param",
    [
        ({"range": "1y"}, "range"),
        ({"bucket": "minute"}, "bucket"),
        ({"start": "soon"}, "start"),
        ({"start": "2000", "end": "1000"}, "end"),
        ({"start": "0", "end": "99999999"}, "start"),
        ({"range": "30d", "start": "0", "end": str(400 * 86_400)}, "start"),
        ({"start": "0", "end": str(200 * 86_400), "bucket": "hour"}, "bucket"),
    ],
)
def test_bad_windows_name_the_parameter(q, param) -> None:
    with pytest.raises(RequestError) as e:
        params.window_from(q, now=NOW)
    assert e.value.param == param


def test_page_size_and_filters_are_checked() -> None:
    assert params.page_size({}) == 50 and params.page_size({"limit": "200"}) == 200
    for bad in ("0", "201", "ten", "-5"):
        with pytest.raises(RequestError, match="limit"):
            params.page_size({"limit": bad})
    with pytest.raises(RequestError, match="status"):
        params.request_filter({"status": "teapot"})
    with pytest.raises(RequestError, match="cache"):
        params.request_filter({"cache": "warm"})
    with pytest.raises(RequestError, match="cursor"):
        params.cursor({"before": "x:y"})
    assert params.request_filter({"start": "2026-12-01T00:00:00Z"}).start == 1_796_083_200.0


def test_graph_of_an_escalated_then_accepted_request() -> None:
    detail = {
        "status": 200,
        "model_requested": "thrifty/p",
        "prompt": "Q?",
        "answer": "B",
        "final_model": "big",
        "cache": "miss",
        "steps": [
            {"idx": 0, "tier": 0, "model": "small", "decision": "escalated", "answer": "A", "score": 0.2, "threshold": 0.5},
            {"idx": 1, "tier": 1, "model": "big", "decision": "accepted", "answer": "B"},
        ],
    }
    g = request_graph(
        detail,
        profile={"prompt_adaptation": {"k": 4, "layout": "messages"}},
        audit={"request_id": "r", "reference": "big", "audit_cost_usd": 0.01},
        audit_answers=[{"model": "big", "at_least_as_good": 1, "quality": 0.9}],
    )
    assert [n["id"] for n in g["nodes"]] == ["request", "cache", "shots", "tier0", "tier1", "answer", "audit", "verdict0"]
    assert [(e["source"], e["target"]) for e in g["edges"]] == [
        ("request", "cache"),
        ("cache", "shots"),
        ("shots", "tier0"),
        ("tier0", "tier1"),
        ("tier1", "answer"),
        ("answer", "audit"),
        ("audit", "verdict0"),
    ]
    assert g["edges"][3]["label"] == "escalated: score 0.2 < 0.5"
    assert next(n for n in g["nodes"] if n["id"] == "tier0")["text"] == "A"


def test_a_stream_that_died_ends_in_an_error_node() -> None:
    g = request_graph(
        {
            "status": 502,
            "model_requested": "m",
            "prompt": "Q",
            "stream": 1,
            "answer": "par",
            "error": "upstream died",
            "steps": [{"idx": 0, "tier": 0, "model": "m", "decision": "failed", "error": "upstream died"}],
        }
    )
    err = g["nodes"][-1]
    assert err["id"] == "error" and "stopped mid-stream" in err["label"] and "par" in err["text"]


def test_optional_panels_are_off_without_their_rows_and_show_refits(log) -> None:
    from thrifty.store.artefacts import record

    store, db = log
    w = params.window_from({"range": "24h"}, now=NOW)
    assert audit_summary(db, w, scope_key=None)["enabled"] is False
    assert refit_history(db, "p1")["rows"] == []  # migration 0007_artefact_history: the table is there, empty
    store.run_in_transaction(record, "p1", "refused", {"rule": "held-out gain below 0.01"}, created=NOW - 60)
    store.run_in_transaction(record, "p1", "serving", {"rule": "ok"}, path="/a/v2", created=NOW)
    store.run_in_transaction(record, "p2", "serving", {"rule": "ok"}, path="/b/v1", created=NOW)
    refits = refit_history(db, "p1")
    assert refits["enabled"] and [(r["version"], r["status"]) for r in refits["rows"]] == [(2, "serving"), (1, "refused")]
    lo, hi = wilson_interval(45, 50)
    assert lo < 0.9 < hi and wilson_interval(0, 0) is None


def test_reader_opens_a_path_with_uri_characters_read_only(tmp_path: Path) -> None:
    import sqlite3

    store = LogStore(tmp_path / "a b#c?d%e" / "logs.sqlite3")
    _fill(store, 3)
    db = queries.Reader(store)
    assert db.rows("SELECT COUNT(*) AS n FROM requests")[0]["n"] == 3
    with pytest.raises(sqlite3.OperationalError):  # the dashboard cannot write through its reader
        db.rows("DELETE FROM requests")
    db.close()
    store.close()
