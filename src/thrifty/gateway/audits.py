"""Sampled audits in the gateway: after an answer is sent, a background worker gets every tier's
answer to the same request and judges each against the reference (``[profiles.NAME.audit]``).

Guarantees (docs/audits.md):

- the client's answer is never delayed or changed: :meth:`Auditor.claim` only decides (a hash, a
  counter, no I/O) and adds the ``pending`` audit row to the request's own log transaction; the
  audit is queued once that row is committed and runs on the worker task afterwards;
- the in-memory queue is bounded per profile (``queue_size``): a full queue drops the audit (no row)
  and counts it (``thrifty_audits_total{outcome="dropped_queue_full"}``);
- a pending row is on disk before any audit work starts, so after a crash (``kill -9``) the next
  start re-queues it; a reference or judge failure leaves status ``error`` with ``attempts``,
  retried with exponential backoff until ``max_attempts``;
- once the audit budget of the period is spent, audits are skipped (counted) and serving goes on.

After an audit is committed, every callable in ``app.state.audit_listeners`` gets its
:class:`~thrifty.calibration.audit_types.AuditOutcome` (awaited when it returns an awaitable).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import os
import time
from typing import Any, Callable

from thrifty.calibration.audit import AuditFailed, TierAnswer, audit_sampled, rubric_version, run_audit
from thrifty.calibration.audit_report import audit_report
from thrifty.calibration.audit_sampling import AuditSampler, uniform_draw
from thrifty.calibration.audit_types import AuditOutcome, TierVerdict
from thrifty.gateway.audit_calls import answers_at_hand, audit_request, call_tier, dearest_tier, judge_asker, period_key, period_start
from thrifty.gateway.audit_metrics import AuditMetrics
from thrifty.serving.budget import _owner_alive, _process_token  # the ledger's process liveness, shared
from thrifty.store import audits as db

__all__ = ["Auditor"]

log = logging.getLogger("thrifty.gateway")


class Auditor:
    """The gateway's audit queue and its one worker task (:meth:`start` / :meth:`close`)."""

    def __init__(
        self,
        rt: Any,
        listeners: list[Callable[[AuditOutcome], Any]],
        *,
        retry_base_s: float = 1.0,
        sweep_s: float = 2.0,
        refresh_s: float = 2.0,
    ) -> None:
        self.rt, self.listeners = rt, listeners
        self.metrics = AuditMetrics(rt.metrics.registry)
        self.retry_base_s, self.sweep_s, self.refresh_s = retry_base_s, sweep_s, refresh_s
        self._queue: collections.deque[str] = collections.deque()
        self._queued: set[str] = set()
        self._claimed: dict[str, int] = {}  # profile → audits claimed while serving, not yet finished
        self._claims: dict[str, str] = {}  # request id → profile (claimed ones)
        self._exhausted: dict[str, str] = {}  # profile → the budget period whose audit budget is spent
        self._samplers: dict[str, tuple[tuple[float, str], AuditSampler]] = {}  # profile → its non-uniform sampler
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._last_refresh = 0.0
        self._owner = _process_token(os.getpid())  # recorded on each run: a restart knows whose runs died

    # ---- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        self._task = self._loop.create_task(self._run(), name="thrifty-audits")

    async def close(self) -> None:
        """Stop the worker; unfinished audits stay ``pending`` on disk for the next start."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down either way
                pass

    # ---- serving side: on the event loop, no I/O -------------------------------------------------
    def claim(self, job: Any, status: int, trace: Any) -> db.PendingAudit | None:
        """The pending audit of a just-answered request, or None (not audited, budget spent, queue full)."""
        profile = job.route.profile
        a = getattr(profile, "audit", None)
        if a is None or status != 200 or trace is None or trace.completion is None:
            return None
        name = profile.name
        prob: float | None = None
        if getattr(a, "sampling", "uniform") != "uniform":
            # the sans-I/O sampler thrifty simulate runs: probability from the trace's score distance
            key = (a.rate, a.sampling)
            sampler = self._samplers.get(name)
            if sampler is None or sampler[0] != key:
                sampler = self._samplers[name] = (key, AuditSampler(a.rate, a.sampling))
            hit, prob = sampler[1].sample(trace.steps, uniform_draw(job.rid, a.seed))
            prob = prob if sampler[1].weighted else None
            if not hit:
                return None
        elif not audit_sampled(job.rid, a.rate, a.seed):
            return None
        if self._exhausted.get(name) == period_key(a.budget_period, time.time()):
            self.metrics.count(name, "skipped_budget")
            return None
        if self._claimed.get(name, 0) >= a.queue_size:
            self.metrics.count(name, "dropped_queue_full")
            return None
        self._claimed[name] = self._claimed.get(name, 0) + 1
        self._claims[job.rid] = name
        req = job.req
        return db.PendingAudit(
            request_id=job.rid,
            profile=name,
            created=job.created,
            request={
                "messages": [dict(m) for m in req.messages],
                "params": dict(req.params),
                "tools": [dict(t) for t in req.tools] if req.tools else None,
                "tool_choice": req.tool_choice,
            },
            tiers=tuple(profile.tiers),
            reference=a.reference or dearest_tier(tuple(profile.tiers), self.rt.providers),
            judge=a.judge,
            rubric=None if a.match else a.rubric,
            rubric_version=rubric_version(a.judge, a.rubric),
            explore=a.explore,
            served_model=trace.model,
            served_cost_usd=float(trace.cost_usd),
            sample_prob=prob,
        )

    def with_pending(self, also: Callable[[Any], None], pending: db.PendingAudit) -> Callable[[Any], None]:
        """``also`` (the spend settlement) followed by the pending row, in the same transaction."""

        def both(conn: Any) -> None:
            also(conn)
            db.insert_pending_in(conn, pending)

        return both

    def attach(self, pending: db.PendingAudit, written: Any) -> None:
        """Queue the audit once its row is committed (``written``: the log write's future)."""
        loop = self._loop

        def done(fut: Any) -> None:
            ok = not fut.cancelled() and fut.exception() is None
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._committed, pending.request_id, ok)

        written.add_done_callback(done)

    def _committed(self, rid: str, ok: bool) -> None:
        if not ok:
            self._release(rid)
            return
        self.metrics.count(self._claims.get(rid, "?"), "queued")
        self._push(rid)

    def _push(self, rid: str) -> None:
        if rid in self._queued:
            return
        self._queued.add(rid)
        self._queue.append(rid)
        self.metrics.queue_depth.set(len(self._queue))
        if self._wake is not None:
            self._wake.set()

    def _release(self, rid: str) -> None:
        name = self._claims.pop(rid, None)
        if name is not None:
            self._claimed[name] = max(0, self._claimed.get(name, 1) - 1)

    # ---- the worker --------------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            await self._sweep(startup=True)
        except Exception:  # noqa: BLE001 - the periodic sweep tries again
            log.exception("thrifty: could not re-queue the pending audits")
        await self._refresh(force=True)
        while True:
            rid = await self._next()
            if rid is None:
                continue
            gen = self.rt.generation  # providers of this generation stay open while the audit runs
            self.rt.inflight[gen] = self.rt.inflight.get(gen, 0) + 1
            try:
                await self._audit(rid)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bug in one audit must not stop the others
                log.exception("thrifty: audit of %s crashed; it stays queued on disk", rid)
            finally:
                self.rt.inflight[gen] = self.rt.inflight.get(gen, 1) - 1
                self._queued.discard(rid)
                self._release(rid)
                self.metrics.queue_depth.set(len(self._queue))
            await self._refresh(force=not self._queue)

    async def _next(self) -> str | None:
        if not self._queue:
            assert self._wake is not None
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.sweep_s)
            except asyncio.TimeoutError:
                try:
                    await self._sweep()
                except Exception:  # noqa: BLE001 - e.g. the database is locked: next time
                    log.exception("thrifty: audit sweep failed")
            if not self._queue:
                return None
        return self._queue.popleft()

    async def _sweep(self, *, startup: bool = False) -> None:
        """Queue what is due on disk: pending audits (left by a crash or a restart) and errors whose
        backoff has passed; mark pending ones interrupted too often as errors."""
        audited = {n: p.audit for n, p in self.rt.settings.profiles.items() if p.audit is not None}
        if not audited and not startup:
            return
        now = time.time()
        for name in list(self._exhausted):  # a new period (or a raised budget) lets audits run again
            a = audited.get(name)
            if a is None or a.budget_usd is None or await self._spent(name, a, now) < a.budget_usd:
                self._exhausted.pop(name, None)
        max_attempts = max((a.max_attempts for a in audited.values()), default=1)
        for row in await asyncio.to_thread(db.due_audits, self.rt.store, max_attempts=max_attempts):
            rid, a = row["request_id"], audited.get(row["profile"])
            if rid in self._queued:
                continue
            if a is None:
                await self._write(db.skip_in, rid, "the profile is no longer audited", now=now)
                continue
            if row["status"] == "pending" and row["attempts"] and row["owner"] != self._owner and _owner_alive(row["owner"] or ""):
                continue  # another live worker process is running it
            if row["attempts"] >= a.max_attempts:
                if row["status"] == "pending":
                    await self._write(db.fail_in, rid, f"interrupted {row['attempts']} times", judge_cost_usd=0.0, now=now)
                continue
            if row["status"] == "error" and now < row["updated"] + min(60.0, self.retry_base_s * 2 ** (row["attempts"] - 1)):
                continue
            if startup:
                self.metrics.count(row["profile"], "requeued")
            self._push(rid)

    async def _write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.shield(asyncio.wrap_future(self.rt.store.submit_in_transaction(fn, *args, **kwargs)))

    async def _spent(self, name: str, a: Any, now: float) -> float:
        return await asyncio.to_thread(db.audit_spent, self.rt.store, name, period_start(a.budget_period, now))

    async def _refresh(self, *, force: bool) -> None:
        """Recompute the report's gauges (off the event loop), at most every ``refresh_s`` unless forced."""
        if not force and time.monotonic() - self._last_refresh < self.refresh_s:
            return
        self._last_refresh = time.monotonic()

        try:
            self.metrics.publish(await asyncio.to_thread(audit_report, self.rt.store))
        except Exception:  # noqa: BLE001 - metrics must not stop audits
            log.exception("thrifty: could not refresh the audit metrics")

    async def _audit(self, rid: str) -> None:
        row = await asyncio.to_thread(db.load_audit, self.rt.store, rid)
        if row is None or row["status"] not in ("pending", "error"):
            return
        if row["status"] == "pending" and row["attempts"] and row["owner"] != self._owner and _owner_alive(row["owner"] or ""):
            return  # a sweep queued it here before another live worker process started it: it runs there
        name, now = row["profile"], time.time()
        profile = self.rt.settings.profiles.get(name)
        a = getattr(profile, "audit", None)
        if a is None:
            await self._write(db.skip_in, rid, "the profile is no longer audited", now=now)
            return
        if a.budget_usd is not None:
            spent = await self._spent(name, a, now)
            if spent >= a.budget_usd:
                await self._write(
                    db.skip_in, rid, f"audit budget exhausted: ${spent:.6f} of ${a.budget_usd:g} ({a.budget_period})", now=now
                )
                self._exhausted[name] = period_key(a.budget_period, now)
                self.metrics.count(name, "skipped_budget")
                return
        if await self._write(db.start_in, rid, now, owner=self._owner, attempts=row["attempts"]) == 0:
            return  # another worker process took it
        tiers, reference = tuple(row["tiers"]), row["reference"]
        have, request = answers_at_hand(row), audit_request(row)
        paid = 0.0

        async def saved(ans: TierAnswer) -> None:
            nonlocal paid
            paid += ans.cost_usd
            await self._write(db.save_answer_in, rid, ans.row(), audit_cost_usd=ans.cost_usd)

        try:
            result = await run_audit(
                tiers=tiers,
                reference=reference,
                served_model=row["served_model"],
                explore=row["explore"],
                judge=row["judge"],
                rubric=row["rubric"],
                prompt=row["prompt"] or "",
                have=have,
                call=lambda m: call_tier(self.rt, name, m, request),
                saved=saved,
                ask=None if a.match else judge_asker(self.rt, a.judge),
                choices=a.choices,
            )
        except Exception as exc:  # noqa: BLE001 - the reference, the judge or a bug: recorded, retried later
            judge_paid = getattr(exc, "cost_usd", 0.0)
            await self._write(
                db.fail_in,
                rid,
                f"{exc}" if isinstance(exc, AuditFailed) else f"{type(exc).__name__}: {exc}",
                judge_cost_usd=judge_paid,
                now=time.time(),
            )
            self.metrics.count(name, "error")
            self.metrics.cost.labels(name).inc(paid + judge_paid)
            log.warning("thrifty: audit of %s failed (attempt %d of %d): %s", rid, row["attempts"] + 1, a.max_attempts, exc)
            return
        await self._write(db.finish_in, rid, result.rows, judge_cost_usd=result.judge_cost_usd, now=time.time())
        self.metrics.count(name, "done")
        if a.budget_usd is not None and await self._spent(name, a, now) >= a.budget_usd:
            self._exhausted[name] = period_key(a.budget_period, now)  # stop queueing new ones now
        self.metrics.cost.labels(name).inc(paid + result.judge_cost_usd)
        answers = {
            x["model"]: TierVerdict(
                x["model"], x["quality"], x["at_least_as_good"], float(x["cost_usd"] or 0.0), x["answer"], bool(x["reused"])
            )
            for x in result.rows
        }
        audit_cost = sum(v.cost_usd for v in answers.values() if not v.reused) + result.judge_cost_usd
        outcome = AuditOutcome(
            rid,
            name,
            float(row["created"]),
            row["served_model"],
            float(row["served_cost_usd"]),
            reference,
            answers,
            audit_cost,
            row.get("sample_prob"),
        )
        await self._notify(outcome)

    async def _notify(self, outcome: AuditOutcome) -> None:
        for listener in list(self.listeners):
            try:
                result = listener(outcome)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - a listener's failure is its own
                log.exception("thrifty: audit listener %r failed", listener)
