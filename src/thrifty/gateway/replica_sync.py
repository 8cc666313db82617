"""What a gateway replica keeps in step with the others sharing its store, in one background task.

- **Budget leases.** Every ``hold_lease_s / 3`` the replica renews the leases of its own budget
  holds (and deletes lapsed ones): a replica that dies stops renewing, so its holds stop counting
  within ``hold_lease_s`` (:mod:`thrifty.serving.budget`).
- **Artefact versions.** Every ``artefact_poll_s`` the replica reads the store's artefact version
  rows (:mod:`thrifty.store.versions`); when a profile's version differs from the one in service,
  it reloads (:func:`thrifty.gateway.reload.reload_runtime`: config and artefacts from disk, no
  request dropped). After any reload — this one, ``POST /admin/reload`` or ``SIGHUP`` after a refit
  — it publishes the digests of the artefacts it now serves, which bumps the version for the other
  replicas only when the file really changed. So a refit plus a reload on one replica (or a
  ``thrifty store publish`` from the CLI) reaches every replica within ``artefact_poll_s`` plus one
  reload. A reload caused by a version move adopts that version without publishing (replicas
  whose files differ cannot bump each other in a loop). ``/healthz`` shows the version in service
  per profile.
- **Learned artefacts.** A profile with a learning loop (``[profiles.NAME.refit]``) is not reloaded
  from the config file: its learner publishes its own swaps in the version row, and a move it did
  not make (another replica's swap, ``thrifty artefacts rollback``, ``thrifty store publish``) is
  handed to :meth:`~thrifty.gateway.learning.ProfileLearner.request_follow`, which loads that folder
  off the event loop. Such profiles are never published from here.

Polling (not ``LISTEN/NOTIFY``) works the same on SQLite and PostgreSQL and survives a lost
connection without any resubscription logic; one indexed read every few seconds costs nothing.
"""

import asyncio
import logging
import os
import socket
import time
from typing import Any

from thrifty.gateway.reload import reload_runtime
from thrifty.store.versions import artefact_digest, publish_in, read_versions

__all__ = ["ReplicaSync", "publish_served", "start"]

log = logging.getLogger("thrifty.gateway")


def _artefacts(settings: Any, learned: Any = ()) -> dict[str, str]:
    """Profile → the artefact path it serves (profiles with fitted artefacts only, minus the ``learned`` ones)."""
    return {
        name: str(p.artefact) for name, p in settings.profiles.items() if getattr(p, "artefact", None) is not None and name not in learned
    }


def _learners(rt: Any) -> dict[str, Any]:
    return {learner.profile.name: learner for learner in getattr(rt, "learners", None) or ()}


def publish_served(store: Any, settings: Any, learned: Any = ()) -> dict[str, Any]:
    """Publish the digest of every artefact ``settings`` serves (but the ``learned`` profiles'); return
    the version rows after (blocking)."""

    digests = {}
    for profile, path in _artefacts(settings, learned).items():
        try:
            digests[profile] = (artefact_digest(path), path)
        except OSError:
            continue  # a missing file already failed the build; nothing to publish
    source = f"{socket.gethostname()}|{os.getpid()}"

    def write(conn: Any) -> dict[str, Any]:
        for profile, (sha, path) in digests.items():
            publish_in(conn, profile, sha, path=path, source=source)
        return read_versions(conn)

    return store.run_in_transaction(write)


class ReplicaSync:
    """The background task's state: the versions in service and when each duty runs next."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self.in_service: dict[str, int] = {}
        self.seen_generation = -1
        self.reloads = 0

    def adopt(self, versions: dict[str, Any]) -> None:
        learned = _learners(self.rt)
        served = _artefacts(self.rt.settings, learned)
        self.in_service = {p: v.version for p, v in versions.items() if p in served}
        shown = {p: v for p, v in self.rt.artefact_versions.items() if p in learned}  # the learners keep theirs current
        self.rt.artefact_versions = shown | {p: {"version": v.version, "sha256": v.sha256[:12]} for p, v in versions.items() if p in served}
        self.seen_generation = self.rt.generation

    async def publish(self) -> None:
        versions = await asyncio.to_thread(publish_served, self.rt.store, self.rt.settings, _learners(self.rt))
        self.adopt(versions)

    async def renew(self) -> None:
        ledger = self.rt.ledger
        await asyncio.wrap_future(self.rt.store.submit_in_transaction(ledger.renew_in))

    async def poll(self) -> None:

        if self.rt.generation != self.seen_generation:  # reloaded by /admin/reload or SIGHUP
            await self.publish()
            return
        versions = await asyncio.to_thread(self.rt.store.read, read_versions)
        learned = _learners(self.rt)
        for name, learner in learned.items():
            if name in versions:
                learner.request_follow(versions[name])  # off the event loop, after any refit in progress
        served = _artefacts(self.rt.settings, learned)
        moved = [p for p in served if p in versions and versions[p].version != self.in_service.get(p)]
        if not moved:
            return
        log.warning("thrifty: artefact version moved for %s; reloading", ", ".join(moved))
        await reload_runtime(self.rt)
        self.reloads += 1
        # adopt, do not publish: replicas whose files differ must not bump each other forever
        self.adopt(versions)


async def _run(sync: ReplicaSync) -> None:
    server = sync.rt.settings.server
    lease_every = max(0.2, server.hold_lease_s / 3.0)
    poll_every = server.artefact_poll_s
    next_renew = time.monotonic() + lease_every
    next_poll = time.monotonic() + (poll_every if poll_every > 0 else float("inf"))
    while True:
        await asyncio.sleep(max(0.05, min(next_renew, next_poll) - time.monotonic()))
        now = time.monotonic()
        try:
            if now >= next_renew:
                next_renew = now + lease_every
                await sync.renew()
            if now >= next_poll:
                next_poll = now + poll_every
                await sync.poll()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a lost database or a failed reload: keep serving, retry next tick
            log.error("thrifty: replica sync failed (retrying): %s", exc)


async def start(rt: Any) -> "asyncio.Task[None]":
    """Publish what this replica serves, then run the lease/version loop until cancelled."""
    sync = ReplicaSync(rt)
    rt.replica_sync = sync
    await sync.publish()
    return asyncio.get_running_loop().create_task(_run(sync), name="thrifty-replica-sync")
