"""Spend limits per API key and per profile, enforced atomically across threads and processes.

Before a request runs, :meth:`BudgetLedger.reserve` holds its *maximum possible* cost (every tier it
may call, at most ``max_tokens`` out each, input bounded by its UTF-8 byte count) against each
limited scope inside one SQLite ``BEGIN IMMEDIATE`` transaction: the check "spent + held + this ≤
limit" and the hold are one atomic step, so concurrent requests can never overspend together.
:meth:`BudgetLedger.settle` then replaces the hold with what the request actually cost.

Every hold is a *lease*: it lapses ``lease_s`` after it was taken unless its process renews it
(:meth:`BudgetLedger.renew_in`, which the gateway runs every ``lease_s / 3``), and at the latest
``stale_after_s`` after it was taken (longer than any request). So a replica that
dies — ``kill -9``, a lost machine — strands nothing: its holds stop counting and are deleted within
``lease_s``, while the live replicas' long requests keep theirs. A hold whose process (on this
host) is gone is released at once when a ledger opens the database (each hold names its process:
host, pid and start time).

On PostgreSQL, shared by several replicas, each check-and-hold transaction first takes an advisory
lock per limited scope (``budget:key:NAME``; see ``serial_locks`` in :mod:`thrifty.store.backend`),
so "spent + held + this ≤ limit" and the hold stay one atomic step across machines; settlements
are single upserts (``spent = spent + x``), atomic without it.
Spend is tracked for every key and profile (limited or not), in total and per UTC day and month,
so adding a limit later counts everything spent since the log was created (or this day/month).
A limit's *period* is ``"total"`` (lifetime, the default), ``"day"`` or ``"month"``: a periodic
limit compares the spend of the current UTC period (plus every live hold) with the limit, so it
resets at 00:00 UTC (on the 1st for months). Spend is attributed to the period it settles in.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from thrifty.config.model import PERIODS
from thrifty.errors import BudgetExceeded
from thrifty.store.logs import LogStore
from thrifty.types import ChatRequest

if TYPE_CHECKING:
    from thrifty.config.settings import Settings

__all__ = ["BudgetLedger", "ledger_for", "PERIODS", "Reservation", "TierPrice", "max_cost_usd", "max_input_tokens", "period_key"]

#: budget periods a limit may have; "total" never resets


@dataclass(frozen=True)
class TierPrice:
    """What one tier may cost: USD per 1M tokens in/out (None: free/unknown) and its output cap."""

    price_in: float | None
    price_out: float | None
    max_tokens: int


@dataclass(frozen=True)
class Reservation:
    id: str
    scopes: tuple[tuple[str, str], ...]  # (scope, name) pairs held
    amount_usd: float


def max_input_tokens(request: ChatRequest) -> int:
    """An upper bound on prompt tokens: UTF-8 bytes of the messages and tools (+8 per message)."""
    body = json.dumps([dict(m) for m in request.messages], ensure_ascii=False, default=str)
    tools = json.dumps([dict(t) for t in request.tools], ensure_ascii=False, default=str) if request.tools else ""
    return len(body.encode("utf-8")) + len(tools.encode("utf-8")) + 8 * len(request.messages)


def max_cost_usd(request: ChatRequest, tiers: Sequence[TierPrice]) -> float:
    """Worst case of a request: every tier called, each writing its full ``max_tokens``."""
    n_in = max_input_tokens(request)
    asked = request.params.get("max_completion_tokens") or request.params.get("max_tokens")
    total = 0.0
    for t in tiers:
        n_out = min(int(asked), t.max_tokens) if asked else t.max_tokens
        total += (n_in * (t.price_in or 0.0) + n_out * (t.price_out or 0.0)) / 1e6
    return total


def period_key(period: str, now: float) -> str | None:
    """The ``spend_period`` row of ``period`` at unix time ``now`` (UTC): ``day:2026-11-29``,
    ``month:2026-11``; None for ``total`` (the lifetime ``spend`` table)."""
    if period == "total":
        return None
    t = datetime.fromtimestamp(now, tz=timezone.utc)
    if period == "day":
        return f"day:{t:%Y-%m-%d}"
    if period == "month":
        return f"month:{t:%Y-%m}"
    raise ValueError(f"unknown budget period {period!r}; expected one of {PERIODS}")


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux ``/proc``), '' where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def _process_token(pid: int) -> str:
    return f"{socket.gethostname()}|{pid}|{_start_time(pid)}"


def _owner_alive(owner: str) -> bool:
    """False only when ``owner`` is a process of this host that is gone (or whose pid was reused)."""
    host, _, rest = owner.partition("|")
    pid_text, _, start = rest.partition("|")
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # another machine's process: cannot tell, leave it to the stale timer
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return not start or _start_time(pid) in ("", start)


class BudgetLedger:
    """Reserve-then-settle spend accounting in the log store's SQLite database."""

    def __init__(
        self,
        store: LogStore,
        key_limits: Mapping[str, float | None],
        profile_limits: Mapping[str, float | None],
        *,
        key_periods: Mapping[str, str] | None = None,
        profile_periods: Mapping[str, str] | None = None,
        stale_after_s: float = 900.0,
        lease_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``*_periods`` give a limit's period by name (missing: ``"total"``); ``clock`` is unix time;
        a hold lapses ``lease_s`` after its last renewal, and ``stale_after_s`` after it was taken."""
        self._store = store
        self._limits = {("key", k): v for k, v in key_limits.items() if v is not None}
        self._limits.update({("profile", p): v for p, v in profile_limits.items() if v is not None})
        self._periods = {("key", k): v for k, v in (key_periods or {}).items()}
        self._periods.update({("profile", p): v for p, v in (profile_periods or {}).items()})
        for period in self._periods.values():
            period_key(period, 0.0)  # ValueError on an unknown period, at construction
        self.stale_after_s = stale_after_s
        self.lease_s = float(lease_s)
        self._clock = clock
        self._owner = _process_token(os.getpid())
        self.release_orphans()

    def release_orphans(self) -> int:
        """Delete holds whose process (on this host) no longer runs, e.g. after ``kill -9``; return how many."""
        rows = self._store.iter_rows("SELECT DISTINCT owner FROM reservations WHERE owner IS NOT NULL")
        dead = [str(r[0]) for r in rows if r[0] != self._owner and not _owner_alive(str(r[0]))]
        if not dead:
            return 0
        return int(
            self._store.run_in_transaction(
                lambda conn: sum(conn.execute("DELETE FROM reservations WHERE owner = ?", (o,)).rowcount for o in dead)
            )
        )

    def limit(self, scope: str, name: str) -> float | None:
        return self._limits.get((scope, name))

    def period(self, scope: str, name: str) -> str:
        return self._periods.get((scope, name), "total")

    def _usage(self, conn: sqlite3.Connection, scope: str, name: str, now: float) -> tuple[float, float]:
        """(spent, held) of one scope: its settled spend in its limit's current period, and its holds
        whose lease has not lapsed (a hold counts whatever period it was taken in)."""
        row = period_key(self.period(scope, name), now)
        spent_sql = (
            "(SELECT spent_usd FROM spend WHERE scope = ?1 AND name = ?2)"
            if row is None
            else "(SELECT spent_usd FROM spend_period WHERE scope = ?1 AND name = ?2 AND period = ?4)"
        )
        spent, held = conn.execute(
            f"SELECT {spent_sql},"
            " (SELECT COALESCE(SUM(amount_usd), 0) FROM reservations WHERE scope = ?1 AND name = ?2"
            " AND created >= ?5 AND COALESCE(expires, ?3) >= ?3)",
            (scope, name, now, row, now - self.stale_after_s),
        ).fetchone()
        return float(spent or 0.0), float(held)

    def spent(self, scope: str, name: str) -> float:
        """What ``scope``/``name`` spent in its limit's current period (lifetime without a period)."""
        return float(self._store.read(self._usage, scope, name, self._clock())[0])

    def held(self, scope: str, name: str) -> float:
        return float(self._store.read(self._usage, scope, name, self._clock())[1])

    def _limited(self, key: str | None, profile: str | None) -> list[tuple[str, str]]:
        return [s for s in (("key", key), ("profile", profile)) if s[1] is not None and s in self._limits]

    def lock_names(self, *, key: str | None, profile: str | None) -> list[str]:
        """The cross-process locks a check-and-hold for these scopes takes (one per limited scope)."""
        return [f"budget:{scope}:{name}" for scope, name in self._limited(key, profile)]

    def holds(self, *, key: str | None, profile: str | None) -> bool:
        """Whether :meth:`reserve` for these scopes touches the database (one of them has a limit)."""
        return bool(self._limited(key, profile))

    def reserve(self, *, key: str | None, profile: str | None, amount_usd: float) -> Reservation:
        """Hold ``amount_usd`` against the key's and the profile's limits, or raise BudgetExceeded."""
        if not self._limited(key, profile):  # nothing held, nothing stored: no id needed (no uuid4 per request)
            return Reservation("", (), float(amount_usd))
        held: Reservation = self._store.run_serialized(
            self.lock_names(key=key, profile=profile), self.reserve_in, key=key, profile=profile, amount_usd=amount_usd
        )
        return held

    def reserve_in(self, conn: sqlite3.Connection, *, key: str | None, profile: str | None, amount_usd: float) -> Reservation:
        """:meth:`reserve`'s check-and-hold inside the caller's write transaction (``BEGIN IMMEDIATE``
        and :meth:`lock_names` already taken: the check and the hold are one atomic step), e.g. a
        log-store group commit."""
        limited = self._limited(key, profile)
        if not limited:
            return Reservation("", (), float(amount_usd))
        rid = uuid.uuid4().hex
        now = self._clock()
        conn.execute("DELETE FROM reservations WHERE created < ? OR expires < ?", (now - self.stale_after_s, now))
        for scope, name in limited:
            used = sum(self._usage(conn, scope, name, now))
            limit = self._limits[(scope, name)]
            if used + amount_usd > limit + 1e-12:
                period = self.period(scope, name)
                which = {"total": "", "day": " daily", "month": " monthly"}[period]
                resets = {"total": "", "day": " (resets at 00:00 UTC)", "month": " (resets on the 1st, 00:00 UTC)"}[period]
                raise BudgetExceeded(
                    f"the {scope} {name!r} has spent or reserved ${used:.6f} of its ${limit:.6f}{which} budget{resets};"
                    f" this request may cost up to ${amount_usd:.6f}",
                    limit_usd=limit,
                    spent_usd=used,
                    scope=scope,
                )
        conn.executemany(
            "INSERT INTO reservations (id, scope, name, amount_usd, created, owner, expires) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(rid, s, n, float(amount_usd), now, self._owner, now + self.lease_s) for s, n in limited],
        )
        return Reservation(rid, tuple(limited), float(amount_usd))

    def settle_in(
        self, conn: sqlite3.Connection, reservation: Reservation | None, actual_usd: float, *, key: str | None, profile: str | None
    ) -> None:
        """Release the hold and add the real cost to each scope's spend (lifetime, this UTC day and
        this UTC month), inside the caller's transaction."""
        if reservation is not None and reservation.scopes:
            conn.execute("DELETE FROM reservations WHERE id = ?", (reservation.id,))
        now = self._clock()
        for scope, name in (("key", key), ("profile", profile)):
            if name is None:
                continue
            conn.execute(
                "INSERT INTO spend (scope, name, spent_usd) VALUES (?, ?, ?)"
                " ON CONFLICT(scope, name) DO UPDATE SET spent_usd = spend.spent_usd + excluded.spent_usd",
                (scope, name, float(actual_usd)),
            )
            conn.executemany(
                "INSERT INTO spend_period (scope, name, period, spent_usd) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(scope, name, period) DO UPDATE SET spent_usd = spend_period.spent_usd + excluded.spent_usd",
                [(scope, name, period_key(p, now), float(actual_usd)) for p in ("day", "month")],
            )

    def renew_in(self, conn: sqlite3.Connection) -> int:
        """Extend the lease of every hold this process owns by ``lease_s`` from now and delete lapsed
        holds (a dead replica's); returns how many holds were renewed."""
        now = self._clock()
        conn.execute("DELETE FROM reservations WHERE created < ? OR expires < ?", (now - self.stale_after_s, now))
        return conn.execute("UPDATE reservations SET expires = ? WHERE owner = ?", (now + self.lease_s, self._owner)).rowcount

    def release(self, reservation: Reservation) -> None:
        """Drop a hold without spending anything (its request never ran)."""
        self.settle(reservation, 0.0, key=None, profile=None)

    def settle(self, reservation: Reservation | None, actual_usd: float, *, key: str | None, profile: str | None) -> None:
        """Release the hold and add what the request really cost to every scope's spend."""
        self._store.run_in_transaction(self.settle_in, reservation, actual_usd, key=key, profile=profile)


def ledger_for(store: LogStore, settings: "Settings") -> BudgetLedger:
    """The ledger enforcing ``settings``' key limits and profile budgets (with their periods)."""
    keys, profiles = settings.keys.values(), settings.profiles.values()
    return BudgetLedger(
        store,
        {k.name: k.limit_usd for k in keys},
        {p.name: p.budget_usd for p in profiles},
        key_periods={k.name: k.limit_period for k in keys},
        profile_periods={p.name: p.budget_period for p in profiles},
        lease_s=settings.server.hold_lease_s,
    )
