"""Sampled audits in the log store (migration ``0006_audits``): one ``audits`` row per audited
request, one ``audit_answers`` row per tier answer judged against the reference.

Life of an audit row (``status``):

- ``pending`` — written in the same transaction as its request's log row, before any audit work, so
  a crash (even ``kill -9``) never loses it: the gateway re-queues pending rows when it starts;
- ``done`` — every answer judged (the answers' rows and the status are committed together);
- ``error`` — a reference call or the judge failed: ``error`` says why, ``attempts`` how often it
  ran; the gateway retries it until ``max_attempts``;
- ``skipped`` — never run: the audit budget was spent, or the profile is no longer audited.

Audit spend (``audit_cost_usd``) is kept apart from serving spend (``requests.cost_usd``). Tier
answers obtained before a failure are saved at once, with their cost, so a retry reuses them.
Every statement is portable SQL (SQLite and PostgreSQL).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from thrifty.data.table import RoutingTable

__all__ = [
    "AUDIT_STATUSES",
    "PendingAudit",
    "insert_pending_in",
    "due_audits",
    "load_audit",
    "start_in",
    "save_answer_in",
    "finish_in",
    "fail_in",
    "skip_in",
    "audit_spent",
    "audit_rows",
    "audit_status_counts",
    "serving_spend",
    "audited_table",
]

AUDIT_STATUSES = ("pending", "done", "error", "skipped")


@dataclass(frozen=True)
class PendingAudit:
    """What an audit needs, persisted with its request's log row."""

    request_id: str
    profile: str
    created: float
    request: Mapping[str, Any]  # messages, params, tools, tool_choice: what the tiers are asked
    tiers: tuple[str, ...]
    reference: str
    judge: str
    rubric: str | None
    rubric_version: str
    explore: str
    served_model: str | None
    served_cost_usd: float
    sample_prob: float | None = None  # audit probability under non-uniform sampling (weight 1/p); None: uniform


def insert_pending_in(conn: sqlite3.Connection, p: PendingAudit) -> None:
    """The ``pending`` row, inside the caller's transaction (the request's own log write)."""
    conn.execute(
        "INSERT INTO audits (request_id, profile, created, status, attempts, updated, request_json, tiers, reference, judge,"
        " rubric, rubric_version, explore, served_model, served_cost_usd, audit_cost_usd, sample_prob)"
        " VALUES (?, ?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
        (
            p.request_id,
            p.profile,
            float(p.created),
            float(p.created),
            json.dumps(dict(p.request), ensure_ascii=False, default=str),
            json.dumps(list(p.tiers)),
            p.reference,
            p.judge,
            p.rubric,
            p.rubric_version,
            p.explore,
            p.served_model,
            float(p.served_cost_usd),
            None if p.sample_prob is None else float(p.sample_prob),
        ),
    )


def due_audits(store: Any, *, max_attempts: int, limit: int = 1000) -> list[dict[str, Any]]:
    """Audits that may run, oldest first: every ``pending`` one and the ``error`` ones tried fewer
    than ``max_attempts`` times (the caller applies its backoff); request_id, profile, status,
    attempts, updated, owner."""
    rows = store.iter_rows(
        "SELECT request_id, profile, status, attempts, updated, owner FROM audits"
        " WHERE status = 'pending' OR (status = 'error' AND attempts < ?) ORDER BY created, request_id LIMIT ?",
        (int(max_attempts), int(limit)),
    )
    return [dict(r) for r in rows]


def load_audit(store: Any, request_id: str) -> dict[str, Any] | None:
    """The audit row (``request``, ``tiers`` decoded) with the request's ``prompt`` and served
    ``steps`` (answers that are not failures) and the ``answers`` saved by earlier runs; None if absent."""
    a = store.iter_rows(
        "SELECT a.*, r.prompt AS prompt FROM audits a JOIN requests r ON r.id = a.request_id WHERE a.request_id = ?", (request_id,)
    )
    if not a:
        return None
    out = dict(a[0])
    out["request"] = json.loads(out.pop("request_json"))
    out["tiers"] = json.loads(out["tiers"])
    steps = store.iter_rows(
        "SELECT model, answer, cost_usd, input_tokens, output_tokens FROM steps"
        " WHERE request_id = ? AND decision != 'failed' AND answer IS NOT NULL ORDER BY idx",
        (request_id,),
    )
    out["steps"] = [dict(s) for s in steps]
    saved = store.iter_rows("SELECT * FROM audit_answers WHERE request_id = ? ORDER BY tier, model", (request_id,))
    out["answers"] = [dict(s) for s in saved]
    return out


def start_in(conn: sqlite3.Connection, request_id: str, now: float, *, owner: str, attempts: int) -> int:
    """Claim one more run of a pending/error audit that has run ``attempts`` times so far (an
    optimistic lock: of several processes, one wins); returns its attempt number, 0 if not claimed."""
    cur = conn.execute(
        "UPDATE audits SET attempts = attempts + 1, updated = ?, owner = ? WHERE request_id = ?"
        " AND status IN ('pending', 'error') AND attempts = ?",
        (float(now), owner, request_id, int(attempts)),
    )
    return int(attempts) + 1 if cur.rowcount else 0


_ANSWER_COLS = (
    "model",
    "tier",
    "answer",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "reused",
    "quality",
    "at_least_as_good",
    "verdict",
    "judge_raw",
    "error",
)


def save_answer_in(conn: sqlite3.Connection, request_id: str, row: Mapping[str, Any], *, audit_cost_usd: float = 0.0) -> None:
    """Insert or replace one tier's answer row; ``audit_cost_usd`` (what obtaining it cost the
    audit) is added to the audit's spend in the same transaction."""
    values = [_cell(row.get(c)) for c in _ANSWER_COLS]
    updates = ", ".join(f"{c} = excluded.{c}" for c in _ANSWER_COLS[1:])
    conn.execute(
        f"INSERT INTO audit_answers (request_id, {', '.join(_ANSWER_COLS)}) VALUES (?, {', '.join('?' * len(_ANSWER_COLS))})"
        f" ON CONFLICT (request_id, model) DO UPDATE SET {updates}",
        (request_id, *values),
    )
    if audit_cost_usd:
        conn.execute("UPDATE audits SET audit_cost_usd = audit_cost_usd + ? WHERE request_id = ?", (float(audit_cost_usd), request_id))


def _cell(v: Any) -> Any:
    return int(v) if isinstance(v, bool) else v


def finish_in(conn: sqlite3.Connection, request_id: str, rows: Sequence[Mapping[str, Any]], *, judge_cost_usd: float, now: float) -> None:
    """Every judged answer and the ``done`` status, in one transaction."""
    for row in rows:
        save_answer_in(conn, request_id, row)
    conn.execute(
        "UPDATE audits SET status = 'done', error = NULL, updated = ?, audit_cost_usd = audit_cost_usd + ? WHERE request_id = ?",
        (float(now), float(judge_cost_usd), request_id),
    )


def fail_in(conn: sqlite3.Connection, request_id: str, error: str, *, judge_cost_usd: float, now: float) -> None:
    """A retryable failure: status ``error`` with its reason; what the judge was paid still counts."""
    conn.execute(
        "UPDATE audits SET status = 'error', error = ?, updated = ?, audit_cost_usd = audit_cost_usd + ? WHERE request_id = ?",
        (error[:2000], float(now), float(judge_cost_usd), request_id),
    )


def skip_in(conn: sqlite3.Connection, request_id: str, reason: str, *, now: float) -> None:
    conn.execute("UPDATE audits SET status = 'skipped', error = ?, updated = ? WHERE request_id = ?", (reason, float(now), request_id))


def audit_spent(store: Any, profile: str, since: float | None = None) -> float:
    """What ``profile``'s audits paid, counting audits last changed at or after ``since``."""
    sql, params = "SELECT COALESCE(SUM(audit_cost_usd), 0) FROM audits WHERE profile = ?", [profile]
    params_any: list[Any] = list(params)
    if since is not None:
        sql += " AND updated >= ?"
        params_any.append(float(since))
    return float(store.iter_rows(sql, params_any)[0][0])


def _where(profile: str | None, since: float | None, alias: str) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if profile is not None:
        clauses.append(f"{alias}.profile = ?")
        params.append(profile)
    if since is not None:
        clauses.append(f"{alias}.created >= ?")
        params.append(float(since))
    return (" AND ".join(clauses) or "1 = 1"), params


def audit_rows(store: Any, profile: str | None = None, since: float | None = None, *, status: str = "done") -> list[dict[str, Any]]:
    """Audits (oldest first) with their ``answers``: {model: answer row}; request ids as ``request_id``."""
    where, params = _where(profile, since, "a")
    audits = store.iter_rows(
        "SELECT request_id, profile, created, status, attempts, reference, judge, rubric, rubric_version, explore, served_model,"
        f" served_cost_usd, audit_cost_usd, error, sample_prob FROM audits a WHERE {where} AND a.status = ? ORDER BY a.created, a.request_id",
        [*params, status],
    )
    answers = store.iter_rows(
        "SELECT x.* FROM audit_answers x JOIN audits a ON a.request_id = x.request_id"
        f" WHERE {where} AND a.status = ? ORDER BY x.request_id, x.tier, x.model",
        [*params, status],
    )
    return with_answers(audits, answers)


def with_answers(audits: Any, answers: Any) -> list[dict[str, Any]]:
    """The audit rows as dicts, each with ``answers``: {model: its answer row} (flags as bools)."""
    by_id: dict[str, dict[str, Any]] = {}
    for x in answers:
        d = dict(x)
        d["reused"] = bool(d["reused"])
        d["at_least_as_good"] = None if d["at_least_as_good"] is None else bool(d["at_least_as_good"])
        by_id.setdefault(d["request_id"], {})[d["model"]] = d
    return [dict(a) | {"answers": by_id.get(a["request_id"], {})} for a in audits]


def audit_status_counts(store: Any, profile: str | None = None, since: float | None = None) -> dict[str, dict[str, Any]]:
    """Per profile: audits by status and everything the audits paid (errors and retries included)."""
    where, params = _where(profile, since, "a")
    rows = store.iter_rows(
        f"SELECT profile, status, COUNT(*) AS n, COALESCE(SUM(audit_cost_usd), 0) AS cost FROM audits a"
        f" WHERE {where} GROUP BY profile, status",
        params,
    )
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        d = out.setdefault(r["profile"], {"counts": {s: 0 for s in AUDIT_STATUSES}, "audit_cost_usd": 0.0})
        d["counts"][r["status"]] = int(r["n"])
        d["audit_cost_usd"] += float(r["cost"])
    return out


def serving_spend(store: Any, profile: str | None = None, since: float | None = None) -> dict[str, dict[str, float]]:
    """Per profile: requests logged and what serving them cost (every tier called)."""
    where, params = _where(profile, since, "r")
    rows = store.iter_rows(
        f"SELECT profile, COUNT(*) AS n, COALESCE(SUM(cost_usd), 0) AS cost FROM requests r"
        f" WHERE {where} AND r.profile IS NOT NULL GROUP BY profile",
        params,
    )
    return {r["profile"]: {"requests": int(r["n"]), "cost_usd": float(r["cost"])} for r in rows}


def audited_table(store: Any, profile: str, since: float | None = None) -> Any:
    """The done audits of ``profile`` as a :class:`~thrifty.data.table.RoutingTable` (what the offline lab
    fits on): prompt_id = request id, the prompt text, one model per tier (the profile's order; a
    reference outside the tiers last), quality, cost, answer and tokens per cell; NaN where a tier's
    call failed. Prompt metadata: ``created``, ``served_model``."""
    import numpy as np

    audits = audit_rows(store, profile, since)
    prompts = {
        r["request_id"]: r["prompt"]
        for r in store.iter_rows(
            "SELECT r.id AS request_id, r.prompt FROM requests r JOIN audits a ON a.request_id = r.id WHERE a.profile = ?"
            " AND a.status = 'done'",
            (profile,),
        )
    }
    rank: dict[str, int] = {}
    for a in audits:
        for m, x in a["answers"].items():
            rank.setdefault(m, x["tier"] if x["tier"] >= 0 else 10_000)
    models = tuple(sorted(rank, key=lambda m: (rank[m], m)))
    P, M = len(audits), len(models)
    quality, cost, tin, tout = (np.full((P, M), np.nan) for _ in range(4))
    answers = np.full((P, M), None, dtype=object)
    for p, a in enumerate(audits):
        for m, x in a["answers"].items():
            if x["quality"] is None:
                continue
            j = models.index(m)
            quality[p, j], cost[p, j], answers[p, j] = float(x["quality"]), float(x["cost_usd"] or 0.0), x["answer"] or ""
            tin[p, j] = np.nan if x["input_tokens"] is None else float(x["input_tokens"])
            tout[p, j] = np.nan if x["output_tokens"] is None else float(x["output_tokens"])
    return RoutingTable(
        prompt_ids=tuple(a["request_id"] for a in audits),
        prompts=tuple(prompts.get(a["request_id"]) for a in audits),
        models=models,
        quality=quality,
        cost=cost,
        answers=answers,
        input_tokens=tin,
        output_tokens=tout,
        prompt_meta={"created": tuple(a["created"] for a in audits), "served_model": tuple(a["served_model"] for a in audits)},
        source=f"{getattr(store, 'path', '<store>')}#audits/{profile}",
    )
