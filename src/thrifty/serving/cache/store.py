"""Cache storage: the :class:`CacheStore` protocol and the default SQLite store.

A store holds :class:`CacheEntry` rows keyed by the exact request key. Each row also carries its
semantic ``context`` key, the query text and its embedding, so the semantic cache can list the
candidates of one context. Stores enforce a TTL (``ttl_s``; expired rows are never returned and are
purged on write) and a size cap (``max_entries`` rows and/or ``max_bytes`` of stored payload),
evicting the least recently *used* rows first (a hit refreshes ``last_access``).

Stores are synchronous and thread-safe; :class:`~thrifty.serving.cache.provider.CachedProvider` calls them
from a worker thread. :class:`SQLiteStore` is safe across processes too (WAL, busy timeout), but for
several gateway hosts use :class:`~thrifty.serving.cache.redis_store.RedisStore`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, overload, runtime_checkable

import numpy as np

from thrifty.errors import ConfigError
from thrifty.scoring.embedding import cache_dir
from thrifty.types import Completion, Usage

__all__ = ["CacheEntry", "Candidate", "CandidateSet", "CacheStore", "SQLiteStore", "completion_to_dict", "completion_from_dict"]


def completion_to_dict(c: Completion) -> dict[str, Any]:
    """The JSON-able part of a completion (``raw`` and ``cache`` are not stored)."""
    return {
        "text": c.text,
        "model": c.model,
        "usage": [c.usage.input_tokens, c.usage.output_tokens, c.usage.estimated],
        "cost_usd": c.cost_usd,
        "latency_s": c.latency_s,
        "finish_reason": c.finish_reason,
        "tool_calls": list(c.tool_calls) if c.tool_calls is not None else None,
    }


def completion_from_dict(d: dict[str, Any]) -> Completion:
    tool_calls = d.get("tool_calls")
    return Completion(
        text=d.get("text", ""),
        model=d.get("model", "?"),
        usage=Usage(*d.get("usage", (0, 0))),
        cost_usd=float(d.get("cost_usd", 0.0)),
        latency_s=float(d.get("latency_s", 0.0)),
        finish_reason=d.get("finish_reason", "stop"),
        tool_calls=tuple(tool_calls) if tool_calls is not None else None,
    )


@dataclass(frozen=True)
class CacheEntry:
    key: str  # exact request key
    context: str  # semantic neighbourhood key (scope + earlier messages)
    query: str | None  # last user turn (None: not semantically matchable)
    vector: np.ndarray | None  # float32 embedding of ``query``
    completion: dict[str, Any]  # completion_to_dict(...)
    created_at: float = 0.0
    expires_at: float | None = None  # None: never expires

    @property
    def size(self) -> int:
        """Bytes this entry accounts for under ``max_bytes``."""
        vec = 0 if self.vector is None else self.vector.nbytes
        return len(json.dumps(self.completion)) + len(self.query or "") + vec + 200


@dataclass(frozen=True)
class Candidate:
    """A semantic candidate: exact key, the cached query text and its embedding."""

    key: str
    query: str
    vector: np.ndarray


class CandidateSet(Sequence[Candidate]):
    """Candidates held as one matrix (a store's in-memory index): row ``i`` is ``keys[i]``'s vector;
    rows with ``live[i]`` False (expired, removed) are never matched. The matcher scores the whole
    matrix in one product instead of stacking per-candidate vectors."""

    def __init__(self, keys: list[str], queries: list[str], matrix: np.ndarray, live: np.ndarray) -> None:
        self.keys, self.queries, self.matrix, self.live = keys, queries, matrix, live

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, i: int) -> Candidate: ...

    @overload
    def __getitem__(self, i: slice) -> list[Candidate]: ...

    def __getitem__(self, i: int | slice) -> Candidate | list[Candidate]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return Candidate(self.keys[i], self.queries[i], self.matrix[i])


@runtime_checkable
class CacheStore(Protocol):
    ttl_s: float | None

    def get(self, key: str) -> CacheEntry | None:
        """The live entry for ``key`` (and mark it used), or None."""
        ...

    def put(self, entry: CacheEntry) -> None:
        """Insert or replace ``entry``; then enforce the TTL and the size cap."""
        ...

    def candidates(self, context: str) -> Sequence[Candidate]:
        """Every live entry of ``context`` that has an embedding."""
        ...

    def __len__(self) -> int: ...

    def clear(self) -> None: ...

    def close(self) -> None: ...


def _check_caps(ttl_s: float | None, max_entries: int | None, max_bytes: int | None) -> None:
    for name, v in (("ttl_s", ttl_s), ("max_entries", max_entries), ("max_bytes", max_bytes)):
        if v is not None and not v > 0:
            raise ConfigError(
                f"must be > 0, got {v!r}", key=f"cache.{name}", fix=f"set cache.{name} to a positive number or leave it unset"
            )


class SQLiteStore:
    """Cache rows in one SQLite file (default ``<cache dir>/completions.sqlite``); LRU eviction."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        ttl_s: float | None = 7 * 24 * 3600.0,
        max_entries: int | None = 100_000,
        max_bytes: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _check_caps(ttl_s, max_entries, max_bytes)
        if path is None:
            path = cache_dir() / "completions.sqlite"
        self.path = Path(path) if str(path) != ":memory:" else path
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self._db: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            if isinstance(self.path, Path):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(
                """
                CREATE TABLE IF NOT EXISTS cache_entries (
                    key TEXT PRIMARY KEY, context TEXT NOT NULL, query TEXT, vec BLOB,
                    completion TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL,
                    last_access REAL NOT NULL, size INTEGER NOT NULL);
                CREATE INDEX IF NOT EXISTS cache_entries_context ON cache_entries(context);
                CREATE INDEX IF NOT EXISTS cache_entries_access ON cache_entries(last_access);
                """
            )
            self._db = db
        return self._db

    def get(self, key: str) -> CacheEntry | None:
        now = self.clock()
        with self._lock:
            db = self._conn()
            row = db.execute(
                "SELECT context, query, vec, completion, created_at, expires_at FROM cache_entries"
                " WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
                (key, now),
            ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE cache_entries SET last_access = ? WHERE key = ?", (now, key))
        context, query, vec, completion, created, expires = row
        vector = np.frombuffer(vec, dtype=np.float32) if vec is not None else None
        return CacheEntry(key, context, query, vector, json.loads(completion), created, expires)

    def put(self, entry: CacheEntry) -> None:
        now = self.clock()
        created = entry.created_at or now
        expires = entry.expires_at if entry.expires_at is not None else (created + self.ttl_s if self.ttl_s else None)
        vec = entry.vector.astype(np.float32).tobytes() if entry.vector is not None else None
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT OR REPLACE INTO cache_entries VALUES (?,?,?,?,?,?,?,?,?)",
                    (entry.key, entry.context, entry.query, vec, json.dumps(entry.completion), created, expires, now, entry.size),
                )
                self._enforce(db, now)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _enforce(self, db: sqlite3.Connection, now: float) -> None:
        db.execute("DELETE FROM cache_entries WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
        if self.max_entries is not None:
            (n,) = db.execute("SELECT COUNT(*) FROM cache_entries").fetchone()
            if n > self.max_entries:
                db.execute(
                    "DELETE FROM cache_entries WHERE key IN (SELECT key FROM cache_entries ORDER BY last_access, created_at LIMIT ?)",
                    (n - self.max_entries,),
                )
        if self.max_bytes is not None:
            (total,) = db.execute("SELECT COALESCE(SUM(size), 0) FROM cache_entries").fetchone()
            if total > self.max_bytes:
                drop, freed = [], 0
                for key, size in db.execute("SELECT key, size FROM cache_entries ORDER BY last_access, created_at"):
                    if total - freed <= self.max_bytes:
                        break
                    drop.append((key,))
                    freed += size
                db.executemany("DELETE FROM cache_entries WHERE key = ?", drop)

    def candidates(self, context: str) -> list[Candidate]:
        now = self.clock()
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    "SELECT key, query, vec FROM cache_entries WHERE context = ? AND vec IS NOT NULL"
                    " AND query IS NOT NULL AND (expires_at IS NULL OR expires_at > ?)",
                    (context, now),
                )
                .fetchall()
            )
        return [Candidate(k, q, np.frombuffer(v, dtype=np.float32)) for k, q, v in rows]

    def __len__(self) -> int:
        now = self.clock()
        with self._lock:
            (n,) = self._conn().execute("SELECT COUNT(*) FROM cache_entries WHERE expires_at IS NULL OR expires_at > ?", (now,)).fetchone()
        return int(n)

    def clear(self) -> None:
        with self._lock:
            self._conn().execute("DELETE FROM cache_entries")

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
