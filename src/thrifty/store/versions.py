"""The artefact version row per profile: how replicas sharing a store agree on what to serve.

A replica (or the CLI) that loads or writes a profile's artefact *publishes* its digest:
:func:`publish_in` bumps the profile's ``version`` when the digest differs from the one recorded
(publishing the same file again changes nothing, so replicas that merely reloaded do not bump it
again). Every replica polls :func:`read_versions` and reloads when a version moved
(:mod:`thrifty.gateway.replica_sync`). :func:`bump_in` forces a new version (a rollback that put
back an older file, or "reload everywhere").

The learning loop publishes through the same row: a refit swapped in on one replica publishes its
artefact folder (:func:`publish_in`); ``thrifty artefacts rollback`` publishes the artefact now in
service (:func:`bump_in`) or, when none is left, :func:`serve_config_in` — digest
:data:`CONFIG_DIGEST`, no path: "the policy in the config file".
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["ArtefactVersion", "CONFIG_DIGEST", "artefact_digest", "bump_in", "publish_in", "read_versions", "serve_config_in"]

#: the digest of a version row that means "serve the policy of the config file" (a learned artefact rolled back)
CONFIG_DIGEST = "config"


class ArtefactVersion(NamedTuple):
    version: int
    sha256: str
    path: str | None
    updated: float
    source: str | None


def artefact_digest(path: str | os.PathLike) -> str:
    """sha256 of an artefact file, or of a folder's files (names and bytes, in sorted order)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode("utf-8") + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def read_versions(conn: Any) -> dict[str, ArtefactVersion]:
    """Profile → its current version row."""
    rows = conn.execute("SELECT profile, version, sha256, path, updated, source FROM artefact_versions").fetchall()
    return {r[0]: ArtefactVersion(int(r[1]), r[2], r[3], float(r[4]), r[5]) for r in rows}


def publish_in(conn: Any, profile: str, sha256: str, *, path: str | None = None, source: str | None = None) -> int:
    """Record ``sha256`` as ``profile``'s artefact (a new version only if the digest changed); return the version."""
    conn.execute(
        "INSERT INTO artefact_versions (profile, version, sha256, path, updated, source) VALUES (?, 1, ?, ?, ?, ?)"
        " ON CONFLICT(profile) DO UPDATE SET version = artefact_versions.version + 1, sha256 = excluded.sha256,"
        " path = excluded.path, updated = excluded.updated, source = excluded.source"
        " WHERE artefact_versions.sha256 <> excluded.sha256",
        (profile, sha256, path, time.time(), source),
    )
    return int(conn.execute("SELECT version FROM artefact_versions WHERE profile = ?", (profile,)).fetchone()[0])


def bump_in(conn: Any, profile: str, *, sha256: str = "", path: str | None = None, source: str | None = None) -> int:
    """A new version of ``profile`` whatever its digest (every replica reloads); return it."""
    conn.execute(
        "INSERT INTO artefact_versions (profile, version, sha256, path, updated, source) VALUES (?, 1, ?, ?, ?, ?)"
        " ON CONFLICT(profile) DO UPDATE SET version = artefact_versions.version + 1,"
        " sha256 = COALESCE(NULLIF(excluded.sha256, ''), artefact_versions.sha256),"
        " path = COALESCE(excluded.path, artefact_versions.path), updated = excluded.updated, source = excluded.source",
        (profile, sha256, path, time.time(), source),
    )
    return int(conn.execute("SELECT version FROM artefact_versions WHERE profile = ?", (profile,)).fetchone()[0])


def serve_config_in(conn: Any, profile: str, *, source: str | None = None) -> int:
    """A new version of ``profile`` that says "the config file's policy" (digest :data:`CONFIG_DIGEST`, no path)."""
    conn.execute(
        "INSERT INTO artefact_versions (profile, version, sha256, path, updated, source) VALUES (?, 1, ?, NULL, ?, ?)"
        " ON CONFLICT(profile) DO UPDATE SET version = artefact_versions.version + 1, sha256 = excluded.sha256,"
        " path = NULL, updated = excluded.updated, source = excluded.source",
        (profile, CONFIG_DIGEST, time.time(), source),
    )
    return int(conn.execute("SELECT version FROM artefact_versions WHERE profile = ?", (profile,)).fetchone()[0])
