"""``thrifty simulate``: the live learning loop replayed over a routing table, reproducibly.

Each seed shuffles the table's prompts into a request stream and serves it from a cold start (the
profile's configured thresholds and scorer, no artefact). Every request is answered by driving the
policy in service over the recorded answers; a seeded ``rate`` share of requests is audited — every
tier's answer (those the cascade already produced are reused, the others are paid as audit cost),
each judged against the reference tier (``at least as good`` = its quality ≥ the reference's) —
and the :class:`~thrifty.calibration.audit_types.AuditOutcome` goes into the *same*
:class:`~thrifty.calibration.loop.LearningLoop` the gateway runs: guardrail moves after each audit,
a refit every ``every`` audits, swapped in only when its cross-validation on the audits says it is
better. The replay clock refits inline (the gateway refits in a worker thread while it keeps serving
the old policy, so a few more requests there see the old policy; the swaps are the same).

:func:`simulate` returns per-request arrays for every seed; :mod:`thrifty.calibration.simulate_report`
turns them into the summary (final window, gap to the offline held-out curve, target met share,
savings) and the plot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from thrifty.calibration.audit_sampling import SAMPLINGS, AuditSampler
from thrifty.calibration.audit_types import AuditOutcome, TierVerdict
from thrifty.calibration.loop import LearningLoop, LoopConfig, LoopEvent, run_refit
from thrifty.calibration.refit import ServingPolicy, _scores, good_matrix
from thrifty.data.table import RoutingTable
from thrifty.errors import ConfigError
from thrifty.offline.api import recorded_completion
from thrifty.offline.optimise import pareto_front
from thrifty.policy.drive import drive
from thrifty.scoring.heuristic import HeuristicScorer

__all__ = ["SimConfig", "SeedRun", "simulate", "simulate_seed", "cold_policy", "profile_tiers", "audit_outcome"]


@dataclass(frozen=True)
class SimConfig:
    """What is simulated: the profile's tiers (cheapest first) and reference, the audit rate, the
    loop's settings, the cold start's thresholds and scorer, the seeds."""

    tiers: tuple[str, ...]
    reference: str
    rate: float = 0.1
    loop: LoopConfig = field(default_factory=LoopConfig)
    thresholds: tuple[float, ...] | None = None  # cold start; None: 0.75 for every tier but the last
    scorer: str = "heuristic"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    sampling: str = "uniform"  # audit sampling: "uniform" | "near_threshold" (thrifty.calibration.audit_sampling)


@dataclass
class SeedRun:
    """One seed's stream: per request (in served order) the table row, cost, quality, good-enough
    flag, whether it was audited and what the audit paid; the loop's events."""

    seed: int
    rows: np.ndarray
    cost: np.ndarray
    quality: np.ndarray
    good: np.ndarray
    audited: np.ndarray
    audit_cost: np.ndarray
    version: np.ndarray
    events: list[LoopEvent]
    fed: list[tuple[AuditOutcome, str | None]] = field(default_factory=list)  # what the loop was fed, in order


def profile_tiers(table: RoutingTable, models: Sequence[str] | None = None) -> tuple[str, ...]:
    """The tiers, cheapest first: ``models`` or the table's single-model Pareto front (cost vs quality)."""

    if models:
        names = [table.models[table.model_index(m)] for m in models]
    else:
        stats = table.model_stats()
        front = pareto_front(np.array([s.cost for s in stats]), np.array([s.quality for s in stats]))
        names = [table.models[int(j)] for j in front]
    cost = {s.model: s.cost for s in table.model_stats()}
    return tuple(sorted(names, key=lambda m: cost[m]))


def cold_policy(cfg: SimConfig) -> ServingPolicy:
    """The policy a profile serves before any refit: its configured thresholds and scorer."""
    n = len(cfg.tiers) - 1
    thr = cfg.thresholds if cfg.thresholds is not None else (0.75,) * n
    if len(thr) != n:
        raise ConfigError(f"{len(cfg.tiers)} tiers need {n} thresholds, got {len(thr)}", key="--thresholds")
    if cfg.scorer != "heuristic":
        raise ConfigError(f"unknown cold-start scorer {cfg.scorer!r}", key="--scorer", fix="use heuristic")

    return ServingPolicy(0, cfg.tiers, tuple(thr), HeuristicScorer() if n else None, source="default")


def audit_outcome(
    table: RoutingTable,
    good: np.ndarray,
    row: int,
    request_id: str,
    served: int,
    called: np.ndarray,
    serving_cost: float,
    reference: str,
    created: float,
) -> AuditOutcome:
    """What an ``explore = "all"`` audit of table row ``row`` finds (every tier judged vs the reference)."""
    answers: dict[str, TierVerdict] = {}
    audit_cost = 0.0
    for j, m in enumerate(table.models):
        q = table.quality[row, j]
        if np.isnan(q):
            answers[m] = TierVerdict(m, None, None)
            continue
        c = float(table.cost[row, j])
        if not called[j]:
            audit_cost += c
        g = good[row, j]
        answers[m] = TierVerdict(m, float(q), None if np.isnan(g) else bool(g), c, table.answer(row, j), bool(called[j]))
    return AuditOutcome(
        request_id, "simulate", created, table.models[served] if served >= 0 else None, serving_cost, reference, answers, audit_cost
    )


class _Server:
    """Serves table rows with the loop's live policy (scores of a fitted policy computed once per version)."""

    def __init__(self, table: RoutingTable) -> None:
        self.table = table
        self._version: tuple[int, float] | None = None
        self._requests: list[Any] = []
        self._policy: Any = None

    def serve(self, loop: LearningLoop, row: int) -> tuple[float, int, np.ndarray, tuple[Any, ...]]:

        key = (loop.serving.version, loop.offset)
        if self._version is None or self._version[0] != key[0]:
            self._requests, scorer = _scores(loop.serving, self.table)
            self._scorer = scorer
        if self._version != key:
            from dataclasses import replace

            self._policy = replace(loop.serving, scorer=self._scorer).policy(loop.offset)
            self._version = key
        tindex = [self.table.model_index(m) for m in self._policy.tiers]
        called = np.zeros(self.table.n_models, dtype=bool)

        def call(k: int) -> Any:
            called[tindex[k]] = True
            return recorded_completion(self.table, row, tindex[k])

        d = drive(self._policy.plan(self._requests[row]), call)
        return d.cost_usd, (tindex[d.tier] if d.completion is not None else -1), called, d.steps


def simulate_seed(
    table: RoutingTable, cfg: SimConfig, seed: int, tick: Callable[[int], None] | None = None, good: np.ndarray | None = None
) -> SeedRun:
    """Serve one shuffled stream through a fresh :class:`LearningLoop` (see the module docstring)."""
    table = table.select_models(cfg.tiers)
    good = good_matrix(table, cfg.reference) if good is None else good
    rng = np.random.default_rng(seed)
    order = rng.permutation(table.n_prompts)
    draws = rng.random(table.n_prompts)
    audit_draw = draws < cfg.rate
    sampler = AuditSampler(cfg.rate, cfg.sampling)
    from dataclasses import replace

    loop = LearningLoop("simulate", cfg.tiers, replace(cfg.loop, seed=cfg.loop.seed + 1000 * seed), cold_policy(cfg))
    server = _Server(table)
    n = table.n_prompts
    run = SeedRun(
        seed, order, np.zeros(n), np.zeros(n), np.zeros(n), audit_draw.copy(), np.zeros(n), np.zeros(n, dtype=int), loop.events, loop.audits
    )
    for i, row in enumerate(order):
        cost, chosen, called, steps = server.serve(loop, int(row))
        if sampler.weighted:  # the same sampler the gateway's auditor runs, on the seeded draw
            audit_draw[i], prob = sampler.sample(steps, float(draws[i]))
            run.audited[i] = audit_draw[i]
        run.cost[i], run.version[i] = cost, loop.serving.version
        if chosen >= 0:
            run.quality[i], run.good[i] = table.quality[row, chosen], np.nan_to_num(good[row, chosen])
        if audit_draw[i]:
            outcome = audit_outcome(table, good, int(row), f"{seed}-{i}", chosen, called, cost, cfg.reference, float(i))
            if sampler.weighted:
                outcome = replace(outcome, sample_prob=prob)
            run.audit_cost[i] = outcome.audit_cost_usd
            loop.observe(outcome, table.prompts[row])
            if loop.refit_due:
                job = loop.begin_refit()
                loop.apply(job, run_refit(job))
        if tick is not None:
            tick(1)
    return run


def simulate(table: RoutingTable, cfg: SimConfig, *, progress: bool = False) -> list[SeedRun]:
    """Every seed of ``cfg`` (a rich progress bar when ``progress``)."""
    if cfg.reference not in cfg.tiers:
        raise ConfigError(f"the reference {cfg.reference!r} is not a tier", key="--reference", fix=f"use one of: {', '.join(cfg.tiers)}")
    if cfg.sampling not in SAMPLINGS:
        raise ConfigError(f"unknown audit sampling {cfg.sampling!r}", key="--sampling", fix=f"use one of: {', '.join(SAMPLINGS)}")
    if not 0.0 < cfg.rate <= 1.0:
        raise ConfigError(f"audit rate {cfg.rate} is outside (0, 1]", key="--rate", fix="use e.g. --rate 0.1")
    if not progress:
        return [simulate_seed(table, cfg, s) for s in cfg.seeds]
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("simulating", total=table.n_prompts * len(cfg.seeds))
        return [simulate_seed(table, cfg, s, tick=lambda k: bar.advance(task, k)) for s in cfg.seeds]
