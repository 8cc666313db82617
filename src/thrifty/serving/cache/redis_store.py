"""Redis cache store, for several gateway workers or hosts sharing one cache (redis-py, lazy import).

Layout under ``prefix`` (default ``thrifty:cache:``):

- ``e:<key>`` — a hash (context, query, vec, completion, created_at) with a Redis TTL of ``ttl_s``;
- ``lru`` — a sorted set key → last access time (drives LRU eviction under ``max_entries``);
- ``ctx:<context>`` — a sorted set key → expiry time: the semantic candidates of one context;
- ``idx`` — a stream of semantic put/delete events and ``gen`` — a counter bumped by ``clear()``: each
  replica mirrors the semantic entries locally from them (:mod:`.shared_index`), so a lookup is an
  exact cosine over a local matrix and a new replica sees every entry another one wrote.

Redis expires entry hashes itself; index members pointing to vanished hashes are dropped lazily, so
``len()`` and the ``max_entries`` count may include expired entries until they are evicted.
``max_bytes`` is not supported here (use Redis' own ``maxmemory`` policy for that).
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any, Callable

import numpy as np

from thrifty.errors import ConfigError
from thrifty.serving.cache.shared_index import SharedSemanticIndex
from thrifty.serving.cache.store import CacheEntry, CandidateSet, _check_caps

__all__ = ["RedisStore"]


class RedisStore:
    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        ttl_s: float | None = 7 * 24 * 3600.0,
        max_entries: int | None = 100_000,
        prefix: str = "thrifty:cache:",
        client: Any = None,
        clock: Callable[[], float] = time.time,
        index_refresh_s: float = 0.0,
    ) -> None:
        """``index_refresh_s``: how stale the local semantic index may get before a lookup reads the
        stream again (0: every semantic lookup reads the events since the last one, one round trip)."""
        _check_caps(ttl_s, max_entries, None)
        if not index_refresh_s >= 0:
            raise ConfigError(
                f"must be >= 0, got {index_refresh_s!r}", key="cache.index_refresh_s", fix="use 0 (always current) or a few seconds"
            )
        self.url = url
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.prefix = prefix
        self.clock = clock
        self._client = client
        self._lock = threading.Lock()
        maxlen = max(10_000, 2 * (max_entries or 100_000))  # events are ~100 bytes each
        self.index = SharedSemanticIndex(prefix, max_entries=max_entries, stream_maxlen=maxlen, clock=clock, refresh_s=index_refresh_s)

    def _redis(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    try:
                        import redis
                    except ImportError as exc:
                        raise ConfigError(
                            "the Redis cache store needs redis-py", key="cache.redis_url", fix="pip install 'thrifty[serve]' (redis-py)"
                        ) from exc
                    self._client = redis.Redis.from_url(self.url, decode_responses=False)
        return self._client

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def get(self, key: str) -> CacheEntry | None:
        r = self._redis()
        fields = r.hgetall(self._k("e", key))
        now = self.clock()
        if not fields:
            r.zrem(self._k("lru"), key)
            return None
        expires = float(fields[b"expires_at"]) if fields.get(b"expires_at") else None
        if expires is not None and expires <= now:
            return None
        r.zadd(self._k("lru"), {key: now})
        vec = fields.get(b"vec")
        query = fields.get(b"query")
        return CacheEntry(
            key=key,
            context=fields[b"context"].decode(),
            query=query.decode() if query else None,
            vector=np.frombuffer(vec, dtype=np.float32) if vec else None,
            completion=json.loads(fields[b"completion"]),
            created_at=float(fields[b"created_at"]),
            expires_at=expires,
        )

    def put(self, entry: CacheEntry) -> None:
        r = self._redis()
        now = self.clock()
        created = entry.created_at or now
        expires = entry.expires_at if entry.expires_at is not None else (created + self.ttl_s if self.ttl_s else None)
        mapping: dict[str, Any] = {
            "context": entry.context,
            "completion": json.dumps(entry.completion),
            "created_at": repr(created),
            "expires_at": repr(expires) if expires is not None else "",
            "query": entry.query or "",
            "vec": entry.vector.astype(np.float32).tobytes() if entry.vector is not None else b"",
        }
        ek = self._k("e", entry.key)
        pipe = r.pipeline()
        pipe.delete(ek)
        pipe.hset(ek, mapping=mapping)
        if expires is not None:
            pipe.pexpire(ek, max(1, int(math.ceil((expires - now) * 1000))))
        pipe.zadd(self._k("lru"), {entry.key: now})
        if entry.vector is not None and entry.query:
            ck = self._k("ctx", entry.context)
            pipe.zremrangebyscore(ck, "-inf", now)
            pipe.zadd(ck, {entry.key: expires if expires is not None else float("inf")})
            self.index.publish_put(pipe, entry.key)
        pipe.execute()
        self._enforce()

    def _enforce(self) -> None:
        if self.max_entries is None:
            return
        r = self._redis()
        excess = r.zcard(self._k("lru")) - self.max_entries
        if excess <= 0:
            return
        victims = [k.decode() for k, _ in r.zpopmin(self._k("lru"), excess)]
        for key in victims:
            ek = self._k("e", key)
            ctx = r.hget(ek, "context")
            pipe = r.pipeline()
            pipe.delete(ek)
            if ctx:
                pipe.zrem(self._k("ctx", ctx.decode()), key)
                self.index.publish_del(pipe, key)
            pipe.execute()

    def candidates(self, context: str) -> CandidateSet:
        """The live semantic entries of ``context`` from the local mirror (:mod:`.shared_index`)."""
        return self.index.candidates(self._redis(), context)

    def __len__(self) -> int:
        return int(self._redis().zcard(self._k("lru")))

    def clear(self) -> None:
        r = self._redis()
        for k in r.scan_iter(match=self.prefix + "*", count=500):
            if k != self._k("gen").encode():
                r.delete(k)
        r.incr(self._k("gen"))  # every replica's mirror reloads (empty) on its next lookup

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
