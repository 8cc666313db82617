"""Redis cache store, for several gateway workers or hosts sharing one cache (redis-py, lazy import).

Layout under ``prefix`` (default ``thrifty:cache:``):

- ``e:<key>`` — a hash (context, query, vec, completion, created_at) with a Redis TTL of ``ttl_s``;
- ``lru`` — a sorted set key → last access time (drives LRU eviction under ``max_entries``);
- ``ctx:<context>`` — a sorted set key → expiry time: the semantic candidates of one context.

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

from thrifty.serving.cache.store import CacheEntry, Candidate, _check_caps
from thrifty.errors import ConfigError

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
    ) -> None:
        _check_caps(ttl_s, max_entries, None)
        self.url = url
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.prefix = prefix
        self.clock = clock
        self._client = client
        self._lock = threading.Lock()

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
            pipe.zadd(self._k("ctx", entry.context), {entry.key: expires if expires is not None else float("inf")})
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
            pipe.execute()

    def candidates(self, context: str) -> list[Candidate]:
        r = self._redis()
        ck = self._k("ctx", context)
        r.zremrangebyscore(ck, "-inf", self.clock())
        keys = [k.decode() for k in r.zrange(ck, 0, -1)]
        if not keys:
            return []
        pipe = r.pipeline()
        for key in keys:
            pipe.hmget(self._k("e", key), "query", "vec")
        out, gone = [], []
        for key, (query, vec) in zip(keys, pipe.execute()):
            if not query or not vec:
                gone.append(key)
                continue
            out.append(Candidate(key, query.decode(), np.frombuffer(vec, dtype=np.float32)))
        if gone:
            r.zrem(ck, *gone)
        return out

    def __len__(self) -> int:
        return int(self._redis().zcard(self._k("lru")))

    def clear(self) -> None:
        r = self._redis()
        for k in r.scan_iter(match=self.prefix + "*", count=500):
            r.delete(k)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
