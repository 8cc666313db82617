"""Two worker processes of one ``thrifty serve --workers N`` share the store's audits: an audit
another live process has started is not run again here, even when this process's sweep queued it
before that process started it (found by the combined live-loop test with two workers: both ran
it, both paid its tier calls and both learners counted it)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace

from audit_fixtures import fill_audits

from thrifty.config.settings import parse_settings
from thrifty.gateway.audits import Auditor
from thrifty.gateway.metrics import Metrics
from thrifty.serving.budget import _process_token
from thrifty.store import LogStore
from thrifty.store import audits as db


def _runtime(store: LogStore) -> SimpleNamespace:
    settings = parse_settings(
        {
            "providers": {
                "small": {"kind": "openai", "model": "s", "base_url": "http://127.0.0.1:9/v1", "prices": {"input": 1, "output": 1}},
                "big": {"kind": "openai", "model": "b", "base_url": "http://127.0.0.1:9/v1", "prices": {"input": 9, "output": 9}},
            },
            "profiles": {"p": {"tiers": ["small", "big"], "thresholds": [0.5], "audit": {"rate": 1.0, "judge": "match:agree"}}},
        }
    )
    return SimpleNamespace(store=store, settings=settings, metrics=Metrics(), providers={}, generation=1, inflight={})


def _pending(store: LogStore) -> str:
    rows = store.iter_rows("SELECT request_id FROM audits WHERE status = 'pending' AND profile = 'p' ORDER BY request_id")
    return str(rows[0][0])


def test_an_audit_started_by_another_live_process_is_not_run_again(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "l.db")
    fill_audits(store, 40)
    rid = _pending(store)
    other = _process_token(os.getppid())  # a live process of this host: the worker that started it
    assert store.run_in_transaction(db.start_in, rid, 1.0, owner=other, attempts=0) == 1
    outcomes: list = []
    auditor = Auditor(_runtime(store), [outcomes.append])
    asyncio.run(auditor._audit(rid))  # queued here by a sweep that ran before the other process started it
    row = db.load_audit(store, rid)
    assert (row["status"], row["attempts"], row["owner"]) == ("pending", 1, other) and outcomes == []


def test_an_audit_whose_process_died_is_run_again(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "l.db")
    fill_audits(store, 40)
    rid = _pending(store)
    gone = _process_token(os.getpid()).rsplit("|", 2)[0] + "|999999999|0"  # this host, no such process
    store.run_in_transaction(db.start_in, rid, 1.0, owner=gone, attempts=0)
    auditor = Auditor(_runtime(store), [])
    asyncio.run(auditor._audit(rid))  # the tiers are unreachable here: the run fails, recorded as a retryable error
    row = db.load_audit(store, rid)
    assert row["attempts"] == 2 and row["status"] == "error" and row["owner"] == auditor._owner
