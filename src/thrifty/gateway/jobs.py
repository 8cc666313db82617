"""Per-request bookkeeping of the chat endpoint: the budget hold (:func:`reserve`) and the admitted
request (:class:`Job`) whose :meth:`~Job.finish` queues its log row with the spend settlement.

SQLite work runs on the log store's writer thread (:meth:`~thrifty.store.logs.LogStore.submit`),
never on the event loop; :meth:`Job.committed` waits for the row without blocking it.
"""

import asyncio
import logging
import time
from concurrent.futures import Future
from typing import Any

from thrifty.errors import BudgetExceeded
from thrifty.gateway.build import Route
from thrifty.serving.trace import Trace
from thrifty.store.logs import RequestRecord, StepRecord
from thrifty.store.refusals import record_refusal
from thrifty.types import ChatRequest

__all__ = ["Job", "reserve"]

log = logging.getLogger("thrifty.gateway")


def _steps(trace: Trace | None) -> tuple[StepRecord, ...]:
    if trace is None:
        return ()
    out = []
    for s in trace.steps:
        a = trace.answer_for(s.tier)
        out.append(
            StepRecord(
                tier=s.tier,
                model=s.model,
                decision=s.decision,
                answer=a.text if a else None,
                score=s.score,
                threshold=s.threshold,
                cost_usd=s.cost_usd,
                latency_s=s.latency_s,
                input_tokens=a.usage.input_tokens if a else None,
                output_tokens=a.usage.output_tokens if a else None,
                error=s.error,
                cache=a.cache if a else None,
                tokens_estimated=a.usage.estimated if a else None,
                shots=_shot_ids(a),
            )
        )
    return tuple(out)


def _shot_ids(answer: Any) -> tuple[str, ...] | None:
    """The ids of the few-shot examples prompt adaptation gave this answer's tier (None: not adapted)."""
    info = answer.adaptation if answer is not None else None
    return tuple(info.get("shot_ids") or ()) if info else None


async def _written(fut: Future) -> Any:
    """The result of a write queued on the log store's writer thread, awaited without blocking the
    loop; cancelling the waiter (the client left) does not cancel the write."""
    return await asyncio.shield(asyncio.wrap_future(fut))


async def reserve(rt: Any, key: str | None, profile: str | None, amount_usd: float) -> Any:
    """The budget hold (BudgetExceeded: 429), taken on the writer thread when a limit applies.

    The check-and-hold stays one ``BEGIN IMMEDIATE`` transaction, atomic across workers; it runs
    after every log row and settlement this process queued before it."""
    ledger = rt.ledger
    if not ledger.holds(key=key, profile=profile):  # no limit: nothing to read or write
        return ledger.reserve(key=key, profile=profile, amount_usd=amount_usd)
    fut = rt.store.submit_serialized(
        ledger.lock_names(key=key, profile=profile), ledger.reserve_in, key=key, profile=profile, amount_usd=amount_usd
    )
    try:
        return await _written(fut)
    except BudgetExceeded as exc:  # counted in the store, so every replica's refusals add up (keys page, /metrics)
        counted = rt.store.submit_in_transaction(record_refusal, key=key, profile=profile, scope=exc.scope or "key", at=time.time())
        try:  # committed before the 429 goes out: a client that saw it finds it counted
            await _written(counted)
        except Exception as failed:  # noqa: BLE001 - the refusal stands; only its count is lost
            log.error("thrifty: could not count a budget refusal: %s", failed)
        raise
    except asyncio.CancelledError:  # never ran, so nothing will settle it: drop the hold once it is taken
        fut.add_done_callback(lambda f: f.cancelled() or f.exception() or ledger.release(f.result()))
        raise


def _report_failed_write(rid: str, fut: Future) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("thrifty: could not write the log row of %s: %s", rid, fut.exception())


class Job:
    """Everything known about one admitted request; :meth:`finish` queues its log row and spend
    settlement and counts it; :meth:`committed` waits for that write."""

    def __init__(self, rt: Any, route: Route, req: ChatRequest, body: dict[str, Any], key_name: str | None, rid: str, t0: float) -> None:
        self.rt, self.route, self.req, self.body, self.key_name, self.rid, self.t0 = rt, route, req, body, key_name, rid, t0
        self.reservation: Any = None
        self.created = time.time()
        self.done = False
        self.written: Future | None = None  # the queued log row + settlement (see finish)
        self.generation: int | None = None  # the route table it runs on, while it runs (enter/leave; see reload)

    def finish(
        self,
        status: int,
        trace: Trace | None,
        *,
        error: str | None = None,
        answer_override: str | None = None,
        cost_override: float | None = None,
        tiers_override: tuple[str, ...] | None = None,
        steps_override: tuple[StepRecord, ...] = (),
    ) -> None:
        if self.done:
            return
        self.done = True
        self.leave()
        c = trace.completion if trace else None
        cost = float(trace.cost_usd) if trace else 0.0
        if cost_override is not None:
            cost = max(cost, cost_override)
        latency = time.perf_counter() - self.t0
        rec = RequestRecord(
            id=self.rid,
            created=self.created,
            model_requested=self.route.model_id,
            request=self.body,
            status=status,
            key_name=self.key_name,
            profile=self.route.budget_name,
            prompt=self.req.prompt_text,
            final_model=(trace.model if trace and c is not None and status == 200 else None),
            tiers_tried=tiers_override if tiers_override is not None else (trace.tiers_tried if trace else ()),
            answer=answer_override if answer_override is not None else (c.text if c else None),
            input_tokens=c.usage.input_tokens if c else None,
            output_tokens=c.usage.output_tokens if c else None,
            cost_usd=cost,
            latency_s=latency,
            error=error,
            stream=self.req.stream,
            steps=_steps(trace) or steps_override,
            cache=c.cache if c is not None and status == 200 else None,
            tokens_estimated=c.usage.estimated if c is not None else None,
        )
        ledger, store = self.rt.ledger, self.rt.store
        also = lambda conn: ledger.settle_in(conn, self.reservation, cost, key=self.key_name, profile=self.route.budget_name)  # noqa: E731
        # sampled audits (issue #12, thrifty.gateway.audits): the pending row joins this transaction
        auditor = getattr(self.rt, "auditor", None)
        pending = auditor.claim(self, status, trace) if auditor is not None else None
        if auditor is not None and pending is not None:
            also = auditor.with_pending(also, pending)
        self.written = store.submit_record(rec, also=also)
        if auditor is not None and pending is not None:
            auditor.attach(pending, self.written)
        self.written.add_done_callback(lambda f: _report_failed_write(self.rid, f))
        self.rt.metrics.observe(
            model=self.route.model_id, status=status, latency_s=latency, trace=trace, baseline_price=self.route.baseline_price
        )

    def enter(self) -> None:
        """Count the job in the current route table's generation (no await since the route was
        looked up): a reload closes that generation's providers only once its count is back to 0."""
        self.generation = self.rt.generation
        self.rt.inflight[self.generation] = self.rt.inflight.get(self.generation, 0) + 1

    def leave(self) -> None:
        if self.generation is not None:
            inflight = self.rt.inflight
            inflight[self.generation] = inflight.get(self.generation, 1) - 1
            self.generation = None

    async def committed(self) -> None:
        """Wait until the row queued by :meth:`finish` is committed (raises what the write raised)."""
        if self.written is not None:
            await _written(self.written)
