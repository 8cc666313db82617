"""Model calls in batches, for an :mod:`executor <thrifty.calibration.executors>` to spread over workers.

A batch is a list of ``(tag, model, ChatRequest)``; :func:`answer_batch` answers it on the worker
with the same retry rules as a local run (:func:`complete_with_retries`), ``job.concurrency`` calls
at a time, and returns one :data:`Outcome` per call — the completion, or the error as
``"Type: message"`` (what a local run records in ``errors.jsonl``). Providers are built on the worker
from ``job.build`` (a picklable factory, e.g. ``resolve_providers`` with the driver's parsed settings,
so no config file is needed there; secrets are read from the worker's environment as usual) once per
run and worker process, and driven on one event loop that lives as long as the process, so their
connection pools are reused across batches.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from thrifty.policy.cascade import CascadePolicy
from thrifty.serving.engine import Engine
from thrifty.types import ChatRequest, Completion, Policy, Provider

__all__ = ["Call", "CallJob", "Outcome", "answer_batch", "batched", "complete_with_retries"]

Call = tuple[Any, str, ChatRequest]  # (tag, model, request)
Outcome = tuple[Any, "Completion | None", "str | None"]  # (tag, completion, error)


async def complete_with_retries(
    provider: Provider, request: ChatRequest, *, retries: int = 3, backoff_s: float = 0.5, deadline_s: float = 3600.0
) -> Completion:
    """``provider.complete(request)`` with the engine's retry rules (exponential backoff honouring
    ``retry_after``, foreign errors translated); raises :class:`ProviderError` when it gives up."""

    name = getattr(provider, "name", "provider")
    policy = cast(
        Policy, CascadePolicy([name], [], None)
    )  # CascadePolicy.tiers is a tuple; types.Policy declares a mutable Sequence attribute
    engine = Engine(policy, {0: provider}, deadline_s=deadline_s, max_retries=retries, backoff_s=backoff_s)
    trace = await engine.run(request)
    assert trace.completion is not None
    return trace.completion


@dataclass(frozen=True)
class CallJob:
    """What a worker needs for a run's batches: how to build the providers, and the run options."""

    build: Callable[[], Mapping[str, Provider]]
    retries: int = 3
    concurrency: int = 4
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def batched(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


async def call_one(provider: Provider, tag: Any, request: ChatRequest, retries: int) -> Outcome:
    """One call as an :data:`Outcome`: never raises for a provider failure (it is the outcome)."""
    t0 = time.perf_counter()
    try:
        comp = await complete_with_retries(provider, request, retries=retries)
    except Exception as exc:  # noqa: BLE001 - recorded by the driver, retried on the next run
        return tag, None, f"{type(exc).__name__}: {exc}"
    if not comp.latency_s:
        comp = replace(comp, latency_s=time.perf_counter() - t0)
    return tag, comp, None


# ---- worker side -----------------------------------------------------------------------------------
_LOCK = threading.Lock()
_LOOP: asyncio.AbstractEventLoop | None = None
_BUILT: dict[str, Mapping[str, Provider]] = {}


def _loop() -> asyncio.AbstractEventLoop:
    global _LOOP
    with _LOCK:
        if _LOOP is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="thrifty-calls", daemon=True).start()
            _LOOP = loop
        return _LOOP


def _providers(job: CallJob) -> Mapping[str, Provider]:
    with _LOCK:
        if job.run_id not in _BUILT:
            _BUILT.clear()  # one run at a time per worker process: drop an earlier run's providers
            _BUILT[job.run_id] = job.build()
        return _BUILT[job.run_id]


def _portable(comp: Completion) -> Completion:
    """The completion without the provider's raw reply (only a student's confidence is used)."""
    raw = comp.raw if isinstance(comp.raw, Mapping) and "confidence" in comp.raw else None
    return replace(comp, raw={"confidence": raw["confidence"]} if raw else None)


def answer_batch(job: CallJob, batch: Sequence[Call]) -> list[Outcome]:
    """Answer every call of ``batch`` (on a worker), ``job.concurrency`` at a time."""
    providers = _providers(job)

    async def run() -> list[Outcome]:
        for model in {m for _, m, _ in batch}:  # load weights now, so no answer's latency includes it
            warm = getattr(providers[model], "warm", None)
            if warm is not None:
                await warm()
        sem = asyncio.Semaphore(job.concurrency)

        async def one(tag: Any, model: str, request: ChatRequest) -> Outcome:
            async with sem:
                tag, comp, err = await call_one(providers[model], tag, request, job.retries)
            return tag, (_portable(comp) if comp is not None else None), err

        return list(await asyncio.gather(*(one(*call) for call in batch)))

    return asyncio.run_coroutine_threadsafe(run(), _loop()).result()
