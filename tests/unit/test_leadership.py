"""Two gateway learners on one real SQLite store, their lease steps driven by hand
(thrifty.gateway.leadership): the leader learns from every process's audits read back from the
store, a new leader resumes the refit count from the lease row, and a leader that lost the lease
mid-way records nothing. The real-server version: ``tests/e2e/test_learner_leader_pg.py``."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("sklearn")

from thrifty.calibration.audit_types import AuditOutcome  # noqa: E402
from thrifty.calibration.loop import LearningLoop, LoopConfig  # noqa: E402
from thrifty.calibration.simulate import SimConfig, cold_policy, simulate_seed  # noqa: E402
from thrifty.calibration.synthetic import binary_table  # noqa: E402
from thrifty.config.settings import RefitConfig, ServerSettings  # noqa: E402
from thrifty.gateway.leadership import LearnerLease, outcome_of_row  # noqa: E402
from thrifty.gateway.learning import ProfileLearner  # noqa: E402
from thrifty.store import LogStore, artefacts  # noqa: E402
from thrifty.store import audits as db  # noqa: E402
from thrifty.store.audit_feed import done_audits  # noqa: E402
from thrifty.store.leases import acquire_in, read_lease  # noqa: E402
from thrifty.store.logs import RequestRecord  # noqa: E402

EVERY = 20
A, B = "host-a|101|1", "host-b|202|2"  # other hosts' processes: only the lease's expiry frees them


@pytest.fixture(scope="module")
def fed() -> list[tuple[AuditOutcome, str | None]]:
    table = binary_table(300, seed=5)
    cfg = SimConfig(table.models, "large", rate=0.5, loop=LoopConfig(every=EVERY, target=0.9), seeds=(0,))
    run = simulate_seed(table, cfg, 0)
    assert len(run.fed) >= 60
    return [(replace(o, profile="p"), p) for o, p in run.fed]


def _store_audit(store: LogStore, outcome: AuditOutcome, prompt: str | None, owner: str, tiers: tuple[str, ...]) -> None:
    store.record(RequestRecord(outcome.request_id, outcome.created, "thrifty/p", {}, 200, profile="p", prompt=prompt))
    pending = db.PendingAudit(
        outcome.request_id, "p", outcome.created, {}, tiers, outcome.reference, "match:agree", None, "1", "all",
        outcome.served_model, outcome.served_cost_usd,
    )  # fmt: skip
    rows = [
        {"model": m, "tier": tiers.index(m), "answer": v.output, "cost_usd": v.cost_usd, "reused": v.reused, "quality": v.quality,
         "at_least_as_good": v.at_least_as_good}
        for m, v in outcome.answers.items()
    ]  # fmt: skip

    def write(conn: Any) -> None:
        db.insert_pending_in(conn, pending)
        conn.execute("UPDATE audits SET owner = ? WHERE request_id = ?", (owner, outcome.request_id))
        db.finish_in(conn, outcome.request_id, rows, judge_cost_usd=0.0, now=time.time())

    store.run_in_transaction(write)


def _learner(store: LogStore, tmp_path: Path, holder: str, tiers: tuple[str, ...], loop_of: Any) -> ProfileLearner:
    rt = SimpleNamespace(store=store, settings=SimpleNamespace(server=ServerSettings(data_dir=tmp_path)), artefact_versions={})
    learner = ProfileLearner(rt, SimpleNamespace(name="p", refit=RefitConfig()), "thrifty/p", loop_of(), asyncio.new_event_loop())
    learner.lease = LearnerLease(learner, holder, lease_s=30.0)
    return learner


def test_one_leader_learns_from_every_process_and_a_new_leader_resumes_the_count(fed, tmp_path: Path) -> None:
    tiers = tuple(fed[0][0].answers)
    sim = SimConfig(tiers, "large", rate=0.5, loop=LoopConfig(every=EVERY, target=0.9), seeds=(0,))
    store = LogStore(tmp_path / "logs.sqlite3")
    a = _learner(store, tmp_path, A, tiers, lambda: LearningLoop("p", tiers, sim.loop, cold_policy(sim)))
    b = _learner(store, tmp_path, B, tiers, lambda: LearningLoop("p", tiers, sim.loop, cold_policy(sim)))

    def history() -> list[Any]:
        return list(reversed(store.run_in_transaction(artefacts.history, "p")))

    row = a.lease._acquire()
    assert row.holder == A and b.lease._acquire().holder == A  # B follows

    for o, p in fed[:12]:
        _store_audit(store, o, p, A, tiers)
    for o, p in fed[12:25]:
        _store_audit(store, o, p, B, tiers)  # 25 done: 12 by A, 13 by B — neither reaches `every` alone
    a.lease._take_over(row)  # A leads: loads all 25 and refits once (25 ≥ every)
    assert len(a.loop.audits) == 25 and len(history()) == 1 and history()[0].evidence["audits"] == 25
    assert store.read(read_lease, "p").refit_at == 25  # the cursor, written in the fenced transaction
    assert not a.lease.accept(fed[3][0])  # an own audit already loaded is not fed twice
    assert not b.lease.accept(fed[3][0])  # a follower learns nothing

    for o, p in fed[25:35]:
        _store_audit(store, o, p, B, tiers)
    a.lease._feed()  # B's 10 audits, read back from the store
    assert len(a.loop.audits) == 35 and a.loop.since_refit == 10 and len(history()) == 1
    a.lease._feed()  # nothing new: nothing fed twice
    assert len(a.loop.audits) == 35

    # A stops renewing; after its lease lapses B takes it (term 2) and resumes the count from refit_at = 25
    row_b = store.run_in_transaction(acquire_in, "p", B, lease_s=30.0, now=time.time() + 31)
    assert (row_b.holder, row_b.term) == (B, 2)
    b.lease._take_over(row_b)
    assert len(b.loop.audits) == 35 and b.loop.since_refit == 10

    for o, p in fed[35:45]:
        _store_audit(store, o, p, "host-c|303|3", tiers)  # a third process's audits
    before = a.loop.serving
    a.lease._feed()  # A still believes it leads in term 1: 20 new audits, it refits — but the fence stops the write
    assert a.loop.since_refit == 0 and a.loop.serving is before and len(history()) == 1
    b.lease._feed()
    assert len(history()) == 2 and history()[1].evidence["audits"] == 45  # B's refit, at the next `every` of the sum
    lease = store.read(read_lease, "p")
    assert (lease.holder, lease.term, lease.refit_at) == (B, 2, 45)
    store.run_in_transaction(lambda c: c.execute("UPDATE audits SET sample_prob = 0.25 WHERE request_id = ?", (fed[0][0].request_id,)))
    first = [r for r in done_audits(store, "p") if r["request_id"] == fed[0][0].request_id][0]
    outcome = outcome_of_row("p", first)
    assert outcome.answers == fed[0][0].answers and outcome.served_model == fed[0][0].served_model and outcome.sample_prob == 0.25
    for x in (a, b):
        x.close()
        x.event_loop.close()
    store.close()


def test_followers_serve_the_leaders_guardrail_offset_on_the_same_version(fed, tmp_path: Path) -> None:
    tiers = tuple(fed[0][0].answers)
    sim = SimConfig(tiers, "large", rate=0.5, loop=LoopConfig(every=1000, target=0.9), seeds=(0,))
    store = LogStore(tmp_path / "logs.sqlite3")
    a = _learner(store, tmp_path, A, tiers, lambda: LearningLoop("p", tiers, sim.loop, cold_policy(sim)))
    b = _learner(store, tmp_path, B, tiers, lambda: LearningLoop("p", tiers, sim.loop, cold_policy(sim)))
    a.lease._take_over(a.lease._acquire())
    row = b.lease._acquire()
    assert row.holder == A
    a.loop.guardrail.offset = a.loop.guardrail.floor = 0.1  # as after an escalation
    a.lease.save_guard()
    row = b.lease._acquire()
    assert (row.guard_version, row.guard_offset, row.guard_floor) == (0, 0.1, 0.1)
    b.lease._follow_guard(row)
    assert b.loop.guardrail.offset == 0.1 and b.loop.policy().thresholds == a.loop.policy().thresholds
    b.store_version = 3  # B already serves a newer version than the one the offset was measured on: not applied
    b.loop.guardrail.reset()
    b.lease._follow_guard(row)
    assert b.loop.guardrail.offset == 0.0
    for x in (a, b):
        x.close()
        x.event_loop.close()
    store.close()
