"""The learning loop in the gateway: audits → guardrail and refits → the policy in service, no restart.

For every profile with ``[profiles.NAME.refit]`` :func:`start_learning` builds one
:class:`ProfileLearner` around a :class:`~thrifty.calibration.loop.LearningLoop` (the object
``thrifty simulate`` drives) and appends it to ``app.state.audit_listeners``; the audit worker calls
it with each committed :class:`~thrifty.calibration.audit_types.AuditOutcome`.

The listener only queues: a single worker thread per profile (never the event loop) looks up the
request's prompt in the log store, feeds the loop, and when ``every`` new audits arrived runs the
refit right there (fit + cross-validation, pure CPU; later audits wait in the queue, so the loop
sees them in order — the same order ``simulate`` replays). Then:

- **swap**: the candidate is written as a ``thrifty fit``-format artefact under
  ``<artefact dir>/<profile>/v<version>`` (``[server] artefact_dir``, default ``<data dir>/artefacts``),
  a ``serving`` row goes into ``artefact_history`` with the evidence and, in the same transaction,
  the folder's digest and path into the profile's version row (:mod:`thrifty.store.versions`, as
  ``thrifty store publish`` does); the route's engine is replaced (on the event loop, between
  requests; a request already running finishes on the old engine);
- **refusal** or **crash** (of the fit, the validation or the artefact write): a ``refused`` row with
  the evidence or the error; the policy in service is untouched.
- **guardrail move**: the thresholds in service move by the step; the engine is replaced the same way.

Every event is logged (logger ``thrifty.learning``) with its evidence and counted on ``/metrics``
(``thrifty_learning_events_total{profile,kind}``, ``thrifty_guardrail_offset{profile}``,
``thrifty_artefact_version{profile}``).

Replicas (and ``--workers`` processes) sharing the store follow the version row: when it moves —
another replica's swap, ``thrifty artefacts rollback``, ``thrifty store publish`` —
:mod:`thrifty.gateway.replica_sync` hands it to :meth:`ProfileLearner.follow`, which loads that
folder (after checking its digest: the folder must be shared, ``[server] artefact_dir``) or, for a
rollback past the first artefact, the config file's policy, into the loop and the route. At start
the version row is followed the same way (a store without one: the newest ``serving`` row of the
history), so a restart keeps what was learned. A config reload rebuilds the routes from the file
and then puts the learned policy back (a config policy in service takes the file's new thresholds).

Only one process on the store learns per profile: the one holding its lease
(:mod:`thrifty.gateway.leadership` sets :attr:`ProfileLearner.lease`); it learns from every process's
audits and fences its refit's write with the lease's term. The others drop their own audits
(the leader reads them from the store) and follow.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from thrifty.calibration.audit_types import AuditOutcome
from thrifty.calibration.guardrail import GuardrailConfig
from thrifty.calibration.loop import LearningLoop, LoopConfig, LoopEvent, RefitJob, run_refit
from thrifty.calibration.refit import RefitResult, ServingPolicy, write_candidate_artefact
from thrifty.gateway.learned_policy import install_policy, learning_metrics, serving_from_policy
from thrifty.policy.cascade import CascadePolicy
from thrifty.serving.artefact import load_artefact
from thrifty.store import artefacts
from thrifty.store.versions import CONFIG_DIGEST, ArtefactVersion, artefact_digest, publish_in, read_versions

__all__ = ["ProfileLearner", "start_learning", "stop_learning", "loop_config", "serving_from_policy", "install_policy"]

log = logging.getLogger("thrifty.learning")


def loop_config(refit: Any, seed: int = 0) -> LoopConfig:
    """The loop settings of a profile's :class:`~thrifty.config.settings.RefitConfig`."""
    return LoopConfig(
        every=refit.every,
        target=refit.target,
        budget=refit.mean_cost_usd,
        folds=refit.folds,
        min_gain=refit.min_gain,
        share_z=refit.share_z,
        seed=seed,
        guardrail=GuardrailConfig(step=refit.step),
    )


class ProfileLearner:
    """One profile's loop in the gateway (see the module docstring). Callable with an AuditOutcome."""

    def __init__(
        self,
        rt: Any,
        profile: Any,
        model_id: str,
        loop: LearningLoop,
        event_loop: asyncio.AbstractEventLoop,
        metrics: dict[str, Any] | None = None,
        configured: ServingPolicy | None = None,
    ) -> None:
        self.rt, self.profile, self.model_id, self.loop = rt, profile, model_id, loop
        self.event_loop = event_loop
        self.metrics = metrics or {}
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"thrifty-learn-{profile.name}")
        self.artefact_root = rt.settings.server.resolved_artefact_dir() / profile.name
        self.configured = configured or loop.serving  # the config file's policy (what a rollback past v1 serves)
        self.store_version: int | None = None  # the profile's version row this replica serves (None: none followed yet)
        self._following: int | None = None  # a version handed to the worker thread, not yet followed
        self.live_policy: CascadePolicy | None = None  # the policy last installed by this learner
        self.source = f"refit|{socket.gethostname()}|{os.getpid()}"
        self.lease: Any = None  # thrifty.gateway.leadership.LearnerLease: learn only while this process leads

    def __call__(self, outcome: AuditOutcome) -> None:
        if outcome.profile != self.profile.name:
            return
        self.executor.submit(self._guarded, outcome)

    def _guarded(self, outcome: AuditOutcome) -> None:
        if self.lease is not None and not self.lease.accept(outcome):
            return  # another process leads (it reads this audit from the store), or already fed
        try:
            self.handle(outcome)
        except Exception:  # noqa: BLE001 - the loop must not die on one bad audit; serving goes on
            log.exception("thrifty.learning: profile %s: audit %s not learned from", self.profile.name, outcome.request_id)

    def _prompt(self, request_id: str) -> str | None:
        rows = self.rt.store.iter_rows("SELECT prompt FROM requests WHERE id = ?", (request_id,))
        return rows[0][0] if rows else None

    def handle(self, outcome: AuditOutcome, prompt: str | None = None) -> list[LoopEvent]:
        """Feed one audit; refit when due (runs in the worker thread). Returns the events."""
        events = []
        moved = self.loop.observe(outcome, prompt if prompt is not None else self._prompt(outcome.request_id))
        if moved is not None:
            events.append(moved)
            self._install()
            if self.lease is not None:
                self.lease.save_guard()  # the followers serve the same offset
        events += self._refit_if_due()
        for e in events:
            self._report(e)
        return events

    def refit_if_due(self) -> list[LoopEvent]:
        """Refit now if ``every`` audits arrived since the last refit (e.g. right after taking the lease)."""
        events = self._refit_if_due()
        for e in events:
            self._report(e)
        return events

    def _refit_if_due(self) -> list[LoopEvent]:
        if not self.loop.refit_due:
            return []
        job = self.loop.begin_refit()
        event = self._finish(job, run_refit(job))
        return [] if event is None else [event]

    def _finish(self, job: RefitJob, result: RefitResult) -> LoopEvent | None:
        """Write the artefact and the history row; swap in or record the refusal (serving untouched on any failure).
        None: this process lost the lease meanwhile, so nothing is recorded (the new leader refits)."""

        path = digest = None
        if result.swap and result.candidate is not None:
            try:
                path = self._write(job, result.candidate, result.evidence)
                digest = artefact_digest(path)
            except Exception as exc:  # noqa: BLE001 - a failed write is a failed refit
                result = RefitResult(False, None, result.evidence, error=f"writing the artefact failed: {type(exc).__name__}: {exc}")
        guard, refit_at = self.loop.guardrail, len(self.loop.audits) - self.loop.since_refit
        before = (self.loop.serving, guard.offset, guard.floor)
        event = self.loop.apply(job, result)
        name, swapped, lease = self.profile.name, event.kind == "swap", self.lease

        def write(conn: Any) -> ArtefactVersion | None:
            if lease is not None and not lease.fence_in(conn, refit_at=refit_at):  # locks the lease row first
                raise _LeaseLost
            artefacts.record(conn, name, "serving" if swapped else "refused", _jsonable(event.to_json()), path)
            if not swapped or path is None or digest is None:
                return None
            publish_in(conn, name, digest, path=path, source=self.source)  # every replica on the store follows
            row = read_versions(conn)[name]
            if lease is not None:
                lease.fence_in(conn, guard_version=row.version)  # the guardrail starts afresh on the new version
            return row

        try:
            published = self.rt.store.run_in_transaction(write)
        except _LeaseLost:
            self.loop.serving, guard.offset, guard.floor = before
            self.loop.events.pop()
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)
            log.warning("thrifty.learning: profile %s: lost the lease during refit %d; nothing recorded", name, job.number)
            return None
        if published is not None:
            self.store_version = published.version  # before the next poll: this replica must not follow its own swap
            self._install(published)
        return event

    def _write(self, job: RefitJob, candidate: ServingPolicy, evidence: dict[str, Any]) -> str:
        """The candidate's folder ``v<n>`` (written aside, then renamed: two processes never share a half-written folder)."""
        version = 1 + max([r.version for r in self.rt.store.run_in_transaction(artefacts.history, self.profile.name)] or [0])
        self.artefact_root.mkdir(parents=True, exist_ok=True)
        tmp = self.artefact_root / f".tmp-{uuid.uuid4().hex}"
        write_candidate_artefact(tmp, candidate, job.table, evidence)
        final = self.artefact_root / f"v{version}"
        try:
            tmp.rename(final)
        except OSError:  # another worker process took v<n> meanwhile
            final = self.artefact_root / f"v{version}-{uuid.uuid4().hex[:8]}"
            tmp.rename(final)
        return str(final)

    def _install(self, published: ArtefactVersion | None = None) -> None:
        """Put the loop's live policy in service on the event loop (and the version row it follows on /healthz)."""
        policy = self.loop.policy()
        self.live_policy = policy

        def put() -> None:
            install_policy(self.rt, self.model_id, policy)
            if published is not None:
                self.rt.artefact_versions[self.profile.name] = {"version": published.version, "sha256": published.sha256[:12]}

        self.event_loop.call_soon_threadsafe(put)

    # ---- following the store's version row (other replicas' swaps, rollbacks, publishes) -------------
    def request_follow(self, row: ArtefactVersion) -> None:
        """Called on the event loop by the replica sync when the version row moved: follow it in the worker thread."""
        if row.version <= max(self.store_version or 0, self._following or 0):
            return  # followed, queued, or older than this replica's own swap (versions only grow)
        self._following = row.version
        self.executor.submit(self._guarded_follow, row)

    def _guarded_follow(self, row: ArtefactVersion) -> None:
        try:
            self.follow(row)
        except Exception as exc:  # noqa: BLE001 - keep serving what serves; the next version row tries again
            self.store_version = row.version
            log.error(
                "thrifty.learning: profile %s: cannot serve version %d (%s, published by %s): %s — still serving version %s;"
                " replicas must share the artefact folder ([server] artefact_dir)",
                self.profile.name, row.version, row.path or "config", row.source, exc, self.loop.serving.version,
            )  # fmt: skip

    def follow(self, row: ArtefactVersion) -> None:
        """Serve what version row ``row`` names (runs in the worker thread; raises when its folder is unreadable)."""
        if self.store_version is not None and row.version <= self.store_version:
            return  # e.g. this replica swapped a newer one in while the follow waited behind its refit
        self.loop.serving = self._serving_of(row)
        self.loop.guardrail.reset()
        self.store_version = row.version
        if self.lease is not None:
            self.lease.save_guard()  # leading: the guardrail state now applies to this version
        if self.metrics:
            self.metrics["version"].labels(self.profile.name).set(self.loop.serving.version)
        log.warning(
            "thrifty.learning: profile %s: now serving version %d (%s, published by %s)",
            self.profile.name, row.version, row.path or "the config file's policy", row.source,
        )  # fmt: skip
        self._install(row)

    def _serving_of(self, row: ArtefactVersion) -> ServingPolicy:
        configured_file = getattr(self.profile, "artefact", None)
        if row.sha256 == CONFIG_DIGEST or not row.path or (configured_file is not None and Path(row.path) == Path(configured_file)):
            return self.configured
        if not Path(row.path).exists():
            raise FileNotFoundError(f"no artefact folder {row.path} on this machine")
        if row.sha256 and artefact_digest(row.path) != row.sha256:
            raise ValueError(f"the folder {row.path} here differs from the one published (sha256 {row.sha256[:12]})")
        serving = serving_from_policy(load_artefact(row.path).policy(), source=f"artefact:{row.path}")
        if serving is None or (serving.tiers and not set(serving.tiers) <= set(self.loop.tiers)):
            raise ValueError(f"{row.path} is not a cascade over the profile's tiers {list(self.loop.tiers)}")
        learned = self.rt.store.run_in_transaction(artefacts.by_path, self.profile.name, row.path)
        return replace(serving, version=learned.version if learned is not None else row.version)

    def after_reload(self) -> None:
        """Called on the event loop right after a config reload rebuilt the routes: the learned policy goes back in."""
        route = self.rt.routes.get(self.model_id)
        fresh = serving_from_policy(route.engine.policy) if route is not None else None
        if fresh is None or tuple(fresh.tiers) != tuple(self.configured.tiers):
            log.warning(
                "thrifty.learning: profile %s: the reloaded config changed its policy's kind or tiers; not learning", self.profile.name
            )
            return
        if self.live_policy is not None and self.loop.serving is not self.configured:
            install_policy(self.rt, self.model_id, self.live_policy)  # now: no request after the reload sees the file's policy
        self.executor.submit(self._reloaded, fresh)

    def _reloaded(self, fresh: ServingPolicy) -> None:
        if self.loop.serving is self.configured:
            self.loop.serving = fresh
        self.configured = fresh
        self._install()

    def _report(self, event: LoopEvent) -> None:
        name = self.profile.name
        level = logging.WARNING if event.kind in ("swap", "refuse", "refit_failed") else logging.INFO
        log.log(
            level,
            "thrifty.learning: profile %s: %s (version %d): %s",
            name,
            event.kind,
            event.version,
            json.dumps(_jsonable(event.evidence), sort_keys=True)[:4000],
        )
        if self.metrics:
            self.metrics["events"].labels(name, event.kind).inc()
            self.metrics["offset"].labels(name).set(self.loop.offset)
            self.metrics["version"].labels(name).set(self.loop.serving.version)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class _LeaseLost(Exception):
    """Another process took the profile's lease: this refit must not be recorded."""


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def _restore(rt: Any, profile: Any, learner: ProfileLearner) -> None:
    """Serve what the profile's version row names, else the newest ``serving`` artefact of the history
    (a restart keeps what was learned)."""

    version = rt.store.read(read_versions).get(profile.name)
    if version is not None:
        learner.follow(version)
        return
    loop = learner.loop
    row = rt.store.run_in_transaction(artefacts.current, profile.name)
    if row is None or not row.path or not Path(row.path).exists():
        return
    art = load_artefact(row.path)
    serving = serving_from_policy(art.policy(), row.version, f"artefact:{row.path}")
    if serving is not None:
        loop.serving = serving


def start_learning(app: Any, rt: Any) -> list[ProfileLearner]:
    """A learner per profile with ``[profiles.NAME.refit]``, registered in ``app.state.audit_listeners``
    (created here when the audit worker has not made it yet). Call inside the running event loop."""
    listeners = getattr(app.state, "audit_listeners", None)
    if listeners is None:
        listeners = []
        app.state.audit_listeners = listeners
    learners: list[ProfileLearner] = []
    event_loop = asyncio.get_running_loop()
    metrics = None
    for name, profile in rt.settings.profiles.items():
        if profile.refit is None:
            continue
        model_id = f"thrifty/{name}"
        serving = serving_from_policy(rt.routes[model_id].engine.policy)
        if serving is None:
            log.warning("thrifty.learning: profile %s runs a router or hybrid; the learning loop refits cascades only", name)
            continue
        metrics = metrics if metrics is not None else learning_metrics(rt)
        loop = LearningLoop(name, tuple(profile.tiers), loop_config(profile.refit), serving)
        learner = ProfileLearner(rt, profile, model_id, loop, event_loop, metrics, configured=serving)
        try:
            _restore(rt, profile, learner)
        except Exception as exc:  # noqa: BLE001 - a broken history must not stop serving the configured policy
            log.error("thrifty.learning: profile %s: the artefact in the history cannot be loaded (%s); serving the config's", name, exc)
        if loop.serving.version:
            install_policy(rt, model_id, loop.policy())
        listeners.append(learner)
        learners.append(learner)
    app.state.learners = learners
    rt.learners = learners  # the replica sync hands them version-row moves; a reload calls after_reload
    return learners


def stop_learning(learners: list[ProfileLearner]) -> None:
    for learner in learners:
        learner.close()
