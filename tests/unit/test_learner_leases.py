"""The learner lease (thrifty.store.leases) on a real SQLite store; the e2e test
``tests/e2e/test_learner_leader_pg.py`` runs it on PostgreSQL with two replicas and a ``kill -9``."""

from __future__ import annotations

import math
import random
import threading
from pathlib import Path

from thrifty.store import LogStore
from thrifty.store.leases import acquire_in, fence_in, read_lease, release_in

T0 = 1_800_000_000.0
LEASE_S = 30.0


def _acquire(store: LogStore, holder: str, now: float, **kw: object):  # type: ignore[no-untyped-def]
    return store.run_in_transaction(acquire_in, "qa", holder, lease_s=LEASE_S, now=now, **kw)


def test_the_first_caller_leads_and_the_others_follow(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "l.db")
    a = _acquire(store, "A", T0, refit_at=7)
    assert (a.holder, a.term, a.expires, a.refit_at) == ("A", 1, T0 + LEASE_S, 7)
    assert a.guard_floor == -math.inf and a.guard_offset == 0.0
    b = _acquire(store, "B", T0 + 1, refit_at=99)
    assert (b.holder, b.term, b.refit_at) == ("A", 1, 7)  # B sees A lead; its refit_at is for a new row only


def test_a_renewed_lease_holds_and_a_lapsed_one_is_taken_with_a_new_term(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "l.db")
    _acquire(store, "A", T0)
    for k in range(1, 6):  # A renews every lease/3: B never gets it
        assert _acquire(store, "A", T0 + 10 * k).expires == T0 + 10 * k + LEASE_S
        assert _acquire(store, "B", T0 + 10 * k + 5).holder == "A"
    # A stops renewing (kill -9): at T0 + 50 + 30 the lease lapses; just before, B still follows
    assert _acquire(store, "B", T0 + 50 + LEASE_S - 0.5).holder == "A"
    b = _acquire(store, "B", T0 + 50 + LEASE_S + 0.5)
    assert (b.holder, b.term) == ("B", 2)
    assert _acquire(store, "A", T0 + 81).holder == "B"  # A came back: it follows


def test_a_dead_holder_of_this_host_is_taken_over_at_once_and_a_release_frees_the_lease(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "l.db")
    _acquire(store, "A", T0)
    assert _acquire(store, "B", T0 + 1, dead_holder="C").holder == "A"  # naming someone else frees nothing
    assert _acquire(store, "B", T0 + 1, dead_holder="A").holder == "B"
    assert store.run_in_transaction(release_in, "qa", "B")
    c = _acquire(store, "C", T0 + 2)
    assert (c.holder, c.term) == ("C", 3)


def test_the_fence_records_cursor_and_guardrail_only_for_the_holder_in_its_term(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "l.db")
    _acquire(store, "A", T0)
    ok = store.run_in_transaction(fence_in, "qa", "A", 1, lease_s=LEASE_S, now=T0 + 5, refit_at=30, guard=(2, 0.1, 0.1))
    assert ok
    row = store.read(read_lease, "qa")
    assert (row.refit_at, row.guard_version, row.guard_offset, row.guard_floor, row.expires) == (30, 2, 0.1, 0.1, T0 + 5 + LEASE_S)
    _acquire(store, "B", T0 + 5 + LEASE_S + 1)  # A lapsed; B leads in term 2
    assert not store.run_in_transaction(fence_in, "qa", "A", 1, lease_s=LEASE_S, now=T0 + 40, refit_at=60)  # the old leader's refit
    assert not store.run_in_transaction(fence_in, "qa", "B", 1, lease_s=LEASE_S, now=T0 + 40)  # a stale term
    assert store.run_in_transaction(fence_in, "qa", "B", 2, lease_s=LEASE_S, now=T0 + 40, guard=(2, 0.0, -math.inf))
    row = store.read(read_lease, "qa")
    assert (row.holder, row.term, row.refit_at, row.guard_offset, row.guard_floor) == ("B", 2, 30, 0.0, -math.inf)


def test_random_schedules_never_have_two_holders_with_live_leases(tmp_path: Path) -> None:
    """Whoever the row names, no other caller ever believed it led with a lease still running."""
    store = LogStore(tmp_path / "l.db")
    rng = random.Random(5)
    now, believed = T0, {}  # holder → expiry of the lease it was last granted
    for _ in range(600):
        now += rng.uniform(0, 20)
        who = rng.choice("ABCD")
        row = _acquire(store, who, now)
        if row.holder == who:
            others = [h for h, exp in believed.items() if h != who and exp >= now]
            assert not others, (who, others, now)
            believed[who] = row.expires
    assert len({h for h in believed}) > 1  # leadership did change hands


def test_concurrent_callers_on_one_store_agree_on_one_leader(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "l.db")
    seen: dict[str, set[str]] = {}
    barrier = threading.Barrier(4)

    def run(who: str) -> None:
        barrier.wait()
        for k in range(25):
            row = _acquire(store, who, T0 + k)
            seen.setdefault(who, set()).add(row.holder)

    threads = [threading.Thread(target=run, args=(w,)) for w in "ABCD"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    holders = set().union(*seen.values())
    assert len(holders) == 1  # everyone renewed within the lease: the first one stayed the only leader
