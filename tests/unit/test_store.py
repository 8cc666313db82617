"""Log store: named migrations once each, all-or-nothing writes, export as a routing table."""

from __future__ import annotations

import gzip
import json
import math
import sqlite3
from pathlib import Path

import pytest

from thrifty.data.table_io import load_table
from thrifty.errors import DataError
from thrifty.store import LogStore, RequestRecord, StepRecord, connect
from thrifty.store.db import MIGRATIONS
from thrifty.store.export import export_table


def rec(
    rid: str, *, created: float = 1.0, steps: tuple[StepRecord, ...] | None = None, status: int = 200, prompt: str = "What is 2+2?"
) -> RequestRecord:
    steps = (
        steps
        if steps is not None
        else (
            StepRecord(
                0,
                "small",
                "escalated",
                answer="5",
                score=0.2,
                threshold=0.5,
                cost_usd=0.001,
                latency_s=0.1,
                input_tokens=10,
                output_tokens=1,
            ),
            StepRecord(1, "big", "accepted", answer="4", score=None, cost_usd=0.01, latency_s=0.5, input_tokens=10, output_tokens=1),
        )
    )
    return RequestRecord(
        id=rid,
        created=created,
        model_requested="thrifty/default",
        request={"model": "thrifty/default", "messages": [{"role": "user", "content": prompt}]},
        status=status,
        key_name="alice",
        profile="default",
        prompt=prompt,
        final_model=steps[-1].model if steps else None,
        tiers_tried=tuple(s.model for s in steps),
        answer=steps[-1].answer if steps else None,
        cost_usd=sum(s.cost_usd for s in steps),
        latency_s=0.6,
        steps=steps,
    )


def test_migrations_are_named_applied_once_and_recorded(tmp_path: Path) -> None:
    db = tmp_path / "logs.sqlite3"
    conn = connect(db)
    names = [r[0] for r in conn.execute("SELECT name FROM migrations ORDER BY name")]
    assert names == [n for n, _ in MIGRATIONS]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    conn = connect(db)  # reopening applies nothing again (would fail: CREATE TABLE requests exists)
    assert conn.execute("SELECT COUNT(*) FROM migrations").fetchone()[0] == len(MIGRATIONS)


def test_record_roundtrip_and_listing(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "l.db")
    store.record(rec("r1", created=1.0))
    store.record(rec("r2", created=2.0))
    assert store.count() == 2
    assert [r["id"] for r in store.list()] == ["r2", "r1"]
    got = store.get("r1")
    assert got is not None
    assert got["tiers_tried"] == ["small", "big"] and got["final_model"] == "big"
    assert got["request"]["messages"][0]["content"] == "What is 2+2?"
    assert [s["decision"] for s in got["steps"]] == ["escalated", "accepted"]
    assert got["steps"][0]["score"] == 0.2 and got["key_name"] == "alice"
    assert store.get("missing") is None


def test_a_failed_write_leaves_nothing_half_written(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "l.db")
    store.record(rec("r1"))
    with pytest.raises(sqlite3.IntegrityError):  # same id again: the request insert fails
        store.record(rec("r1"))

    def boom(conn: sqlite3.Connection) -> None:
        raise RuntimeError("settle failed")

    with pytest.raises(RuntimeError):
        store.record(rec("r3"), also=boom)
    assert store.get("r3") is None
    assert store.iter_rows("SELECT COUNT(*) FROM steps WHERE request_id = 'r3'")[0][0] == 0
    assert store.count() == 1
    with pytest.raises(ValueError):
        store.record(rec("r4", steps=(StepRecord(0, "small", "maybe"),)))
    assert store.count() == 1


def test_submitted_writes_run_in_order_on_one_thread_and_close_finishes_them(tmp_path: Path) -> None:
    import threading
    import time

    store = LogStore(tmp_path / "l.db")
    threads: set[int] = set()

    def slow_record(r: RequestRecord) -> None:  # a slow disk
        threads.add(threading.get_ident())
        time.sleep(0.02)
        store.record(r)

    futures = [store.submit(slow_record, rec(f"r{i}", created=float(i))) for i in range(5)]
    assert not all(f.done() for f in futures)  # submit returned before the writes ran
    store.close()  # drains the queue first
    assert all(f.done() and f.exception() is None for f in futures)
    assert len(threads) == 1 and threading.get_ident() not in threads
    reopened = LogStore(tmp_path / "l.db")
    assert [r["id"] for r in reopened.list()] == ["r4", "r3", "r2", "r1", "r0"]
    with pytest.raises(RuntimeError, match="closed"):
        store.submit(slow_record, rec("late"))


def test_group_commit_runs_queued_jobs_in_one_transaction_and_rolls_back_a_failing_one_alone(tmp_path: Path) -> None:
    import threading

    store = LogStore(tmp_path / "l.db")
    gate = threading.Event()
    blocker = store.submit(gate.wait, 5)  # holds the writer while the next jobs queue up
    commits: list[int] = []
    store.connection.set_trace_callback(lambda sql: sql.strip().upper() == "COMMIT" and commits.append(1))

    def boom(conn, *_):
        conn.execute("INSERT INTO spend (scope, name, spent_usd) VALUES ('key', 'x', 1)")
        raise RuntimeError("this job fails")

    futures = [
        store.submit_record(rec("a")),
        store.submit_in_transaction(boom),
        store.submit_record(rec("b")),
        store.submit_in_transaction(lambda conn: conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]),
    ]
    assert not any(f.done() for f in futures)
    gate.set()
    assert blocker.result(5) is True
    assert futures[0].result(5) is None and futures[2].result(5) is None
    with pytest.raises(RuntimeError, match="this job fails"):
        futures[1].result(5)
    assert futures[3].result(5) == 2  # a job sees the writes of the jobs queued before it
    assert len(commits) == 1  # the four jobs: one transaction
    store.close()
    reopened = LogStore(tmp_path / "l.db")
    assert {r["id"] for r in reopened.list()} == {"a", "b"} and len(reopened.get("a")["steps"]) == 2
    assert reopened.iter_rows("SELECT * FROM spend WHERE name = 'x'") == []  # the failed job left nothing


def test_a_cancelled_queued_job_never_runs(tmp_path: Path) -> None:
    import threading

    store = LogStore(tmp_path / "l.db")
    gate = threading.Event()
    store.submit(gate.wait, 5)
    doomed = store.submit_record(rec("never"))
    assert doomed.cancel()
    kept = store.submit_record(rec("kept"))
    gate.set()
    kept.result(5)
    store.close()
    assert [r["id"] for r in LogStore(tmp_path / "l.db").list()] == ["kept"]


def test_labels_are_validated(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "l.db")
    store.record(rec("r1"))
    assert store.set_label("r1", 1.0) and store.set_label("r1", 0.0, idx=0)
    assert not store.set_label("nope", 1.0)
    with pytest.raises(ValueError):
        store.set_label("r1", 2.0)


def test_export_is_a_routing_table_eval_can_load(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "l.db")
    store.record(rec("r1", created=1.0, prompt="What is 2+2?"))
    store.record(
        rec(
            "r2",
            created=2.0,
            prompt="Capital of France?",
            steps=(
                StepRecord(
                    0, "small", "accepted", answer="Paris", score=0.9, threshold=0.5, cost_usd=0.001, input_tokens=5, output_tokens=1
                ),
            ),
        )
    )
    store.record(rec("r3", created=3.0, status=502, steps=(StepRecord(0, "small", "failed", error="boom"),)))
    store.set_label("r1", 1.0)  # a label for the answer that was returned (tier 'big')
    summary = export_table(store, tmp_path / "out")
    assert summary["prompts"] == 2 and summary["outcomes"] == 3
    assert summary["labelled"] == 1 and summary["scored"] == 2 and summary["pending"] == 0
    table = load_table(tmp_path / "out")
    assert table.prompt_ids == ("r1", "r2") and table.models == ("small", "big")
    assert table.prompts[1] == "Capital of France?"
    assert table.quality[0, 0] == pytest.approx(0.2) and table.quality[0, 1] == 1.0
    assert math.isnan(table.quality[1, 1])  # the cascade stopped at 'small': 'big' not routable there
    assert table.cost[0, 1] == pytest.approx(0.01) and table.answers[1, 0] == "Paris"
    with gzip.open(tmp_path / "out" / "outcomes.jsonl.gz", "rt") as fh:
        sources = {(r["prompt_id"], r["model"]): r["quality_source"] for r in map(json.loads, fh)}
    assert sources[("r1", "big")] == "label" and sources[("r1", "small")] == "score"


def test_export_label_mode_leaves_unlabelled_answers_pending(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "l.db")
    store.record(rec("r1"))
    with pytest.raises(DataError, match="pending"):
        export_table(store, tmp_path / "out", quality="label")
    with gzip.open(tmp_path / "out" / "pending.jsonl.gz", "rt") as fh:
        pending = [json.loads(line) for line in fh]
    assert {p["model"] for p in pending} == {"small", "big"}
    store.set_label("r1", 0.5, idx=0)
    summary = export_table(store, tmp_path / "out2", quality="label")
    assert summary["outcomes"] == 1 and summary["pending"] == 1
    assert load_table(tmp_path / "out2").quality[0, 0] == 0.5
