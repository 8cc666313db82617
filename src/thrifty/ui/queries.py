"""The dashboard's SQL: every figure is aggregated by the database, never by a loop over rows.

Each query groups the log into at most a few thousand rows (time bucket × profile × status …) and
Python only folds those groups. The ``0008_dashboard_indexes`` migration adds the covering indexes
these scans read instead of the wide ``requests`` rows (prompts and answers stay on disk).

Portable SQL only (``?`` placeholders, CASE, CAST, LIKE), so the same text runs on SQLite and PostgreSQL.
``scope_key`` — a key's name or None for the admin — is applied to every query that touches
``requests``: a key's view never contains another key's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from thrifty.store.refusals import refusals_by_key
from thrifty.ui.reader import Reader, has_rows, table_columns
from thrifty.ui.request_list import RequestFilter, list_requests, request_detail
from thrifty.ui.rollup import CACHE_CLASS_SQL, DAY, ESCALATED_SQL, HOUR, latency_bucket_sql, rolled_until

__all__ = [
    "Reader",
    "Window",
    "overview",
    "latency_percentiles",
    "profile_series",
    "key_spend",
    "period_spend",
    "key_refusals",
    "RequestFilter",
    "list_requests",
    "request_detail",
    "has_rows",
    "table_columns",
    "floor_sql",
]


@dataclass(frozen=True)
class Window:
    """``[start, end)`` in unix seconds, in buckets of ``bucket_s`` seconds on UTC boundaries (the
    first bucket starts at or before ``start``; only rows from ``start`` on are counted), so a
    rolled-up hour always falls in exactly one bucket."""

    start: float
    end: float
    bucket_s: int

    @property
    def origin(self) -> int:
        return int(self.start // self.bucket_s) * self.bucket_s

    @property
    def n_buckets(self) -> int:
        return max(1, -(-int(self.end - self.origin) // self.bucket_s))

    def times(self) -> list[float]:
        return [float(self.origin + i * self.bucket_s) for i in range(self.n_buckets)]


def _scope_sql(scope_key: str | None, profile: str | None) -> tuple[str, list[Any]]:
    sql, params = "", []
    if scope_key is not None:
        sql += " AND key_name = ?"
        params.append(scope_key)
    if profile is not None:
        sql += " AND profile = ?"
        params.append(profile)
    return sql, params


def _split(a: float, b: float, span: int, done: int) -> tuple[list[tuple[float, float]], tuple[int, int] | None]:
    """``[a, b)`` as its whole ``span``-long buckets before ``done`` and the pieces left on either side."""
    lo = -(-int(a) // span) * span
    hi = min(int(b) // span * span, done)
    if hi <= lo:
        return [(a, b)], None
    return ([(a, float(lo))] if a < lo else []) + ([(float(hi), b)] if hi < b else []), (lo, hi)


def _parts(db: Reader, window: Window, *, bucketed: bool) -> tuple[list[tuple[float, float]], list[tuple[int, int, int]]]:
    """The window as raw ``requests`` ranges and roll-up ranges ``(span, lo, hi)``: whole settled
    days from the daily rows (when the view's buckets are days, or it has none), whole settled
    hours from the hourly rows, the rest (recent or partial hours) from the log."""
    done_h, done_d = rolled_until(db)
    rolled: list[tuple[int, int, int]] = []
    pieces = [(window.start, window.end)]
    if done_d and (not bucketed or window.bucket_s % DAY == 0):
        pieces, days = _split(window.start, window.end, DAY, done_d)
        if days:
            rolled.append((DAY, *days))
    raw: list[tuple[float, float]] = []
    for a, b in pieces:
        rest, hours = _split(a, b, HOUR, done_h)
        raw += rest
        if hours:
            rolled.append((HOUR, *hours))
    return raw, rolled


def floor_sql(expr: str) -> str:
    """FLOOR of ``expr`` in portable SQL: CAST to INTEGER truncates on SQLite and rounds on
    PostgreSQL, and SQLite may lack FLOOR(); a cast that landed above the value is one too high."""
    return f"(CAST({expr} AS BIGINT) - CASE WHEN CAST({expr} AS BIGINT) > {expr} THEN 1 ELSE 0 END)"


#: the bucket index of a row; binds (origin, bucket_s) :data:`_BUCKET_BINDS` times
_BUCKET = floor_sql("((created - ?) / ?)")
_BUCKET_BINDS = _BUCKET.count("?") // 2
_ROLLED_BUCKET = "((bucket_start - ?) / ?)"  # both integers: integer division on both engines, and >= 0


def _grouped(
    db: Reader,
    window: Window,
    scope_key: str | None,
    profile: str | None,
    *,
    raw_cols: str,
    rolled_cols: str,
    raw_aggs: str,
    rolled_aggs: str,
    n_keys: int,
    raw_where: str = "",
    rolled_where: str = "",
    table: str = "dash_hourly",
    bucketed: bool = True,
) -> list[dict[str, Any]]:
    """The same GROUP BY over the raw parts of the window and over its rolled-up hours and days, concatenated
    (callers fold the groups; there are at most a few thousand)."""
    # a key's own view reads its rows (the roll-ups, but for dash_hourly_keys, have no key column)
    raw_parts, rolled = (
        _parts(db, window, bucketed=bucketed) if scope_key is None or table == "dash_hourly_keys" else ([(window.start, window.end)], [])
    )
    extra, extra_params = _scope_sql(scope_key, profile)
    by = ", ".join(str(i + 1) for i in range(n_keys))
    out: list[dict[str, Any]] = []
    for start, end in raw_parts:
        head = f"{_BUCKET} AS b, " if bucketed else ""
        out += db.rows(
            f"SELECT {head}{raw_cols}, {raw_aggs} FROM requests WHERE created >= ? AND created < ?{extra}{raw_where} GROUP BY {by}",  # noqa: S608 - fixed fragments, values bound
            [*([window.origin, window.bucket_s] * _BUCKET_BINDS if bucketed else []), start, end, *extra_params],
        )
    for span, lo, hi in rolled:
        head = f"{_ROLLED_BUCKET} AS b, " if bucketed else ""
        out += db.rows(
            f"SELECT {head}{rolled_cols}, {rolled_aggs} FROM {table} WHERE span = ? AND bucket_start >= ? AND bucket_start < ?"
            f"{extra}{rolled_where} GROUP BY {by}",  # noqa: S608
            [*([window.origin, window.bucket_s] if bucketed else []), span, lo, hi, *extra_params],
        )
    return out


def overview(
    db: Reader, window: Window, *, scope_key: str | None, baseline: Mapping[str, tuple[float, float]], profile: str | None = None
) -> dict[str, Any]:
    """Requests, spend, saving against the dearest tier, errors, cache and escalation — per bucket and in total.

    ``baseline``: profile → (input, output) USD per 1M tokens of its dearest tier. The saving of a
    request is what that tier would have cost for the same tokens minus what was paid; requests of
    pass-through models (no profile) and failed requests save nothing.
    """
    groups = _grouped(
        db,
        window,
        scope_key,
        profile,
        n_keys=5,
        raw_cols=f"COALESCE(profile, '') AS profile, status, {CACHE_CLASS_SQL} AS cache_class, {ESCALATED_SQL} AS escalated",
        raw_aggs="COUNT(*) AS n, SUM(cost_usd) AS cost, SUM(COALESCE(input_tokens, 0)) AS tin, SUM(COALESCE(output_tokens, 0)) AS tout",
        rolled_cols="profile, status, cache_class, escalated",
        rolled_aggs="SUM(n) AS n, SUM(cost_usd) AS cost, SUM(input_tokens) AS tin, SUM(output_tokens) AS tout",
    )
    nb = window.n_buckets
    series = {k: [0.0] * nb for k in ("requests", "spend_usd", "saved_usd", "errors", "escalated", "cache_hits")}
    total = dict.fromkeys(("requests", "spend_usd", "dearest_usd", "ok", "errors", "escalated", "cache_hits", "cache_lookups"), 0.0)
    by_status: dict[str, int] = {}
    for g in groups:
        b = min(max(int(g["b"]), 0), nb - 1)
        n, cost, status = int(g["n"]), float(g["cost"] or 0.0), int(g["status"])
        price = baseline.get(g["profile"]) if g["profile"] else None
        dearest = (g["tin"] * price[0] + g["tout"] * price[1]) / 1e6 if price and status < 400 else cost
        series["requests"][b] += n
        series["spend_usd"][b] += cost
        series["saved_usd"][b] += dearest - cost
        total["requests"] += n
        total["spend_usd"] += cost
        total["dearest_usd"] += dearest
        if status >= 400:
            series["errors"][b] += n
            total["errors"] += n
            by_status[str(status)] = by_status.get(str(status), 0) + n
            continue
        total["ok"] += n
        series["escalated"][b] += n * int(g["escalated"])
        total["escalated"] += n * int(g["escalated"])
        if g["cache_class"] != "none":
            total["cache_lookups"] += n
            if g["cache_class"] == "hit":
                total["cache_hits"] += n
                series["cache_hits"][b] += n
    ok = total["ok"]
    return {
        "t": window.times(),
        "series": series,
        "totals": {
            "requests": int(total["requests"]),
            "answered": int(ok),
            "errors": int(total["errors"]),
            "spend_usd": total["spend_usd"],
            "dearest_usd": total["dearest_usd"],
            "saved_usd": total["dearest_usd"] - total["spend_usd"],
            "escalation_rate": total["escalated"] / ok if ok else None,
            "escalated": int(total["escalated"]),
            "cache_hit_rate": total["cache_hits"] / total["cache_lookups"] if total["cache_lookups"] else None,
            "cache_hits": int(total["cache_hits"]),
            "cache_lookups": int(total["cache_lookups"]),
        },
        "errors_by_status": dict(sorted(by_status.items())),
    }


def latency_percentiles(
    db: Reader, window: Window, *, scope_key: str | None, profile: str | None = None, qs: Sequence[float] = (0.5, 0.99)
) -> dict[str, float | None]:
    """Nearest-rank percentiles of answered requests' latency, as the bound of the bucket
    (:data:`~thrifty.ui.rollup.LATENCY_LE_MS`) they fall in: the database counts requests per
    bucket, Python walks those few dozen counts."""
    hist = _grouped(
        db,
        window,
        scope_key,
        profile,
        n_keys=1,
        bucketed=False,
        table="dash_hourly_latency",
        raw_cols=f"{latency_bucket_sql()} AS le",
        raw_aggs="COUNT(*) AS n",
        raw_where=" AND status < 400 AND latency_s IS NOT NULL",
        rolled_cols="le_ms AS le",
        rolled_aggs="SUM(n) AS n",
    )
    counts: dict[int, int] = {}
    for h in hist:
        counts[int(h["le"])] = counts.get(int(h["le"]), 0) + int(h["n"])
    n = sum(counts.values())
    out: dict[str, float | None] = {}
    for q in qs:
        name = f"p{round(q * 100):d}_ms"
        out[name] = None
        rank, seen = max(1, -(-int(round(q * n * 1000)) // 1000)), 0  # ceil(q·n), nearest-rank
        for le in sorted(counts):
            seen += counts[le]
            if seen >= rank:
                out[name] = float(le)
                break
    return out


def profile_series(db: Reader, window: Window, profile: str, *, scope_key: str | None) -> dict[str, Any]:
    """Per bucket: requests answered by each model (tier shares) and escalated requests."""
    groups = _grouped(
        db,
        window,
        scope_key,
        profile,
        n_keys=3,
        raw_where=" AND status < 400",
        rolled_where=" AND status < 400",
        raw_cols=f"COALESCE(final_model, '') AS model, {ESCALATED_SQL} AS escalated",
        raw_aggs="COUNT(*) AS n",
        rolled_cols="final_model AS model, escalated",
        rolled_aggs="SUM(n) AS n",
    )
    nb = window.n_buckets
    shares: dict[str, list[float]] = {}
    answered, escalated = [0.0] * nb, [0.0] * nb
    totals: dict[str, int] = {}
    for g in groups:
        b = min(max(int(g["b"]), 0), nb - 1)
        n, model = int(g["n"]), g["model"] or "(none)"
        shares.setdefault(model, [0.0] * nb)[b] += n
        totals[model] = totals.get(model, 0) + n
        answered[b] += n
        escalated[b] += n * int(g["escalated"])
    return {"t": window.times(), "answered": answered, "escalated": escalated, "by_model": shares, "totals_by_model": totals}


def key_spend(db: Reader, window: Window, *, scope_key: str | None) -> dict[str, dict[str, Any]]:
    """Per key name ('' for none): requests, errors and spend inside the window."""
    groups = _grouped(
        db,
        window,
        scope_key,
        None,
        n_keys=1,
        bucketed=False,
        table="dash_hourly_keys",
        raw_cols="COALESCE(key_name, '') AS key_name",
        raw_aggs="COUNT(*) AS n, SUM(cost_usd) AS cost, SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS errors",
        rolled_cols="key_name",
        rolled_aggs="SUM(n) AS n, SUM(cost_usd) AS cost, SUM(failed * n) AS errors",
    )
    out: dict[str, dict[str, Any]] = {}
    for r in groups:
        d = out.setdefault(r["key_name"], {"requests": 0, "spend_usd": 0.0, "errors": 0})
        d["requests"] += int(r["n"])
        d["spend_usd"] += float(r["cost"] or 0.0)
        d["errors"] += int(r["errors"] or 0)
    return out


def period_spend(db: Reader, scope: str, names: Sequence[str], periods: Mapping[str, str | None]) -> dict[str, float]:
    """What the budget ledger has settled for each name in its limit's current period
    (``periods``: name → ``day:…``/``month:…`` row, None for the lifetime total)."""
    out: dict[str, float] = {}
    for name in names:
        period = periods.get(name)
        if period is None:
            rows = db.rows("SELECT spent_usd FROM spend WHERE scope = ? AND name = ?", (scope, name))
        else:
            rows = db.rows("SELECT spent_usd FROM spend_period WHERE scope = ? AND name = ? AND period = ?", (scope, name, period))
        out[name] = float(rows[0]["spent_usd"]) if rows else 0.0
    return out


def key_refusals(db: Reader, window: Window, *, scope_key: str | None) -> dict[str, dict[str, int]]:
    """Per key name ('' for none): requests refused by a budget in the hours overlapping the window —
    every replica's (the store counts them; :mod:`thrifty.store.refusals`) — in total and by the limit
    that refused (``key``: the key's own limit, ``profile``: the profile's budget)."""
    out = db.call(refusals_by_key, window.start, window.end)
    return out if scope_key is None else {k: v for k, v in out.items() if k == scope_key}
