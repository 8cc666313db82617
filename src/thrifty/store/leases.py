"""The learner lease per profile (migration ``0015_leader_leases``): one learner across the processes
sharing a store.

Every gateway process with a learning loop calls :func:`acquire_in` every ``hold_lease_s / 3``:
one upsert that takes the row when nobody holds it, when its lease lapsed (the holder stopped
renewing: ``kill -9``, a lost machine), or when the caller names the holder as dead (a process of
the same host that is gone), and otherwise only renews it for its own holder. The row after the
upsert says who leads. ``term`` grows at every change of holder; a leader's writes go through
:func:`fence_in`, a conditional ``UPDATE … WHERE holder = ? AND term = ?``: once another process took
the lease, the old leader's refit is neither recorded nor published.

Why it cannot give two leaders: on SQLite every write transaction is exclusive; on PostgreSQL the
upsert and the fence lock the row, and under READ COMMITTED a waiting ``ON CONFLICT DO UPDATE`` or
``UPDATE`` re-evaluates its ``WHERE`` on the row the other transaction committed — a renewal that
commits first leaves an unexpired lease the takeover's ``WHERE`` refuses, a takeover that commits
first changes ``holder``/``term`` so the old leader's fence updates nothing.

The row also carries the leader's cursor (``refit_at``: the count of done audits its last refit
began on, so a new leader refits at the same cumulative count) and its guardrail state (offset and
floor on artefact version ``guard_version``), which followers apply to the thresholds they serve.
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

__all__ = ["Lease", "acquire_in", "fence_in", "read_lease", "release_in"]


class Lease(NamedTuple):
    profile: str
    holder: str
    term: int
    expires: float
    refit_at: int
    guard_version: int
    guard_offset: float
    guard_floor: float  # -inf: none

    def held_by(self, holder: str, now: float | None = None) -> bool:
        return self.holder == holder and self.expires >= (time.time() if now is None else now)


_COLS = "profile, holder, term, expires, refit_at, guard_version, guard_offset, guard_floor"


def _lease(row: Any) -> Lease:
    floor = row[7]
    return Lease(
        str(row[0]),
        str(row[1]),
        int(row[2]),
        float(row[3]),
        int(row[4]),
        int(row[5]),
        float(row[6]),
        -math.inf if floor is None else float(floor),
    )


def read_lease(conn: Any, profile: str) -> Lease | None:
    row = conn.execute(f"SELECT {_COLS} FROM learner_leases WHERE profile = ?", (profile,)).fetchone()
    return None if row is None else _lease(row)


def acquire_in(
    conn: Any,
    profile: str,
    holder: str,
    *,
    lease_s: float,
    now: float | None = None,
    dead_holder: str | None = None,
    refit_at: int = 0,
) -> Lease:
    """Take or renew ``profile``'s lease for ``holder``; return the row after (``holder`` leads iff
    ``row.holder == holder``). ``dead_holder``: a holder known to be gone, taken over before its
    lease lapses; ``refit_at``: the cursor of a row created now."""
    now = time.time() if now is None else now
    conn.execute(
        f"INSERT INTO learner_leases ({_COLS}, updated) VALUES (?, ?, 1, ?, ?, 0, 0, NULL, ?)"
        " ON CONFLICT (profile) DO UPDATE SET"
        " term = CASE WHEN learner_leases.holder = excluded.holder THEN learner_leases.term ELSE learner_leases.term + 1 END,"
        " holder = excluded.holder, expires = excluded.expires, updated = excluded.updated"
        " WHERE learner_leases.holder = excluded.holder OR learner_leases.expires < ? OR learner_leases.holder = ?",
        (profile, holder, now + lease_s, int(refit_at), now, now, dead_holder or ""),
    )
    lease = read_lease(conn, profile)
    assert lease is not None
    return lease


def fence_in(
    conn: Any,
    profile: str,
    holder: str,
    term: int,
    *,
    lease_s: float,
    now: float | None = None,
    refit_at: int | None = None,
    guard: tuple[int, float, float] | None = None,
) -> bool:
    """Renew the lease and record the cursor and/or the guardrail state (version, offset, floor) —
    only while ``holder`` still holds it in ``term``; False when another process took it."""
    now = time.time() if now is None else now
    sets: list[str] = ["expires = ?", "updated = ?"]
    params: list[Any] = [now + lease_s, now]
    if refit_at is not None:
        sets.append("refit_at = ?")
        params.append(int(refit_at))
    if guard is not None:
        version, offset, floor = guard
        sets += ["guard_version = ?", "guard_offset = ?", "guard_floor = ?"]
        params += [int(version), float(offset), None if math.isinf(floor) else float(floor)]
    cur = conn.execute(
        f"UPDATE learner_leases SET {', '.join(sets)} WHERE profile = ? AND holder = ? AND term = ?", (*params, profile, holder, int(term))
    )
    return bool(cur.rowcount)


def release_in(conn: Any, profile: str, holder: str) -> bool:
    """Let the lease lapse now (a clean shutdown): another process takes it at its next renewal."""
    cur = conn.execute("UPDATE learner_leases SET expires = 0 WHERE profile = ? AND holder = ?", (profile, holder))
    return bool(cur.rowcount)
