"""Hourly roll-ups of the request log, so a 30-day view reads ~1,000 rows per profile, not a million.

``dash_hourly`` holds, per UTC hour × profile × answering model × status × cache class × escalated,
the count, cost and tokens; ``dash_hourly_keys`` count and cost per hour × key × failed;
``dash_hourly_latency`` the latency histogram per hour × profile (buckets :data:`LATENCY_LE_MS`).
Few dimensions per table keep a 30-day window at tens of thousands of rows whatever the traffic. Only *settled* hours are rolled up — those that ended more
than ``settle_s`` ago (longer than any request takes, so no row for them can still arrive, since a
request is logged when it finishes and stamped when it arrived). The dashboard reads settled hours
from the roll-ups and everything newer (and partial hours at a window's edges) from ``requests``.

Each hour is rolled up by one ``INSERT … SELECT … GROUP BY`` over the covering index, with the
hour's bounds bound as values (portable: no date functions), a few hours per short transaction so
the gateway's log writer never waits long; ``dash_rollup_state`` records how far it got, and the
transaction re-reads it first, so two processes never roll the same hour twice.
"""

from __future__ import annotations

import bisect
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["LATENCY_LE_MS", "OVERFLOW_MS", "latency_bucket_ms", "latency_bucket_sql", "CACHE_CLASS_SQL", "ESCALATED_SQL",
           "HOUR", "Roller"]

HOUR = 3_600
#: latency bucket upper bounds (ms); a percentile is reported as its bucket's bound (≤ ~40% above)
LATENCY_LE_MS: tuple[int, ...] = (1, 2, 3, 5, 7, 10, 15, 20, 30, 40, 50, 70, 100, 150, 200, 300, 400, 500, 700, 1_000, 1_500,
                                  2_000, 3_000, 4_000, 5_000, 7_000, 10_000, 15_000, 20_000, 30_000, 45_000, 60_000, 90_000,
                                  120_000, 180_000, 300_000)
OVERFLOW_MS = 600_000
CACHE_CLASS_SQL = "CASE WHEN cache IN ('hit', 'semantic') THEN 'hit' WHEN cache = 'miss' THEN 'miss' ELSE 'none' END"
ESCALATED_SQL = "CASE WHEN tiers_tried LIKE '%,%' THEN 1 ELSE 0 END"  # a JSON list with more than one model
_STEP_HOURS = 6  # hours per roll-up transaction (the write lock is held this long)


def latency_bucket_ms(seconds: float) -> int:
    """The bucket bound of a latency (what :func:`latency_bucket_sql` computes in the database)."""
    i = bisect.bisect_left(LATENCY_LE_MS, seconds * 1000.0)
    return LATENCY_LE_MS[i] if i < len(LATENCY_LE_MS) else OVERFLOW_MS


def latency_bucket_sql(col: str = "latency_s") -> str:
    return "CASE " + " ".join(f"WHEN {col} <= {le / 1000!r} THEN {le}" for le in LATENCY_LE_MS) + f" ELSE {OVERFLOW_MS} END"


_ROLL_MAIN = (
    "INSERT INTO dash_hourly (hour, profile, final_model, status, cache_class, escalated, n, cost_usd, input_tokens, output_tokens)"
    " SELECT ?, COALESCE(profile, ''), COALESCE(final_model, ''), status, "
    f"{CACHE_CLASS_SQL}, {ESCALATED_SQL}, COUNT(*), SUM(cost_usd), SUM(COALESCE(input_tokens, 0)), SUM(COALESCE(output_tokens, 0))"
    " FROM requests WHERE created >= ? AND created < ? GROUP BY 2, 3, 4, 5, 6"
)
_ROLL_KEYS = (
    "INSERT INTO dash_hourly_keys (hour, key_name, failed, n, cost_usd)"
    " SELECT ?, COALESCE(key_name, ''), CASE WHEN status >= 400 THEN 1 ELSE 0 END, COUNT(*), SUM(cost_usd)"
    " FROM requests WHERE created >= ? AND created < ? GROUP BY 2, 3"
)
_ROLL_LATENCY = (
    "INSERT INTO dash_hourly_latency (hour, profile, le_ms, n)"
    f" SELECT ?, COALESCE(profile, ''), {latency_bucket_sql()}, COUNT(*)"
    " FROM requests WHERE created >= ? AND created < ? AND status < 400 AND latency_s IS NOT NULL GROUP BY 2, 3"
)


class Roller:
    """Brings the roll-ups of one log database up to date (thread-safe; at most every ``min_interval_s``)."""

    def __init__(self, path: str | Path, *, settle_s: float, min_interval_s: float = 30.0) -> None:
        self.path, self.settle_s, self.min_interval_s = Path(path), float(settle_s), float(min_interval_s)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._last = float("-inf")
        self.done_until = 0

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            from thrifty.store.db import connect

            self._conn = connect(self.path, migrate_now=False)
        return self._conn

    def catch_up(self, *, now: float | None = None, force: bool = False) -> int:
        """Roll up every settled hour not rolled up yet; returns how far the roll-ups reach (unix time)."""
        now = time.time() if now is None else now
        with self._lock:
            if not force and now - self._last < self.min_interval_s:
                return self.done_until
            self._last = now
            target = int(now - self.settle_s) // HOUR * HOUR
            conn = self._connection()
            while True:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    start = self._start(conn, target)
                    stop = min(target, start + _STEP_HOURS * HOUR)
                    for hour in range(start, stop, HOUR):
                        conn.execute(_ROLL_MAIN, (hour, hour, hour + HOUR))
                        conn.execute(_ROLL_KEYS, (hour, hour, hour + HOUR))
                        conn.execute(_ROLL_LATENCY, (hour, hour, hour + HOUR))
                    if stop > start:
                        conn.execute("INSERT INTO dash_rollup_state (name, done_until) VALUES ('hourly', ?)"
                                     " ON CONFLICT (name) DO UPDATE SET done_until = excluded.done_until", (stop,))
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                self.done_until = max(start, stop)
                if stop >= target:
                    return self.done_until

    @staticmethod
    def _start(conn: sqlite3.Connection, target: int) -> int:
        row = conn.execute("SELECT done_until FROM dash_rollup_state WHERE name = 'hourly'").fetchone()
        if row is not None:
            return int(row[0])
        first = conn.execute("SELECT MIN(created) FROM requests").fetchone()[0]
        return target if first is None else min(target, int(first) // HOUR * HOUR)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def rolled_until(db: Any) -> int:
    """How far the roll-ups of ``db`` (a :class:`thrifty.ui.queries.Reader`) reach; 0: not at all."""
    rows = db.rows("SELECT done_until FROM dash_rollup_state WHERE name = 'hourly'")
    return int(rows[0]["done_until"]) if rows else 0
