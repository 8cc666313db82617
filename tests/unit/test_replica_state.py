"""What replicas share through the store (on SQLite here; the e2e tests run it on PostgreSQL):
budget holds as leases (renewed by their owner, lapsed when it stops) and artefact version rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from thrifty.errors import BudgetExceeded
from thrifty.serving.budget import BudgetLedger
from thrifty.store import LogStore
from thrifty.store.versions import artefact_digest, bump_in, publish_in, read_versions


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def test_a_hold_lapses_after_its_lease_unless_its_owner_renews_it(tmp_path: Path) -> None:
    store, clock = LogStore(tmp_path / "l.db"), Clock()
    live = BudgetLedger(store, {"alice": 1.0}, {}, lease_s=10.0, clock=clock)
    live.reserve(key="alice", profile=None, amount_usd=0.6)
    dead = BudgetLedger(store, {"alice": 1.0}, {}, lease_s=10.0, clock=clock)
    dead._owner = "elsewhere|1|1"  # another machine's replica: only its lease can free its hold
    dead.reserve(key="alice", profile=None, amount_usd=0.3)
    with pytest.raises(BudgetExceeded):
        live.reserve(key="alice", profile=None, amount_usd=0.2)
    for _ in range(3):  # the live replica renews every lease/3; the dead one never does
        clock.t += 4.0
        assert store.run_in_transaction(live.renew_in) == 1
    assert live.held("key", "alice") == pytest.approx(0.6)  # 12 s later: the renewed hold stays, the other lapsed
    live.reserve(key="alice", profile=None, amount_usd=0.4)
    owners = [r[0] for r in store.iter_rows("SELECT owner FROM reservations")]
    assert "elsewhere|1|1" not in owners  # deleted, not just ignored


def test_a_hold_never_outlives_stale_after_s_even_when_renewed(tmp_path: Path) -> None:
    store, clock = LogStore(tmp_path / "l.db"), Clock()
    b = BudgetLedger(store, {"alice": 1.0}, {}, lease_s=10.0, stale_after_s=30.0, clock=clock)
    b.reserve(key="alice", profile=None, amount_usd=0.9)
    for _ in range(8):
        clock.t += 5.0
        store.run_in_transaction(b.renew_in)
    assert b.held("key", "alice") == 0.0


def test_lock_names_are_one_per_limited_scope(tmp_path: Path) -> None:
    b = BudgetLedger(LogStore(tmp_path / "l.db"), {"alice": 1.0, "bob": None}, {"support": 2.0})
    assert b.lock_names(key="alice", profile="support") == ["budget:key:alice", "budget:profile:support"]
    assert b.lock_names(key="bob", profile=None) == []


def test_publishing_the_same_artefact_again_keeps_the_version(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "l.db")
    art = tmp_path / "art"
    art.mkdir()
    (art / "manifest.json").write_text("{}")
    d1 = artefact_digest(art)
    assert store.run_in_transaction(publish_in, "qa", d1, path=str(art)) == 1
    assert store.run_in_transaction(publish_in, "qa", d1, path=str(art)) == 1  # a replica that merely reloaded
    (art / "heads.pkl").write_bytes(b"refit")
    d2 = artefact_digest(art)
    assert d2 != d1
    assert store.run_in_transaction(publish_in, "qa", d2, path=str(art), source="r1") == 2
    assert store.run_in_transaction(bump_in, "qa", source="cli") == 3  # "reload everywhere" keeps the digest
    v = store.read(read_versions)["qa"]
    assert (v.version, v.sha256, v.source) == (3, d2, "cli")


def test_artefact_digest_covers_file_names_and_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
    (a / "x").write_bytes(b"1")
    (b / "y").write_bytes(b"1")
    assert artefact_digest(a) != artefact_digest(b)
    f = tmp_path / "single.json"
    f.write_text("{}")
    assert len(artefact_digest(f)) == 64
