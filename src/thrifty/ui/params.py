"""Query-string parsing for the dashboard: every bad value is a :class:`~thrifty.errors.RequestError`
naming the parameter and what it accepts (the gateway turns it into a 400 with the OpenAI error body)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Mapping

from thrifty.errors import RequestError
from thrifty.ui.queries import RequestFilter, Window

__all__ = ["RANGES", "BUCKETS", "window_from", "page_size", "request_filter", "cursor", "MAX_PAGE"]

#: named ranges → seconds, with the bucket each uses by default
RANGES: dict[str, tuple[int, str]] = {"24h": (86_400, "hour"), "7d": (7 * 86_400, "day"), "30d": (30 * 86_400, "day")}
BUCKETS: dict[str, int] = {"hour": 3_600, "day": 86_400}
MAX_SPAN_S = 366 * 86_400
MAX_BUCKETS = 2_000
MAX_PAGE = 200
_CACHE = ("hit", "semantic", "miss", "bypass", "none")


def _time(name: str, raw: str) -> float:
    """Unix seconds, or an ISO 8601 date/time (UTC when it has no offset)."""
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise RequestError(
            f"{name}={raw!r} is not a time: give unix seconds or ISO 8601 (2026-12-01T10:00:00Z)", param=name, code="invalid_value"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


def window_from(q: Mapping[str, str], *, now: float | None = None) -> Window:
    """``range=24h|7d|30d`` (default 24h) or ``start``/``end``; ``bucket=hour|day``."""
    now = time.time() if now is None else now
    rng = q.get("range") or "24h"
    if rng not in RANGES:
        raise RequestError(f"range={rng!r} is not one of {sorted(RANGES)}", param="range", code="invalid_value")
    span, default_bucket = RANGES[rng]
    bucket = q.get("bucket") or default_bucket
    if bucket not in BUCKETS:
        raise RequestError(f"bucket={bucket!r} is not one of {sorted(BUCKETS)}", param="bucket", code="invalid_value")
    width = BUCKETS[bucket]
    end = _time("end", q["end"]) if q.get("end") else now
    start = _time("start", q["start"]) if q.get("start") else None
    if start is None:
        # the last `span`, on bucket boundaries so every bucket is whole and the current one is last
        end_aligned = (int(end) // width + 1) * width
        start = end_aligned - span
        end = end_aligned
    if not end > start:
        raise RequestError(f"end ({end:.0f}) must be after start ({start:.0f})", param="end", code="invalid_value")
    if end - start > MAX_SPAN_S:
        raise RequestError(
            f"the time range spans {(end - start) / 86_400:.0f} days; at most {MAX_SPAN_S // 86_400}", param="start", code="invalid_value"
        )
    w = Window(float(start), float(end), width)
    if w.n_buckets > MAX_BUCKETS:
        raise RequestError(
            f"{w.n_buckets} {bucket} buckets requested; at most {MAX_BUCKETS}: use bucket=day or a shorter range",
            param="bucket",
            code="invalid_value",
        )
    return w


def page_size(q: Mapping[str, str], default: int = 50) -> int:
    raw = q.get("limit")
    if raw is None or raw == "":
        return default
    try:
        n = int(raw)
    except ValueError:
        raise RequestError(f"limit={raw!r} is not an integer", param="limit", code="invalid_value") from None
    if not 1 <= n <= MAX_PAGE:
        raise RequestError(f"limit={n} is out of range: 1 to {MAX_PAGE}", param="limit", code="invalid_value")
    return n


def cursor(q: Mapping[str, str]) -> tuple[float, str] | None:
    """``before=<created>:<id>`` — the last row of the previous page."""
    raw = q.get("before")
    if not raw:
        return None
    created, _, rid = raw.partition(":")
    try:
        return float(created), rid
    except ValueError:
        raise RequestError(f"before={raw!r} is not a page cursor (<created>:<id>)", param="before", code="invalid_value") from None


def request_filter(q: Mapping[str, str]) -> RequestFilter:
    def opt(name: str) -> str | None:
        v = (q.get(name) or "").strip()
        return v or None

    status = opt("status")
    if status is not None and status not in ("ok", "error") and not (status.isdigit() and 100 <= int(status) <= 599):
        raise RequestError(f"status={status!r}: give ok, error or an HTTP status code", param="status", code="invalid_value")
    cache = opt("cache")
    if cache is not None and cache not in _CACHE:
        raise RequestError(f"cache={cache!r} is not one of {list(_CACHE)}", param="cache", code="invalid_value")
    text = opt("q")
    if text is not None and len(text) > 200:
        raise RequestError("q is longer than 200 characters", param="q", code="invalid_value")
    start = _time("start", q["start"]) if opt("start") else None
    end = _time("end", q["end"]) if opt("end") else None
    if start is not None and end is not None and not end > start:
        raise RequestError("end must be after start", param="end", code="invalid_value")
    return RequestFilter(
        profile=opt("profile"), key=opt("key"), model=opt("model"), status=status, cache=cache, text=text, start=start, end=end
    )


def as_dict(f: RequestFilter) -> dict[str, Any]:
    return {k: v for k, v in f.__dict__.items() if v is not None}
