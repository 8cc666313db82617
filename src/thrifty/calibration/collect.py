"""Collect answers of several models on a prompt set into a routing-table folder (resumable).

``collect()`` sends every (prompt, model) pair not yet in the output folder to its provider,
``concurrency`` calls at a time, retrying retryable provider errors with exponential backoff
(honouring ``retry_after``). Each answer is appended to ``outcomes.jsonl`` and fsynced as soon as it
arrives (see :mod:`thrifty.data.outcomes_log`), so a killed run loses at most the calls in flight and a
rerun skips every pair already answered. Cost is the provider's reported cost, or
``tokens × price`` when prices are given for the model. With a ``grader`` the answers are graded
against the gold column as they arrive (``quality`` is written inline); otherwise run
``thrifty label`` afterwards.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from thrifty.calibration.executors import Executor, LocalExecutor
from thrifty.calibration.remote_calls import CallJob, answer_batch, batched, call_one, complete_with_retries
from thrifty.calibration.student import StudentProvider
from thrifty.config.settings import ProviderSettings, config_path, load_settings
from thrifty.data.outcomes_log import OutcomeLog
from thrifty.data.prompts_file import PromptItem, build_request
from thrifty.errors import ConfigError, DataError
from thrifty.serving.local import GEMMA3, NOTIONAL_PRICES, SMOLLM2
from thrifty.serving.profiles import build_profile, build_provider, build_providers
from thrifty.types import Completion, Provider

__all__ = ["CollectResult", "collect", "complete_with_retries", "prompt_rows", "resolve_providers", "builtin_local", "BUILTIN_LOCAL"]

BUILTIN_LOCAL = ("smollm2", "gemma3-270m")


@dataclass
class CollectResult:
    """What one run did: pairs planned, skipped (already done), answered now, failed."""

    total: int
    skipped: int
    answered: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    per_model: dict[str, dict[str, float]] = field(default_factory=dict)


def prompt_rows(items: Sequence[PromptItem]) -> list[dict[str, Any]]:
    """``prompts.jsonl`` rows: id, the bare prompt text, prefix/template/system when set, metadata."""
    rows = []
    for it in items:
        row: dict[str, Any] = {"prompt_id": it.prompt_id, "instruction": it.text}
        for k in ("prefix", "template", "system"):
            if getattr(it, k):
                row[k] = getattr(it, k)
        if it.messages is not None:
            row["messages"] = list(it.messages)
        row.update(it.meta)
        rows.append(row)
    return rows


def resolve_providers(names: Sequence[str], config: str | None = None, *, settings: Any = None) -> dict[str, Provider]:
    """Providers for model names: config providers or profiles (``NAME`` or ``thrifty/NAME``),
    ``student:PATH`` (a trained student artefact), or the built-in local models ``smollm2`` and
    ``gemma3-270m``. ``settings`` (already parsed) replaces reading ``config`` — how a Ray worker
    builds the driver's providers without the config file."""

    providers: dict[str, Any] | None = None
    out: dict[str, Provider] = {}
    for name in names:
        if name in out:
            raise ConfigError(f"model {name!r} is listed twice", key="--models", fix="list each model once")
        if name.startswith("student:"):
            out[name] = StudentProvider.load(name.split(":", 1)[1], name=name)
            continue
        if settings is None:
            settings = load_settings(config)
        profile = name.removeprefix("thrifty/")
        if name in settings.providers:
            out[name] = build_provider(settings.providers[name])
        elif profile in settings.profiles:
            if providers is None:  # one object per provider, shared by every profile that uses it
                providers = build_providers(settings)
            out[name] = build_profile(settings, settings.profiles[profile], providers).engine
        elif name in BUILTIN_LOCAL:
            out[name] = builtin_local(name)
        else:
            known = [*settings.providers, *settings.profiles, *BUILTIN_LOCAL, "student:PATH"]
            raise ConfigError(f"unknown model or profile {name!r}", key="--models", fix=f"use one of: {', '.join(known)}")
    return out


def provider_factory(names: Sequence[str], config: str | None = None) -> Callable[[], dict[str, Provider]]:
    """A picklable zero-argument factory of ``resolve_providers(names, config)`` for cluster workers:
    the config is parsed here (paths in it made absolute) and travels with the factory, and
    ``student:PATH`` paths are made absolute, so a worker in another working directory builds the
    same providers. Secrets (``api_key_env``) are read from each worker's environment."""
    from functools import partial

    path = config_path(config)
    settings = load_settings(path.resolve() if path is not None else None)
    fixed = [f"student:{Path(n.split(':', 1)[1]).resolve()}" if n.startswith("student:") else n for n in names]
    return partial(_renamed_providers, tuple(fixed), tuple(names), settings)


def _renamed_providers(names: tuple[str, ...], as_names: tuple[str, ...], settings: Any) -> dict[str, Provider]:
    built = resolve_providers(names, settings=settings)
    return {alias: built[n] for n, alias in zip(names, as_names)}


def builtin_local(name: str) -> Provider:
    """A built-in local GGUF model on 1 thread, built like any ``[providers.NAME]`` of kind ``llamacpp``
    (:func:`thrifty.serving.profiles.build_provider`): ``smollm2`` (SmolLM2-135M-Instruct through its chat
    template) or ``gemma3-270m`` (the Gemma-3-270M *base* model as raw text completion: the messages'
    text is the prompt verbatim, so a few-shot prefix ending in ``A:`` is continued as written).
    Both carry the embedded default's notional prices (:data:`thrifty.serving.local.NOTIONAL_PRICES`), so a
    collected table has the same costs the gateway reports; ``--price`` overrides them."""

    how: dict[str, dict[str, Any]] = {
        "smollm2": {"model_path": "builtin:smollm2", "mode": "chat"},
        "gemma3-270m": {"model_path": "builtin:gemma3", "mode": "raw", "options": {"stop": ("\n\n\n",)}},
    }
    if name not in how:
        raise ConfigError(f"unknown built-in model {name!r}", key="--models", fix=f"use one of: {', '.join(BUILTIN_LOCAL)}")
    price_in, price_out = NOTIONAL_PRICES[{"smollm2": SMOLLM2, "gemma3-270m": GEMMA3}[name]]
    return build_provider(
        ProviderSettings(name, "llamacpp", name, max_tokens=256, price_input=price_in, price_output=price_out, **how[name])
    )


def check_run_options(concurrency: int, retries: int) -> None:
    """Raise a ConfigError for a run option no run can use (``concurrency`` < 1, ``retries`` < 0)."""
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, got {concurrency!r}", key="--concurrency", fix="pass --concurrency 1 or more")
    if not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries must be 0 or more, got {retries!r}", key="--retries", fix="pass --retries 0 or more")


def _row(item: PromptItem, model: str, comp: Completion, prices: tuple[float | None, float | None] | None) -> dict[str, Any]:
    tin, tout = int(comp.usage.input_tokens), int(comp.usage.output_tokens)
    cost = float(comp.cost_usd or 0.0)
    if prices and prices[0] is not None and prices[1] is not None:
        cost = (tin * prices[0] + tout * prices[1]) / 1e6
    row: dict[str, Any] = {
        "prompt_id": item.prompt_id,
        "model": model,
        "output": comp.text,
        "input_tokens": tin,
        "output_tokens": tout,
        "cost_usd": cost,
        "latency_s": round(float(comp.latency_s), 4),
        "finish_reason": comp.finish_reason,
        "served_by": comp.model,
        "collected_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    raw = comp.raw if isinstance(comp.raw, Mapping) else None
    if raw and "confidence" in raw:  # a student tier reports its confidence
        row["confidence"] = float(raw["confidence"])
    return row


class _Recorder:
    """The driver's side of a run: turns each outcome into an ``outcomes.jsonl`` row (or an
    ``errors.jsonl`` record) the moment it arrives — the same for every executor."""

    def __init__(
        self,
        items: Sequence[PromptItem],
        log: OutcomeLog,
        prices: Mapping[str, tuple[float | None, float | None]],
        grader: Any,
        gold: str,
        result: CollectResult,
        on_done: Callable[[str], None],
    ) -> None:
        self.items, self.log, self.prices, self.grader, self.gold = items, log, prices, grader, gold
        self.result, self.on_done = result, on_done

    def __call__(self, i: int, model: str, comp: Completion | None, error: str | None) -> None:
        item, result = self.items[i], self.result
        if comp is None:
            result.failed += 1
            if len(result.errors) < 20:
                result.errors.append(f"{item.prompt_id} × {model}: {error}")
            self.log.append_error(
                {
                    "prompt_id": item.prompt_id,
                    "model": model,
                    "error": error,
                    "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                }
            )
            self.on_done(model)
            return
        row = _row(item, model, comp, self.prices.get(model))
        if self.grader is not None:
            row.update(self.grader.grade_row(comp.text, item.meta.get(self.gold), where=f"prompt {item.prompt_id!r}"))
        self.log.append(row)
        result.answered += 1
        stats = result.per_model.setdefault(model, {"n": 0, "cost_usd": 0.0, "latency_s": 0.0})
        stats["n"] += 1
        stats["cost_usd"] += row["cost_usd"]
        stats["latency_s"] += row["latency_s"]
        self.on_done(model)


async def _run(
    items: Sequence[PromptItem],
    providers: Mapping[str, Provider],
    todo: list[tuple[int, str]],
    params: Mapping[str, Any],
    concurrency: int,
    retries: int,
    record: _Recorder,
) -> None:
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for pair in todo:
        queue.put_nowait(pair)

    async def worker() -> None:
        while True:
            try:
                i, model = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            _, comp, error = await call_one(providers[model], i, build_request(items[i], model, params), retries)
            record(i, model, comp, error)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _run_on(
    executor: Executor,
    items: Sequence[PromptItem],
    build: Callable[[], Mapping[str, Provider]],
    todo: list[tuple[int, str]],
    params: Mapping[str, Any],
    concurrency: int,
    retries: int,
    record: _Recorder,
) -> None:
    """The pairs in batches of ``4 × concurrency`` on ``executor``'s workers (each answering
    ``concurrency`` at a time); this process records every outcome as its batch comes back."""
    job = CallJob(build, retries=retries, concurrency=concurrency)
    calls = [((i, m), m, build_request(items[i], m, params)) for i, m in todo]
    for _, outcomes in executor.map_unordered(answer_batch, job, batched(calls, 4 * concurrency)):
        for (i, model), comp, error in outcomes:
            record(i, model, comp, error)


def collect(
    items: Sequence[PromptItem],
    providers: Mapping[str, Provider],
    out: str | Path,
    *,
    params: Mapping[str, Any] | None = None,
    concurrency: int = 4,
    retries: int = 3,
    prices: Mapping[str, tuple[float | None, float | None]] | None = None,
    grader: Any = None,
    gold: str = "gold",
    progress: bool = True,
    executor: Executor | None = None,
    build: Callable[[], Mapping[str, Provider]] | None = None,
) -> CollectResult:
    """Answer every (prompt, model) pair missing from ``out``; returns counts and per-model totals.

    Pairs are ordered prompt-major (each model sees the prompts in file order, which keeps a local
    model's prompt-prefix cache warm). ``grader`` (from :func:`thrifty.calibration.label.make_grader`) grades
    answers inline against ``item.meta[gold]``. With a non-local ``executor`` (a
    :class:`~thrifty.calibration.executors.RayExecutor`) the calls run on its workers, which build
    their own providers with ``build`` (a picklable factory of the same ``providers``); this process
    still writes every row, so the folder is the same as a local run's.
    """
    remote = executor is not None and not isinstance(executor, LocalExecutor)
    if remote and build is None:
        raise ConfigError(
            "a cluster run needs a picklable provider factory",
            key="--ray",
            fix="pass build=partial(resolve_providers, names, settings=...)",
        )
    t_start = time.perf_counter()
    check_run_options(concurrency, retries)
    prices = dict(prices or {})
    params = dict(params or {})
    unknown = sorted(set(prices) - set(providers))
    if unknown:
        raise ConfigError(
            f"--price names {', '.join(map(repr, unknown))}, which is not collected",
            key="--price",
            fix=f"price only the collected models: {', '.join(providers)}",
        )
    if grader is not None:  # every gold value must be gradable before any model is paid for
        for it in items:
            where = f"prompt {it.prompt_id!r} (line {it.line})"
            if it.meta.get(gold) is None:
                raise DataError(
                    f"no '{gold}' value to grade against",
                    line=it.line,
                    field=gold,
                    expected=f"a '{gold}' column on every row, or collect without --grade",
                )
            grader.grade("", it.meta[gold], where=where)
    with OutcomeLog(out) as log:
        log.merge_prompts(prompt_rows(items))
        known = {m: prices.get(m, (getattr(p, "price_in", None), getattr(p, "price_out", None))) for m, p in providers.items()}
        log.merge_models(known)
        done = log.done_pairs()
        todo = [(i, m) for i, it in enumerate(items) for m in providers if (it.prompt_id, m) not in done]
        result = CollectResult(total=len(items) * len(providers), skipped=len(items) * len(providers) - len(todo))
        if not todo:
            result.seconds = time.perf_counter() - t_start
            return result
        for p in {m for _, m in todo} if not remote else ():  # load weights now, so no answer's latency includes it
            warm = getattr(providers[p], "warm", None)
            if warm is not None:
                _drive(warm())

        def go(on_done: Callable[[str], None]) -> None:
            record = _Recorder(items, log, prices, grader, gold, result, on_done)
            if remote:
                assert executor is not None and build is not None
                _run_on(executor, items, build, todo, params, concurrency, retries, record)
            else:
                _drive(_run(items, providers, todo, params, concurrency, retries, record))

        if progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
            ) as bar:
                counts = {m: sum(1 for _, mm in todo if mm == m) for m in providers}
                tasks = {m: bar.add_task(m, total=counts[m]) for m in providers if counts[m]}
                overall = bar.add_task("all pairs", total=len(todo))

                def tick(model: str) -> None:
                    bar.advance(tasks[model])
                    bar.advance(overall)

                go(tick)
        else:
            go(lambda m: None)
    result.seconds = time.perf_counter() - t_start
    return result


def _drive(coro: Any) -> None:
    """Run ``coro`` to completion, on a helper thread when an event loop is already running here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()
