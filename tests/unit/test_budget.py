"""Budget ledger: reserve the maximum possible cost atomically, settle with the real cost."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from thrifty.errors import BudgetExceeded
from thrifty.serving.budget import BudgetLedger, TierPrice, max_cost_usd, max_input_tokens
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


class _Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_a_daily_limit_resets_at_midnight_utc_and_a_monthly_one_on_the_first(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    clock = _Clock(datetime(2026, 11, 29, 23, 0, tzinfo=timezone.utc).timestamp())
    store = LogStore(tmp_path / "l.db")
    b = BudgetLedger(
        store, {"alice": 1.0}, {"support": 1.5}, key_periods={"alice": "day"}, profile_periods={"support": "month"}, clock=clock
    )
    b.settle(b.reserve(key="alice", profile="support", amount_usd=0.9), 0.9, key="alice", profile="support")
    with pytest.raises(BudgetExceeded, match="daily budget .resets at 00:00 UTC"):
        b.reserve(key="alice", profile="support", amount_usd=0.2)
    clock.t += 2 * 3600  # 01:00 UTC on the 30th: alice's day is new, the profile's month is not
    assert b.spent("key", "alice") == 0.0 and b.spent("profile", "support") == pytest.approx(0.9)
    b.settle(b.reserve(key="alice", profile="support", amount_usd=0.5), 0.5, key="alice", profile="support")
    with pytest.raises(BudgetExceeded, match="profile 'support'.*monthly budget"):
        b.reserve(key="alice", profile="support", amount_usd=0.2)  # 1.4 + 0.2 > 1.5 this month
    clock.t += 24 * 3600  # 1 December: both reset
    b.reserve(key="alice", profile="support", amount_usd=0.9)
    # the lifetime total is still there for reports, and a limit without a period keeps counting it
    lifetime = BudgetLedger(store, {"alice": 1.5}, {}, clock=clock)
    assert lifetime.spent("key", "alice") == pytest.approx(1.4)
    with pytest.raises(BudgetExceeded):
        lifetime.reserve(key="alice", profile=None, amount_usd=0.2)


def test_unknown_period_is_refused() -> None:
    with pytest.raises(ValueError, match="weekly"):
        BudgetLedger(LogStore(":memory:"), {"a": 1.0}, {}, key_periods={"a": "weekly"})


def test_the_period_migration_attributes_spend_logged_before_it(tmp_path: Path) -> None:
    """A log written before migration 0005 keeps its spend per UTC day and month."""
    from datetime import datetime, timezone

    from thrifty.store.db import MIGRATIONS, connect, migrate

    conn = connect(tmp_path / "old.db", migrate_now=False)
    head = [m for m in MIGRATIONS if m[0] < "0005"]
    import thrifty.store.db as db

    saved = list(db.MIGRATIONS)
    db.MIGRATIONS[:] = head
    try:
        migrate(conn)
    finally:
        db.MIGRATIONS[:] = saved
    day = datetime(2026, 11, 28, 12, tzinfo=timezone.utc).timestamp()
    for i, (t, cost) in enumerate([(day, 0.25), (day + 60, 0.5), (day + 86400, 1.0)]):
        conn.execute(
            "INSERT INTO requests (id, created, key_name, profile, model_requested, request_json, tiers_tried,"
            " cost_usd, status) VALUES (?, ?, 'alice', 'support', 'm', '{}', '[]', ?, 200)",
            (f"r{i}", t, cost),
        )
    assert "0005_spend_periods" in migrate(conn)
    rows = {(r[0], r[1], r[2]): r[3] for r in conn.execute("SELECT scope, name, period, spent_usd FROM spend_period")}
    assert rows[("key", "alice", "day:2026-11-28")] == pytest.approx(0.75)
    assert rows[("profile", "support", "day:2026-11-29")] == pytest.approx(1.0)
    assert rows[("key", "alice", "month:2026-11")] == pytest.approx(1.75)
