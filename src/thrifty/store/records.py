"""What one logged request is: :class:`RequestRecord` with its :class:`StepRecord` rows, and the SQL
that writes them (one ``requests`` row plus its ``steps``, inside the caller's transaction)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["StepRecord", "RequestRecord", "record_rows", "insert_record"]

_DECISIONS = ("accepted", "escalated", "failed")


@dataclass(frozen=True)
class StepRecord:
    """One tier called for a request. ``decision``: accepted | escalated | failed."""

    tier: int
    model: str
    decision: str
    answer: str | None = None
    score: float | None = None
    threshold: float | None = None
    cost_usd: float = 0.0
    latency_s: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None
    cache: str | None = None  # hit | semantic | miss | bypass; None: the tier has no cache
    tokens_estimated: bool | None = None  # True: the upstream reported no usage (counts estimated); None: no answer
    shots: tuple[str, ...] | None = None  # ids of the few-shot examples the tier's prompt got (prompt adaptation); None: not adapted


@dataclass(frozen=True)
class RequestRecord:
    id: str
    created: float
    model_requested: str
    request: dict[str, Any]
    status: int
    key_name: str | None = None
    profile: str | None = None
    prompt: str | None = None
    final_model: str | None = None
    tiers_tried: tuple[str, ...] = ()
    answer: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float = 0.0
    latency_s: float | None = None
    error: str | None = None
    stream: bool = False
    steps: tuple[StepRecord, ...] = field(default_factory=tuple)
    cache: str | None = None  # the served answer's cache status (the x-thrifty-cache header); None: no cache
    tokens_estimated: bool | None = None  # True: the answer's token counts are estimates (no upstream usage)


def record_rows(rec: RequestRecord) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    """The ``requests`` row and ``steps`` rows of ``rec`` (ValueError on an unknown decision)."""
    for s in rec.steps:
        if s.decision not in _DECISIONS:
            raise ValueError(f"step decision must be one of {_DECISIONS}, got {s.decision!r}")
    row = (
        rec.id,
        rec.created,
        rec.key_name,
        rec.profile,
        rec.model_requested,
        json.dumps(rec.request, ensure_ascii=False, default=str),
        rec.prompt,
        rec.final_model,
        json.dumps(list(rec.tiers_tried)),
        rec.answer,
        rec.input_tokens,
        rec.output_tokens,
        float(rec.cost_usd),
        rec.latency_s,
        int(rec.status),
        rec.error,
        int(rec.stream),
        rec.cache,
        _flag(rec.tokens_estimated),
    )
    steps = [
        (
            rec.id,
            i,
            s.tier,
            s.model,
            s.answer,
            s.score,
            s.threshold,
            float(s.cost_usd),
            s.latency_s,
            s.input_tokens,
            s.output_tokens,
            s.decision,
            s.error,
            s.cache,
            _flag(s.tokens_estimated),
            None if s.shots is None else json.dumps(list(s.shots)),
        )
        for i, s in enumerate(rec.steps)
    ]
    return row, steps


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(value)


def insert_record(
    c: sqlite3.Connection, row: tuple[Any, ...], steps: list[tuple[Any, ...]], also: Callable[[sqlite3.Connection], None] | None
) -> None:
    """Insert one request and its steps (and run ``also``) inside the caller's transaction."""
    c.execute(
        "INSERT INTO requests (id, created, key_name, profile, model_requested, request_json, prompt,"
        " final_model, tiers_tried, answer, input_tokens, output_tokens, cost_usd, latency_s, status,"
        " error, stream, cache, tokens_estimated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        row,
    )
    c.executemany(
        "INSERT INTO steps (request_id, idx, tier, model, answer, score, threshold, cost_usd, latency_s,"
        " input_tokens, output_tokens, decision, error, cache, tokens_estimated, shots) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        steps,
    )
    if also is not None:
        also(c)
