"""Done audits read back as the learner's input: every process's audits of a profile, in the order
they were finished (``updated``, then request id), with each tier's judged answer and the prompt.

The leading learner (:mod:`thrifty.gateway.leadership`) reads all of them when it takes the lease
and then, every few seconds, the ones finished since its cursor (``updated_since``: the newest
``updated`` it has seen minus a lag, so an audit whose transaction committed a little after a later
one is still found; the caller drops the ones it has already fed).
"""

from __future__ import annotations

from typing import Any, Sequence

from thrifty.store.audits import with_answers

__all__ = ["done_audit_heads", "done_audits"]


def _where(
    profile: str, updated_since: float | None, exclude_owner: str | None, request_ids: Sequence[str] | None
) -> tuple[str, list[Any]]:
    where: list[str] = ["a.profile = ?", "a.status = 'done'"]
    params: list[Any] = [profile]
    if updated_since is not None:
        where.append("a.updated >= ?")
        params.append(float(updated_since))
    if exclude_owner is not None:
        where.append("(a.owner IS NULL OR a.owner <> ?)")
        params.append(exclude_owner)
    if request_ids is not None:
        where.append(f"a.request_id IN ({', '.join('?' * len(request_ids))})")
        params.extend(request_ids)
    return " AND ".join(where), params


def done_audit_heads(
    store: Any, profile: str, *, updated_since: float | None = None, exclude_owner: str | None = None
) -> list[tuple[str, float]]:
    """(request_id, updated) of ``profile``'s done audits: the cheap first look of a feed tick, so
    the rows already fed are not read again with their prompts and answers."""
    sql_where, params = _where(profile, updated_since, exclude_owner, None)
    rows = store.iter_rows(f"SELECT a.request_id, a.updated FROM audits a WHERE {sql_where} ORDER BY a.updated, a.request_id", params)
    return [(r["request_id"], float(r["updated"])) for r in rows]


def done_audits(
    store: Any,
    profile: str,
    *,
    updated_since: float | None = None,
    exclude_owner: str | None = None,
    request_ids: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """``profile``'s done audits (oldest finish first): request_id, created, updated, owner,
    served_model, served_cost_usd, reference, audit_cost_usd, sample_prob, prompt and ``answers`` {model: row}.
    ``request_ids``: only these (at most a few hundred; the caller chunks)."""
    if request_ids is not None and not request_ids:
        return []
    sql_where, params = _where(profile, updated_since, exclude_owner, request_ids)
    audits = store.iter_rows(
        "SELECT a.request_id, a.created, a.updated, a.owner, a.served_model, a.served_cost_usd, a.reference, a.audit_cost_usd, a.sample_prob,"
        f" r.prompt FROM audits a LEFT JOIN requests r ON r.id = a.request_id WHERE {sql_where} ORDER BY a.updated, a.request_id",
        params,
    )
    if not audits:
        return []
    answers = store.iter_rows(
        "SELECT x.request_id, x.model, x.quality, x.at_least_as_good, x.cost_usd, x.answer, x.reused"
        f" FROM audit_answers x JOIN audits a ON a.request_id = x.request_id WHERE {sql_where} ORDER BY x.request_id, x.tier, x.model",
        params,
    )
    return with_answers(audits, answers)
