"""A log store filled with audited requests for the audit report and CLI tests (made-up rows)."""

from __future__ import annotations

import random

from thrifty.store import audits as db
from thrifty.store.logs import LogStore, RequestRecord, StepRecord

TIERS = ("small", "big")


def fill_audits(store: LogStore, n: int, seed: int = 0) -> None:
    """n requests of profile p (and 3 of another profile q), each audited (a few left in other states)."""
    rnd = random.Random(seed)
    for i in range(n):
        rid = f"req_{i:04d}"
        served = "small" if rnd.random() < 0.7 else "big"
        small_cost, big_cost = 0.001 * rnd.uniform(0.5, 1.5), 0.01 * rnd.uniform(0.5, 1.5)
        steps = (StepRecord(0, "small", "accepted" if served == "small" else "escalated", answer="up", cost_usd=small_cost),)
        if served == "big":
            steps += (StepRecord(1, "big", "accepted", answer="down", cost_usd=big_cost),)
        cost = sum(s.cost_usd for s in steps)
        profile = "p" if i % 10 else "q"
        rec = RequestRecord(
            id=rid,
            created=1000.0 + i,
            model_requested=f"thrifty/{profile}",
            request={},
            status=200,
            profile=profile,
            prompt=f"headline {i}",
            final_model=served,
            tiers_tried=tuple(s.model for s in steps),
            answer="x",
            cost_usd=cost,
            steps=steps,
        )
        pending = db.PendingAudit(
            rid,
            profile,
            rec.created,
            {"messages": [{"role": "user", "content": "x"}], "params": {}},
            TIERS,
            "big",
            "match:agree",
            None,
            "match-agree-v1",
            "all",
            served,
            cost,
        )
        store.record(rec, also=lambda c, p=pending: db.insert_pending_in(c, p))
        state = "done" if i % 17 else rnd.choice(["pending", "error", "skipped"])
        if state == "pending":
            continue
        store.run_in_transaction(db.start_in, rid, rec.created + 1, owner="test", attempts=0)
        if state == "error":
            store.run_in_transaction(db.fail_in, rid, "judge down", judge_cost_usd=0.0005, now=rec.created + 2)
            continue
        if state == "skipped":
            store.run_in_transaction(db.skip_in, rid, "audit budget exhausted", now=rec.created + 2)
            continue
        good = rnd.random() < 0.8
        rows = [
            {
                "model": "small",
                "tier": 0,
                "answer": "up",
                "cost_usd": small_cost,
                "reused": True,
                "quality": float(good),
                "at_least_as_good": good,
                "verdict": "up",
            },
            {
                "model": "big",
                "tier": 1,
                "answer": "up" if good else "down",
                "cost_usd": big_cost,
                "reused": served == "big",
                "quality": 1.0,
                "at_least_as_good": True,
                "verdict": "reference",
            },
        ]
        if served == "small":  # the audit paid for the reference
            store.run_in_transaction(db.save_answer_in, rid, rows[1], audit_cost_usd=big_cost)
        store.run_in_transaction(db.finish_in, rid, rows, judge_cost_usd=0.0, now=rec.created + 2)
