"""The dashboard's audit panel on real ``0006_audits`` rows, written by the audit loop's own store
functions: its figures are those of ``thrifty audit report`` over the same period and scope."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from test_ui_queries import NOW, _fill  # the shared synthetic log

from thrifty.calibration.audit_report import audit_report, wilson
from thrifty.store import LogStore
from thrifty.store.audits import PendingAudit, fail_in, finish_in, insert_pending_in, skip_in
from thrifty.ui import params, queries
from thrifty.ui.optional_tables import audit_for_request, audit_summary


def _audit(store: LogStore, n: int, seed: int = 7) -> dict[str, tuple[str, bool | None]]:
    """Audit ``n`` answered requests of profile p1 and p2: done (with verdicts), error or skipped;
    returns request id → (status, served answer at least as good)."""
    rng = random.Random(seed)
    rows = store.iter_rows(
        "SELECT id, profile, created, final_model, cost_usd FROM requests WHERE status < 400 AND profile IS NOT NULL ORDER BY id LIMIT ?",
        (n,),
    )
    out: dict[str, tuple[str, bool | None]] = {}
    for i, r in enumerate(rows):
        p = PendingAudit(
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
        )
        store.run_in_transaction(insert_pending_in, p)
        kind = "done" if i % 7 else ("error" if i % 2 else "skipped")
        if kind == "done":
            good = rng.random() < 0.8
            answers = [
                {
                    "model": "small",
                    "tier": 0,
                    "answer": "a",
                    "cost_usd": 0.001,
                    "reused": r["final_model"] == "small",
                    "quality": 1.0 if good else 0.0,
                    "at_least_as_good": good,
                },
                {
                    "model": "big",
                    "tier": 1,
                    "answer": "b",
                    "cost_usd": 0.01,
                    "reused": r["final_model"] == "big",
                    "quality": 1.0,
                    "at_least_as_good": True,
                },
            ]
            store.run_in_transaction(finish_in, r["id"], answers, judge_cost_usd=0.0005, now=NOW)
            out[r["id"]] = ("done", good if r["final_model"] == "small" else True)
        elif kind == "error":
            store.run_in_transaction(fail_in, r["id"], "judge timed out", judge_cost_usd=0.0002, now=NOW)
            out[r["id"]] = ("error", None)
        else:
            store.run_in_transaction(skip_in, r["id"], "audit budget spent", now=NOW)
            out[r["id"]] = ("skipped", None)
    return out


@pytest.fixture()
def audited(tmp_path: Path):
    store = LogStore(tmp_path / "logs.sqlite3")
    _fill(store, 300)
    truth = _audit(store, 90)
    yield store, queries.Reader(store), truth
    store.close()


def test_the_panel_shows_the_audit_reports_figures(audited) -> None:
    store, db, truth = audited
    w = params.window_from({"range": "7d"}, now=NOW)  # every request of the log arrived in the last 3 days
    report = audit_report(store, None, since=w.start)["profiles"]
    panel = audit_summary(db, w, scope_key=None)
    assert panel["enabled"] is True and set(panel["profiles"]) == set(report) == {"p1", "p2"}
    for name, rep in report.items():
        mine = panel["profiles"][name]
        assert (mine["audited"], mine["judged"], mine["at_least_as_good"]) == (rep["audited"], rep["served"]["n"], rep["served"]["k"])
        assert mine["ci95"] == [rep["served"]["low"], rep["served"]["high"]] and mine["share"] == rep["served"]["share"]
        assert math.isclose(mine["audit_cost_usd"], rep["audit_cost_usd"]) and mine["audit_spend_share"] == pytest.approx(
            rep["audit_spend_share"]
        )
        assert mine["saving"] == pytest.approx(rep["saving"]["saving"]) and mine["status"] == rep["status"]
    done = [good for status, good in truth.values() if status == "done"]  # the recount from what was written
    assert (panel["audited"], panel["judged"], panel["at_least_as_good"]) == (len(done), len(done), sum(done))
    pooled = wilson(sum(done), len(done))
    assert panel["ci95"] == [pooled["low"], pooled["high"]] and 0 < panel["share"] < 1
    spent = sum(0.0005 for s, _ in truth.values() if s == "done") + sum(0.0002 for s, _ in truth.values() if s == "error")
    assert math.isclose(panel["audit_cost_usd"], spent)


def test_the_panel_follows_the_window_profile_and_key_scope(audited) -> None:
    store, db, truth = audited
    w = params.window_from({"range": "7d"}, now=NOW)
    only_p1 = audit_summary(db, w, scope_key=None, profile="p1")
    assert (
        set(only_p1["profiles"]) == {"p1"} and only_p1["audited"] == audit_report(store, "p1", since=w.start)["profiles"]["p1"]["audited"]
    )
    alice = {r["id"] for r in store.iter_rows("SELECT id FROM requests WHERE key_name = 'alice'")}
    scoped = audit_summary(db, w, scope_key="alice")
    assert scoped["audited"] == sum(1 for rid, (s, _) in truth.items() if s == "done" and rid in alice) > 0
    early = params.window_from({"start": str(NOW - 30 * 86_400), "end": str(NOW - 20 * 86_400)}, now=NOW)
    assert audit_summary(db, early, scope_key=None) == {"enabled": False, "reason": "audits off (no audited request in this period)"}


def test_a_request_page_gets_its_audit_and_answers(audited) -> None:
    _, db, truth = audited
    rid = next(r for r, (s, _) in truth.items() if s == "done")
    audit, answers = audit_for_request(db, rid)
    assert audit is not None and audit["status"] == "done" and "request_json" not in audit
    assert [(a["model"], a["tier"]) for a in answers] == [("small", 0), ("big", 1)]
