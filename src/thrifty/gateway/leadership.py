"""One learner per profile across every process on the store, learning from every process's audits.

With ``thrifty serve --workers N`` or several replicas on one store, each process has a
:class:`~thrifty.gateway.learning.ProfileLearner` per learning profile, but only the one holding the
profile's lease (:mod:`thrifty.store.leases`) learns; the others follow what it publishes.

- **The lease.** Every ``min(hold_lease_s / 3, artefact_poll_s)`` each process takes or renews the
  lease (one upsert). The leader renews it; a leader that dies (``kill -9``, a lost machine) stops
  renewing and another process takes it once it lapses, within ``hold_lease_s`` (at once when the
  dead leader was a process of the same host). A leader's refit is recorded and published only
  through a write fenced by its term (:func:`~thrifty.store.leases.fence_in`): an old leader that
  lost the lease mid-refit publishes nothing.
- **Its input.** The leader's loop sees the same :class:`~thrifty.calibration.audit_types.AuditOutcome`
  objects as before, from two sources, deduplicated by request id on the learner's one worker
  thread: its own process's audits from the audit worker (``app.state.audit_listeners``, at once), and
  every other process's done audits read back from the store (:mod:`thrifty.store.audit_feed`) at
  each tick, in the order they were finished.
- **Taking over** (also a single process at start): the new leader loads *every* done audit of the
  profile in the store into its loop — the refit fits on all of them, as a single process that never
  restarted would — and counts ``every`` from the lease row's cursor ``refit_at`` (the audits the
  last refit began on), so the next refit comes at the same cumulative count whoever leads. The
  guardrail's offset and floor come back from the row too; its window starts empty.
- **Followers** do not learn: audits their own worker runs are dropped by their learner (the leader
  reads them from the store). They serve the version row (:mod:`thrifty.gateway.replica_sync`, as
  before) with the leader's guardrail offset, read from the lease row at each tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from typing import Any

from thrifty.calibration.audit_types import AuditOutcome, TierVerdict
from thrifty.serving.budget import _owner_alive, _process_token  # the ledger's process identity and liveness, shared
from thrifty.store import leases
from thrifty.store.audit_feed import done_audit_heads, done_audits

__all__ = ["LearnerLease", "Leadership", "outcome_of_row", "start_leadership"]

log = logging.getLogger("thrifty.learning")

#: how far back (seconds of ``updated``) each read of the store looks again: an audit whose
#: transaction committed up to this long after a later-stamped one is still fed
FEED_LAG_S = 60.0
FEED_CHUNK = 500  # audits read in full per query (bound parameters stay well under every engine's limit)


def outcome_of_row(profile: str, row: dict[str, Any]) -> AuditOutcome:
    """The :class:`AuditOutcome` of a done audit row read back (:func:`~thrifty.store.audit_feed.done_audits`)."""
    answers = {
        m: TierVerdict(m, x["quality"], x["at_least_as_good"], float(x["cost_usd"] or 0.0), x["answer"], bool(x["reused"]))
        for m, x in row["answers"].items()
    }
    return AuditOutcome(
        row["request_id"],
        profile,
        float(row["created"]),
        row["served_model"],
        float(row["served_cost_usd"] or 0.0),
        row["reference"],
        answers,
        float(row["audit_cost_usd"] or 0.0),
        None if row.get("sample_prob") is None else float(row["sample_prob"]),  # the refit weighs it by 1/p
    )


class LearnerLease:
    """One learner's side of its profile's lease. The ``_…`` steps run on the learner's worker thread
    (the only thread that touches its loop); :meth:`tick` runs on the event loop."""

    def __init__(self, learner: Any, holder: str, lease_s: float) -> None:
        self.learner, self.holder, self.lease_s = learner, holder, lease_s
        self.profile: str = learner.profile.name
        self.store = learner.rt.store
        self.granted: int | None = None  # event loop: the term whose takeover was queued
        self.term: int | None = None  # worker thread: the term the loop leads in (None: following)
        self.seen: dict[str, float] = {}  # request id → when it was fed (dedup of the two sources)
        self.high = -math.inf  # the newest ``updated`` read from the store
        self.row: leases.Lease | None = None
        self._pending: set[str] = set()  # worker steps queued and not run yet (no pile-up behind a refit)

    @property
    def leading(self) -> bool:
        return self.term is not None

    def status(self) -> dict[str, Any]:
        """For ``/healthz``: does this process lead the profile's learning, in which term, and who does."""
        row = self.row
        return {"leader": self.granted is not None, "term": row.term if row else None, "holder": row.holder if row else None}

    # ---- hooks the learner calls (worker thread) ------------------------------------------------------
    def accept(self, outcome: AuditOutcome) -> bool:
        """Learn from this audit of this process? Only while leading, and once."""
        if self.term is None or outcome.request_id in self.seen:
            return False
        self.seen[outcome.request_id] = time.time()
        return True

    def fence_in(self, conn: Any, *, refit_at: int | None = None, guard_version: int | None = None) -> bool:
        """Inside the learner's write: renew the lease and record the cursor and guardrail state, if still leading."""
        if self.term is None:
            return False
        g = self.learner.loop.guardrail
        version = (self.learner.store_version or 0) if guard_version is None else guard_version
        return leases.fence_in(
            conn, self.profile, self.holder, self.term, lease_s=self.lease_s, refit_at=refit_at, guard=(version, g.offset, g.floor)
        )

    def save_guard(self) -> None:
        """After a guardrail move (or a followed version): the followers apply this offset."""
        if self.term is not None and not self.store.run_in_transaction(lambda conn: self.fence_in(conn)):
            log.warning("thrifty.learning: profile %s: lost the lease; the guardrail move stays local", self.profile)

    # ---- the tick (event loop) --------------------------------------------------------------------------
    def _acquire(self) -> leases.Lease:
        def take(conn: Any) -> leases.Lease:
            start = 0
            if leases.read_lease(conn, self.profile) is None:  # the first lease: count `every` from the audits there now
                start = int(
                    conn.execute("SELECT COUNT(*) FROM audits WHERE profile = ? AND status = 'done'", (self.profile,)).fetchone()[0]
                )
            row = leases.acquire_in(conn, self.profile, self.holder, lease_s=self.lease_s, refit_at=start)
            if row.holder != self.holder and not _owner_alive(row.holder):  # a dead process of this host: take it now
                row = leases.acquire_in(conn, self.profile, self.holder, lease_s=self.lease_s, dead_holder=row.holder)
            return row

        return self.store.run_in_transaction(take)

    async def tick(self) -> None:
        row = await asyncio.to_thread(self._acquire)
        self.row = row
        if row.holder == self.holder:
            if self.granted != row.term:
                self.granted = row.term
                self._submit("take_over", self._take_over, row)
            else:
                self._submit("feed", self._feed)
        else:
            if self.granted is not None:
                self.granted = None
                self._submit("step_down", self._step_down, row)
            self._submit("guard", self._follow_guard, row)

    def _submit(self, name: str, fn: Any, *args: Any) -> None:
        if name in self._pending:
            return
        self._pending.add(name)

        def run() -> None:
            self._pending.discard(name)
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - the next tick tries again; serving goes on
                log.exception("thrifty.learning: profile %s: %s failed", self.profile, name)

        self.learner.executor.submit(run)

    # ---- worker-thread steps -------------------------------------------------------------------------
    def _take_over(self, row: leases.Lease) -> None:
        learner, loop = self.learner, self.learner.loop
        try:
            rows = done_audits(self.store, self.profile)
        except Exception:
            self.granted = None  # the next tick queues the takeover again
            raise
        loop.audits = [(outcome_of_row(self.profile, r), r["prompt"]) for r in rows]
        loop.since_refit = max(0, len(rows) - row.refit_at)
        self.seen = {r["request_id"]: time.time() for r in rows}
        self.high = max((float(r["updated"]) for r in rows), default=-math.inf)
        g = loop.guardrail
        before = (g.offset, g.floor)
        g.reset()
        if row.guard_version == (learner.store_version or 0):
            g.offset, g.floor = row.guard_offset, row.guard_floor
        self.term = row.term
        log.warning(
            "thrifty.learning: profile %s: this process leads the learning (term %d): %d audits in the store, %d since the last refit",
            self.profile, row.term, len(rows), loop.since_refit,
        )  # fmt: skip
        if (g.offset, g.floor) != before:
            learner._install()
        learner.refit_if_due()

    def _feed(self) -> None:
        if self.term is None:
            return
        since = self.high - FEED_LAG_S if math.isfinite(self.high) else None
        heads = done_audit_heads(self.store, self.profile, updated_since=since, exclude_owner=self.holder)
        self.high = max([self.high, *(updated for _, updated in heads)])
        new = [rid for rid, _ in heads if rid not in self.seen]  # only these are read in full
        for i in range(0, len(new), FEED_CHUNK):
            for r in done_audits(self.store, self.profile, request_ids=new[i : i + FEED_CHUNK]):
                if r["request_id"] in self.seen or self.term is None:
                    continue
                self.seen[r["request_id"]] = time.time()
                self.learner.handle(outcome_of_row(self.profile, r), r["prompt"])
        if len(self.seen) > 10_000:  # forget ids fed long before the look-back window
            horizon = time.time() - 4 * FEED_LAG_S
            self.seen = {k: t for k, t in self.seen.items() if t >= horizon}

    def _step_down(self, row: leases.Lease) -> None:
        if self.term is None:
            return
        self.term = None
        self.learner.loop.audits = []  # the leader holds them; a new term reloads them from the store
        self.seen.clear()
        log.warning("thrifty.learning: profile %s: lost the lease to %s (term %d); following", self.profile, row.holder, row.term)

    def _follow_guard(self, row: leases.Lease) -> None:
        if self.term is not None or row.guard_version != (self.learner.store_version or 0):
            return
        g = self.learner.loop.guardrail
        if (g.offset, g.floor) == (row.guard_offset, row.guard_floor):
            return
        g.offset, g.floor = row.guard_offset, row.guard_floor
        log.info("thrifty.learning: profile %s: the leader's guardrail offset %+.3f now applies here", self.profile, g.offset)
        self.learner._install()

    def release(self) -> None:
        with contextlib.suppress(Exception):
            self.store.run_in_transaction(leases.release_in, self.profile, self.holder)


class Leadership:
    """Every learner's lease in this process, ticked by one task."""

    def __init__(self, learners: list[Any], settings: Any) -> None:
        server = settings.server
        holder = _process_token(os.getpid())
        self.leases = [LearnerLease(learner, holder, float(server.hold_lease_s)) for learner in learners]
        for lease in self.leases:
            lease.learner.lease = lease
        poll = float(server.artefact_poll_s) if server.artefact_poll_s > 0 else 5.0
        self.every_s = max(0.2, min(float(server.hold_lease_s) / 3.0, poll))
        self.task: asyncio.Task[None] | None = None

    async def tick(self) -> None:
        for lease in self.leases:
            try:
                await lease.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a lost database: keep serving, try again
                log.error("thrifty.learning: profile %s: the lease could not be renewed (retrying): %s", lease.profile, exc)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            await self.tick()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        for lease in self.leases:
            if lease.granted is not None:
                await asyncio.to_thread(lease.release)


async def start_leadership(learners: list[Any], settings: Any) -> Leadership:
    """Take or follow each learner's lease now (so the first process up leads), then tick in the background."""
    leadership = Leadership(learners, settings)
    await leadership.tick()
    if leadership.leases:
        leadership.task = asyncio.get_running_loop().create_task(leadership._run(), name="thrifty-learner-leases")
    return leadership
