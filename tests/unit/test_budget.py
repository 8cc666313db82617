"""Budget ledger: reserve the maximum possible cost atomically, settle with the real cost."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from thrifty.budget import BudgetLedger, TierPrice, max_cost_usd, max_input_tokens
from thrifty.errors import BudgetExceeded
from thrifty.store import LogStore
from thrifty.types import ChatRequest


def ledger(tmp_path: Path, key_limit: float | None = 1.0, profile_limit: float | None = None, **kw: float) -> BudgetLedger:
    return BudgetLedger(LogStore(tmp_path / "l.db"), {"alice": key_limit}, {"support": profile_limit}, **kw)


def test_reserve_refuses_what_would_exceed_the_limit(tmp_path: Path) -> None:
    b = ledger(tmp_path, key_limit=1.0)
    r1 = b.reserve(key="alice", profile="support", amount_usd=0.6)
    assert b.held("key", "alice") == pytest.approx(0.6)
    with pytest.raises(BudgetExceeded) as info:
        b.reserve(key="alice", profile="support", amount_usd=0.5)
    assert info.value.limit_usd == 1.0 and info.value.spent_usd == pytest.approx(0.6)
    b.settle(r1, 0.1, key="alice", profile="support")  # the request cost less than its worst case
    assert b.held("key", "alice") == 0.0 and b.spent("key", "alice") == pytest.approx(0.1)
    assert b.spent("profile", "support") == pytest.approx(0.1)  # spend is tracked even without a limit
    b.reserve(key="alice", profile="support", amount_usd=0.5)  # fits now: 0.1 spent + 0.5


def test_release_drops_a_hold_without_spending_and_holds_says_when_the_database_is_used(tmp_path: Path) -> None:
    b = ledger(tmp_path, key_limit=1.0)
    assert b.holds(key="alice", profile=None) and not b.holds(key="bob", profile="support")
    b.release(b.reserve(key="alice", profile="support", amount_usd=0.9))
    assert b.held("key", "alice") == 0.0 and b.spent("key", "alice") == 0.0 and b.spent("profile", "support") == 0.0
    b.reserve(key="alice", profile=None, amount_usd=1.0)  # the whole budget is available again


def test_unlimited_scopes_never_refuse(tmp_path: Path) -> None:
    b = ledger(tmp_path, key_limit=None)
    r = b.reserve(key="bob", profile=None, amount_usd=1e9)
    assert r.scopes == ()
    b.settle(r, 3.0, key="bob", profile=None)
    assert b.spent("key", "bob") == 3.0


def test_profile_limit_applies_to_every_key(tmp_path: Path) -> None:
    b = ledger(tmp_path, key_limit=None, profile_limit=0.5)
    b.reserve(key=None, profile="support", amount_usd=0.4)
    with pytest.raises(BudgetExceeded, match="profile 'support'"):
        b.reserve(key="alice", profile="support", amount_usd=0.2)


def test_concurrent_reservations_never_overspend(tmp_path: Path) -> None:
    """40 threads on two connections (as two workers would be) race for a budget of 10 requests."""
    store_a, store_b = LogStore(tmp_path / "l.db"), LogStore(tmp_path / "l.db")
    ledgers = [BudgetLedger(s, {"alice": 1.0}, {}) for s in (store_a, store_b)]
    ok, refused = [], []
    barrier = threading.Barrier(40)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            r = ledgers[i % 2].reserve(key="alice", profile=None, amount_usd=0.1)
        except BudgetExceeded:
            refused.append(i)
            return
        ledgers[i % 2].settle(r, 0.1, key="alice", profile=None)
        ok.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ok) == 10 and len(refused) == 30
    assert ledgers[0].spent("key", "alice") == pytest.approx(1.0)


def test_stale_holds_of_crashed_requests_expire(tmp_path: Path) -> None:
    b = ledger(tmp_path, key_limit=1.0, stale_after_s=0.05)
    b.reserve(key="alice", profile=None, amount_usd=0.9)  # never settled: its process "crashed"
    with pytest.raises(BudgetExceeded):
        b.reserve(key="alice", profile=None, amount_usd=0.9)
    time.sleep(0.1)
    b.reserve(key="alice", profile=None, amount_usd=0.9)


def test_max_cost_is_an_upper_bound_over_every_tier() -> None:
    req = ChatRequest.from_prompt("héllo", max_tokens=10)
    n_in = max_input_tokens(req)
    assert n_in >= len("héllo".encode())
    tiers = [TierPrice(1.0, 2.0, 512), TierPrice(None, None, 512), TierPrice(10.0, 20.0, 512)]
    expected = (n_in * 1.0 + 10 * 2.0 + n_in * 10.0 + 10 * 20.0) / 1e6
    assert max_cost_usd(req, tiers) == pytest.approx(expected)
    unbounded = ChatRequest.from_prompt("hi")
    assert max_cost_usd(unbounded, [TierPrice(0.0, 1.0, 300)]) == pytest.approx(300 / 1e6)
