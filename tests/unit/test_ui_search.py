"""Prompt search on SQLite: the FTS5 trigram index gives exactly the rows a scan would (a recount from
the rows), stays in step with inserts, updates and deletes, and is backfilled for rows logged before
its migration; budget refusals in the store; the shots node of the request graph."""

from __future__ import annotations

import json
import random
import sqlite3
import time
from pathlib import Path

import pytest

from thrifty.store import LogStore, RequestRecord, StepRecord, search
from thrifty.store.refusals import record_refusal, refusal_totals, refusals_by_key
from thrifty.ui import queries, request_list
from thrifty.ui.graph import request_graph

WORDS = ["Tides", "moon", "gravity", "ocean", "ticket", "42", "100%", "snake_case", "back\\slash", "ÉCOLE", "école", "a", "zz"]


def _prompt(rng: random.Random, i: int) -> str | None:
    if i % 41 == 0:
        return None
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6))) + f" #{i}"


def _fill(store: LogStore, n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    for i in range(n):
        store.record(
            RequestRecord(
                id=f"r{i:05d}",
                created=1_000_000.0 + i * 3.0 + (0.5 if i % 3 else 0.0),
                model_requested="m",
                request={"messages": []},
                status=200 if i % 9 else 502,
                key_name=rng.choice(["alice", "bob"]),
                profile=rng.choice(["p1", None]),
                prompt=_prompt(rng, i),
            )
        )


def _ascii_lower(text: str) -> str:
    """SQLite's LOWER: ASCII letters only (what the search promises on SQLite)."""
    return "".join(c.lower() if c.isascii() else c for c in text)


def _recount(db: queries.Reader, text: str, **where: str) -> list[str]:
    rows = db.rows("SELECT id, created, prompt, key_name FROM requests ORDER BY created DESC, id DESC")
    needle = text.lower()  # the pattern is lower-cased in Python; SQLite's LIKE then folds ASCII letters only
    return [
        r["id"]
        for r in rows
        if r["prompt"] is not None and needle in _ascii_lower(r["prompt"]) and all(r[k] == v for k, v in where.items())
    ]


def _search(db: queries.Reader, text: str, limit: int = 7, **f: str) -> list[str]:
    """Every page of the request list for ``text`` (keyset paging), concatenated."""
    out: list[str] = []
    before = None
    while True:
        rows, more = queries.list_requests(db, queries.RequestFilter(text=text, **f), scope_key=None, limit=limit, before=before)
        out += [r["id"] for r in rows]
        if not more:
            return out
        before = (rows[-1]["created"], rows[-1]["id"])


QUERIES = ["tides", "TIDES", "moon gravity", "100%", "%", "_", "snake_case", "back\\slash", "école", "ÉCOLE", "42 #1", "a", "zz", "nothing"]


@pytest.mark.parametrize("rare", [2_000, 1])  # 1: every trigram counts as common (the capped-count path)
def test_search_equals_a_recount_from_the_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rare: int) -> None:
    monkeypatch.setattr(request_list, "RARE", rare)
    monkeypatch.setattr(request_list, "FTS_CAP", 2_000 if rare > 1 else 300)
    store = LogStore(tmp_path / "logs.sqlite3")
    try:
        _fill(store, 600)  # written on this thread: not indexed yet
        assert store.index_search(400) == 400  # the index reaches the 400th row; 200 rows after it are read directly
        db = queries.Reader(store)
        assert db.search_mode() == "fts5"
        used_index = 0
        for text in QUERIES:
            assert _search(db, text) == _recount(db, text), text
            used_index += request_list.fts_narrowing(db, text) is not None
        assert (5 if rare > 1 else 1) <= used_index < len(QUERIES)  # both ran: index-narrowed (+ the tail) and newest-first
        assert _search(db, "moon", key="alice") == _recount(db, "moon", key_name="alice")
    finally:
        store.close()


def test_the_writer_thread_indexes_new_rows_in_batches(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.sqlite3")
    try:
        for i in range(50):
            store.submit_record(RequestRecord(id=f"w{i}", created=float(i), model_requested="m", request={}, status=200, prompt=f"p {i}"))
        store.submit_in_transaction(lambda c: None).result(10)
        deadline = time.monotonic() + 10
        while store.read(search.indexed_until) < 50:  # within about a second of the rows' commit
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert store.read(lambda c: c.execute("SELECT rowid FROM requests_fts WHERE requests_fts MATCH '\"p 4\"'").fetchall())
    finally:
        store.close()


def test_index_follows_updates_and_deletes(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.sqlite3")
    try:
        _fill(store, 120)
        store.index_search(100)  # rows 101-120 are not indexed yet: their updates and deletes must not touch the index
        db = queries.Reader(store)
        store.run_in_transaction(lambda c: c.execute("UPDATE requests SET prompt = 'a quokka smiles' WHERE id IN ('r00005', 'r00110')"))
        store.run_in_transaction(lambda c: c.execute("DELETE FROM requests WHERE prompt LIKE '%tides%' AND id < 'r00060'"))
        assert _search(db, "quokka") == ["r00110", "r00005"]
        assert _search(db, "tides") == _recount(db, "tides")
        store.index_search()
        assert _search(db, "quokka") == ["r00110", "r00005"] and _search(db, "tides") == _recount(db, "tides")
        # FTS5's own check of an external-content index against its table
        store.run_in_transaction(lambda c: c.execute("INSERT INTO requests_fts(requests_fts, rank) VALUES ('integrity-check', 1)"))
    finally:
        store.close()


def test_migration_backfills_rows_logged_before_it(tmp_path: Path) -> None:
    path = tmp_path / "logs.sqlite3"
    store = LogStore(path)
    _fill(store, 200)
    store.close()
    conn = sqlite3.connect(path)  # back to a store from before the search migration, with its rows
    for trigger in ("requests_fts_insert", "requests_fts_delete", "requests_fts_update"):
        conn.execute(f"DROP TRIGGER {trigger}")
    conn.execute("DROP TABLE requests_fts")
    conn.execute("DROP TABLE requests_fts_state")
    conn.execute("DELETE FROM migrations WHERE name = '0012_dash_prompt_search'")
    conn.commit()
    conn.close()
    store = LogStore(path)  # applies 0012_dash_prompt_search: the index is built from the 200 rows already there
    try:
        db = queries.Reader(store)
        assert db.search_mode() == "fts5"
        narrowing = request_list.fts_narrowing(db, "gravity")
        assert narrowing is not None and narrowing[1] == 200  # every row already logged is in the index
        assert _search(db, "gravity") == _recount(db, "gravity") != []
    finally:
        store.close()


def test_without_fts5_search_scans_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from thrifty.store import search

    monkeypatch.setattr(search, "_SQLITE_SCHEMA", ("CREATE VIRTUAL TABLE requests_fts USING no_such_module(prompt)",))
    store = LogStore(tmp_path / "logs.sqlite3")
    try:
        assert "prompt search is not indexed" in caplog.text
        _fill(store, 80)
        db = queries.Reader(store)
        assert db.search_mode() == "scan" and _search(db, "ocean") == _recount(db, "ocean")
    finally:
        store.close()


def test_refusals_are_counted_per_key_profile_and_limit(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.sqlite3")
    try:
        for at, key, profile, scope in [
            (7_200.5, "carol", "fast", "key"),
            (7_300.0, "carol", "fast", "key"),
            (7_300.0, "carol", None, "key"),
            (10_900.0, "dan", "fast", "profile"),
            (90_000.0, None, "fast", "profile"),
        ]:
            store.run_in_transaction(record_refusal, key=key, profile=profile, scope=scope, at=at)
        assert store.read(refusals_by_key) == {
            "carol": {"total": 3, "key": 3, "profile": 0},
            "dan": {"total": 1, "key": 0, "profile": 1},
            "": {"total": 1, "key": 0, "profile": 1},
        }
        assert store.read(refusals_by_key, 7_500.0, 10_800.0) == {"carol": {"total": 3, "key": 3, "profile": 0}}  # hours overlapping
        assert store.read(refusal_totals) == [
            ("", "fast", "profile", 1),
            ("carol", "", "key", 1),
            ("carol", "fast", "key", 2),
            ("dan", "fast", "profile", 1),
        ]
    finally:
        store.close()


def test_graph_shows_the_shots_logged_not_the_settings() -> None:
    ids = ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    detail = {
        "status": 200,
        "model_requested": "thrifty/p",
        "prompt": "gold falls",
        "answer": "down",
        "final_model": "small",
        "steps": [{"idx": 0, "tier": 0, "model": "small", "decision": "accepted", "answer": "down", "shots": json.dumps(ids)}],
    }
    g = request_graph(detail, profile={"prompt_adaptation": {"k": 4, "layout": "messages"}}, shot_texts={ids[0]: ("gold rises", "up")})
    shots = next(n for n in g["nodes"] if n["id"] == "shots")
    assert shots["label"] == "prompt adaptation: 2 shots" and shots["meta"]["shot_ids"] == ids
    assert "Q: gold rises\nA: up" in shots["text"] and "bbbbbbbbbbbb] (not in the examples file" in shots["text"]
    assert next(n for n in g["nodes"] if n["id"] == "tier0")["meta"]["shots"] == 2
    assert [(e["source"], e["target"]) for e in g["edges"]][:2] == [("request", "shots"), ("shots", "tier0")]
    detail["steps"][0]["shots"] = None  # not adapted (or logged before 0012_dash_shots): the settings, saying so
    shots = next(n for n in request_graph(detail, profile={"prompt_adaptation": {"k": 4, "layout": "text"}})["nodes"] if n["id"] == "shots")
    assert shots["label"] == "prompt adaptation: ≤4 shots (none logged)"


def test_steps_record_their_shots(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.sqlite3")
    try:
        store.record(
            RequestRecord(
                id="r1",
                created=1.0,
                model_requested="m",
                request={},
                status=200,
                steps=(StepRecord(0, "a", "escalated", shots=("x1", "x2")), StepRecord(1, "b", "accepted")),
            )
        )
        assert [s["shots"] for s in store.get("r1")["steps"]] == ['["x1", "x2"]', None]
    finally:
        store.close()
