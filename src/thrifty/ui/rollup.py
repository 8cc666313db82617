"""Hourly roll-ups of the request log, so a 30-day view reads ~1,000 rows per profile, not a million.

``dash_hourly`` holds, per UTC hour × profile × answering model × status × cache class × escalated,
the count, cost and tokens; ``dash_hourly_keys`` count and cost per hour × key × failed;
``dash_hourly_latency`` the latency histogram per hour × profile (buckets :data:`LATENCY_LE_MS`).
Rows with ``span = 86400`` sum a whole day's hours, so a 30-day view in day buckets reads 30 days'
rows, not 720 hours'. Few dimensions per table keep every view at thousands of rows whatever the traffic. Only *settled* hours are rolled up — those that ended more
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
import threading
import time
from typing import Any

__all__ = [
    "LATENCY_LE_MS",
    "OVERFLOW_MS",
    "latency_bucket_ms",
    "latency_bucket_sql",
    "CACHE_CLASS_SQL",
    "ESCALATED_SQL",
    "HOUR",
    "DAY",
    "Roller",
    "rolled_until",
]

HOUR = 3_600
DAY = 86_400
#: latency bucket upper bounds (ms); a percentile is reported as its bucket's bound (≤ ~40% above)
LATENCY_LE_MS: tuple[int, ...] = (
    1,
    2,
    3,
    5,
    7,
    10,
    15,
    20,
    30,
    40,
    50,
    70,
    100,
    150,
    200,
    300,
    400,
    500,
    700,
    1_000,
    1_500,
    2_000,
    3_000,
    4_000,
    5_000,
    7_000,
    10_000,
    15_000,
    20_000,
    30_000,
    45_000,
    60_000,
    90_000,
    120_000,
    180_000,
    300_000,
)
OVERFLOW_MS = 600_000
CACHE_CLASS_SQL = "CASE WHEN cache IN ('hit', 'semantic') THEN 'hit' WHEN cache = 'miss' THEN 'miss' ELSE 'none' END"
#: a JSON list with more than one model (no LIKE '%,%': a '%' is one more thing for a driver to escape)
ESCALATED_SQL = "CASE WHEN LENGTH(REPLACE(tiers_tried, ',', '')) < LENGTH(tiers_tried) THEN 1 ELSE 0 END"
_STEP_HOURS = 6  # hours per roll-up transaction (the write lock is held this long)
_STEP_DAYS = 7  # days per transaction (summing hourly rows: quick)


def latency_bucket_ms(seconds: float) -> int:
    """The bucket bound of a latency (what :func:`latency_bucket_sql` computes in the database)."""
    i = bisect.bisect_left(LATENCY_LE_MS, seconds * 1000.0)
    return LATENCY_LE_MS[i] if i < len(LATENCY_LE_MS) else OVERFLOW_MS


def latency_bucket_sql(col: str = "latency_s") -> str:
    return "CASE " + " ".join(f"WHEN {col} <= {le / 1000!r} THEN {le}" for le in LATENCY_LE_MS) + f" ELSE {OVERFLOW_MS} END"


_DIMS = {  # table → (dimension columns, sums) of its roll-up rows
    "dash_hourly": ("profile, final_model, status, cache_class, escalated", "n, cost_usd, input_tokens, output_tokens"),
    "dash_hourly_keys": ("key_name, failed", "n, cost_usd"),
    "dash_hourly_latency": ("profile, le_ms", "n"),
}
_FROM_REQUESTS = {  # table → the SELECT list over ``requests`` that fills its dimensions and sums
    "dash_hourly": (
        f"COALESCE(profile, ''), COALESCE(final_model, ''), status, {CACHE_CLASS_SQL}, {ESCALATED_SQL}",
        "COUNT(*), SUM(cost_usd), SUM(COALESCE(input_tokens, 0)), SUM(COALESCE(output_tokens, 0))",
        "",
    ),
    "dash_hourly_keys": ("COALESCE(key_name, ''), CASE WHEN status >= 400 THEN 1 ELSE 0 END", "COUNT(*), SUM(cost_usd)", ""),
    "dash_hourly_latency": (f"COALESCE(profile, ''), {latency_bucket_sql()}", "COUNT(*)", " AND status < 400 AND latency_s IS NOT NULL"),
}


def _roll_hour_sql(table: str) -> str:
    dims, sums = _DIMS[table]
    sel_dims, sel_sums, where = _FROM_REQUESTS[table]
    by = ", ".join(str(i + 3) for i in range(len(dims.split(","))))
    return (
        f"INSERT INTO {table} (span, bucket_start, {dims}, {sums}) SELECT {HOUR}, CAST(? AS BIGINT), {sel_dims}, {sel_sums}"  # noqa: S608
        f" FROM requests WHERE created >= ? AND created < ?{where} GROUP BY {by}"
    )


def _roll_day_sql(table: str) -> str:
    dims, sums = _DIMS[table]
    sum_list = ", ".join(f"SUM({c})" for c in sums.split(", "))
    return (
        f"INSERT INTO {table} (span, bucket_start, {dims}, {sums}) SELECT {DAY}, CAST(? AS BIGINT), {dims}, {sum_list}"  # noqa: S608
        f" FROM {table} WHERE span = {HOUR} AND bucket_start >= ? AND bucket_start < ? GROUP BY {dims}"
    )


_SEARCH_STEPS = 25  # at most 50,000 rows indexed per look (~1 s); search reads any later rows directly


class Roller:
    """Brings the roll-ups of one log store (SQLite or PostgreSQL) up to date; thread-safe, at most
    every ``min_interval_s``. Each step is one transaction of the store
    (:meth:`~thrifty.store.logs.LogStore.run_serialized` under the lock ``dash_rollup``: on
    PostgreSQL an advisory lock, so two replicas never roll the same hour twice). Blocks: call it
    from a worker thread."""

    def __init__(self, store: Any, *, settle_s: float, min_interval_s: float = 30.0) -> None:
        self.store, self.settle_s, self.min_interval_s = store, float(settle_s), float(min_interval_s)
        self._lock = threading.Lock()
        self._last = float("-inf")
        self.done_until = 0

    def catch_up(self, *, now: float | None = None, force: bool = False) -> int:
        """Roll up every settled hour (and every day whose hours all are) not rolled up yet; returns
        how far the hourly roll-ups reach (unix time)."""
        now = time.time() if now is None else now
        with self._lock:
            if not force and now - self._last < self.min_interval_s:
                return self.done_until
            self._last = now
            hours = self._advance(
                "hourly",
                HOUR,
                int(now - self.settle_s) // HOUR * HOUR,
                _STEP_HOURS,
                "SELECT MIN(created) FROM requests",
                [_roll_hour_sql(t) for t in _DIMS],
            )
            self._advance(
                "daily",
                DAY,
                hours // DAY * DAY,
                _STEP_DAYS,
                f"SELECT MIN(bucket_start) FROM dash_hourly_keys WHERE span = {HOUR}",  # noqa: S608
                [_roll_day_sql(t) for t in _DIMS],
            )
            self.done_until = hours
            index = getattr(self.store, "index_search", None)  # prompts logged outside the gateway's writer
            for _ in range(_SEARCH_STEPS):
                if index is None or index() == 0:
                    break
            return hours

    def _advance(self, name: str, span: int, target: int, step: int, first_sql: str, statements: list[str]) -> int:
        """Roll ``span``-long buckets up to ``target``, ``step`` buckets per transaction; how far it got."""

        def one_step(conn: Any) -> tuple[int, int]:
            # the state is read inside the transaction: another process may have rolled meanwhile
            row = conn.execute("SELECT done_until FROM dash_rollup_state WHERE name = ?", (name,)).fetchone()
            if row is not None:
                start = int(row[0])
            else:
                t = conn.execute(first_sql).fetchone()[0]
                start = target if t is None else min(target, int(t) // span * span)
            stop = min(target, start + step * span)
            for b in range(start, stop, span):
                for sql in statements:
                    conn.execute(sql, (b, b, b + span))
            if stop > start:
                conn.execute(
                    "INSERT INTO dash_rollup_state (name, done_until) VALUES (?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET done_until = excluded.done_until",
                    (name, stop),
                )
            return start, stop

        while True:
            start, stop = self.store.run_serialized(["dash_rollup"], one_step)
            if stop >= target:
                return max(start, stop)

    def close(self) -> None:
        """Nothing to release: the store owns the connections (kept for callers that close it)."""


def rolled_until(db: Any) -> tuple[int, int]:
    """How far the hourly and the daily roll-ups of ``db`` (a :class:`thrifty.ui.queries.Reader`)
    reach (unix time; 0: not at all)."""
    done = {r["name"]: int(r["done_until"]) for r in db.rows("SELECT name, done_until FROM dash_rollup_state")}
    return done.get("hourly", 0), done.get("daily", 0)
