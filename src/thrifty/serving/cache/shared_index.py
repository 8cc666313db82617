"""The semantic index of a shared Redis cache: a local, bounded mirror kept current from a Redis stream.

Every :class:`~thrifty.serving.cache.redis_store.RedisStore` write of a semantic entry also appends an event
to the stream ``<prefix>idx`` (``op=put`` or ``op=del`` and the key), in the same MULTI/EXEC as the
entry itself. Each replica keeps a mirror of the entries — per context a
float32 matrix of ``[whole ‖ last paragraph]`` vectors — and, before a lookup, reads the events it
has not seen yet (one round trip: ``GET gen``, ``XRANGE - + COUNT 1``, ``XREAD``; a second one,
pipelined, reads the new entries' vectors from their hashes). The nearest
neighbour is then an exact cosine over the local matrix (numpy), so a lookup costs no Redis traffic
proportional to the cache size. Matching (threshold, last-paragraph cosine, lexical guard) is the
unchanged :class:`~thrifty.serving.cache.semantic.SemanticMatcher`, which sees the same candidates a single
process would.

A new replica (or one whose mirror is stale) *bootstraps*: it notes the stream's last id, loads every
live entry from the ``ctx:<context>`` sorted sets and the entry hashes, then follows the stream from
the noted id (events are idempotent, so overlap is harmless). It bootstraps again when

- ``clear()`` bumped the generation counter ``<prefix>gen``, or
- the stream was trimmed past what it has read (it fell more than ``stream_maxlen`` events behind).

Redis 7.0 (Debian 12's ``redis-server``) has no vector search without the RediSearch module; this
layout needs only streams (Redis >= 5). The mirror holds at most ``max_entries`` entries (oldest
dropped first) and forgets expired ones by their expiry time. A mirrored key whose hash is already
gone (evicted by another replica a moment ago) is found by the provider's ``get`` and is a miss.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from thrifty.serving.cache.store import CandidateSet

__all__ = ["SharedSemanticIndex"]

_BATCH = 5_000  # events per XREAD


class _ContextRows:
    """The mirrored entries of one context: a growable matrix with tombstones (compacted lazily)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.rows = np.zeros((8, dim), dtype=np.float32)
        self.expires = np.full(8, -np.inf)
        self.keys: list[str | None] = []
        self.queries: list[str] = []
        self.pos: dict[str, int] = {}
        self.dead = 0

    def put(self, key: str, query: str, vector: np.ndarray, expires: float) -> None:
        row = self.pos.get(key)
        if row is None:
            row = len(self.keys)
            if row == len(self.rows):
                self.rows = np.concatenate([self.rows, np.zeros_like(self.rows)])
                self.expires = np.concatenate([self.expires, np.full(len(self.expires), -np.inf)])
            self.keys.append(key)
            self.queries.append(query)
            self.pos[key] = row
        else:
            self.queries[row] = query
        self.rows[row] = vector
        self.expires[row] = expires

    def remove(self, key: str) -> None:
        row = self.pos.pop(key, None)
        if row is None:
            return
        self.keys[row] = None
        self.expires[row] = -np.inf
        self.dead += 1
        if self.dead > 64 and self.dead * 2 > len(self.keys):
            self._compact()

    def _compact(self) -> None:
        keep = [i for i, k in enumerate(self.keys) if k is not None]
        self.rows = np.ascontiguousarray(self.rows[keep]) if keep else np.zeros((8, self.dim), dtype=np.float32)
        self.expires = self.expires[keep] if keep else np.full(8, -np.inf)
        self.keys = [self.keys[i] for i in keep]
        self.queries = [self.queries[i] for i in keep]
        self.pos = {k: i for i, k in enumerate(self.keys) if k is not None}
        self.dead = 0

    def __len__(self) -> int:
        return len(self.pos)

    def snapshot(self, now: float) -> CandidateSet:
        n = len(self.keys)
        keys = [k or "" for k in self.keys]
        return CandidateSet(keys, list(self.queries), self.rows[:n], self.expires[:n] > now)


class SharedSemanticIndex:
    """Replica-local mirror of a Redis store's semantic entries (see the module docstring)."""

    def __init__(
        self, prefix: str, *, max_entries: int | None, stream_maxlen: int, clock: Callable[[], float], refresh_s: float = 0.0
    ) -> None:
        self.prefix = prefix
        self.max_entries = max_entries or 1_000_000
        self.stream_maxlen = stream_maxlen
        self.clock = clock
        self.refresh_s = refresh_s
        self._contexts: dict[str, _ContextRows] = {}
        self._order: OrderedDict[str, str] = OrderedDict()  # key -> context, oldest first
        self._last: str | None = None  # last stream id applied (None: not bootstrapped)
        self._gen: bytes | None = None
        self._synced_at = float("-inf")
        self._lock = threading.Lock()

    @property
    def stream(self) -> str:
        return self.prefix + "idx"

    @property
    def generation(self) -> str:
        return self.prefix + "gen"

    # ---- writing (called by RedisStore inside its MULTI/EXEC pipeline) ----------------------------
    def publish_put(self, pipe: Any, key: str) -> None:
        """An event names the key only (~100 bytes): a replica reads the entry's vector from its hash,
        so the stream can stay long (few reloads of lagging replicas) without doubling Redis' memory."""
        pipe.xadd(self.stream, {"op": "put", "k": key}, maxlen=self.stream_maxlen, approximate=True)

    def publish_del(self, pipe: Any, key: str) -> None:
        pipe.xadd(self.stream, {"op": "del", "k": key}, maxlen=self.stream_maxlen, approximate=True)

    # ---- reading ------------------------------------------------------------------------------------
    def candidates(self, redis: Any, context: str) -> CandidateSet:
        """The live mirrored entries of ``context``, after applying the events not seen yet."""
        now = self.clock()
        with self._lock:
            if now - self._synced_at >= self.refresh_s or self._last is None:
                self._sync(redis)
                self._synced_at = now
            rows = self._contexts.get(context)
            return rows.snapshot(now) if rows is not None else CandidateSet([], [], np.zeros((0, 0), np.float32), np.zeros(0, bool))

    def __len__(self) -> int:
        return len(self._order)

    def _sync(self, redis: Any) -> None:
        if self._last is None:
            self._bootstrap(redis)
        while True:
            pipe = redis.pipeline(transaction=False)
            pipe.get(self.generation)
            pipe.xrange(self.stream, "-", "+", count=1)
            pipe.xread({self.stream: self._last}, count=_BATCH)
            gen, first, events = pipe.execute()
            assert self._last is not None
            if (gen or b"0") != self._gen or (first and _id(first[0][0]) > _id(self._last)):
                self._bootstrap(redis)  # cleared, or trimmed past our position: reload everything
                continue
            batch = events[0][1] if events else []
            puts = list(dict.fromkeys(f[b"k"].decode() for _, f in batch if f.get(b"op") == b"put"))
            entries = self._load(redis, puts)
            for event_id, fields in batch:
                key = fields[b"k"].decode()
                found = entries.get(key) if fields.get(b"op") == b"put" else None
                if found is not None:
                    self._put(key, *found)
                else:  # deleted, or gone already (evicted, expired, replaced by a non-semantic entry)
                    context = self._order.pop(key, None)
                    if context is not None:
                        self._drop(key, context)
                self._last = event_id.decode()
            if len(batch) < _BATCH:
                return

    def _load(self, redis: Any, keys: list[str]) -> dict[str, tuple[str, str, bytes, bytes | None]]:
        """(context, query, vector bytes, expires) of every key whose hash still holds a semantic entry."""
        out: dict[str, tuple[str, str, bytes, bytes | None]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            pipe = redis.pipeline(transaction=False)
            for key in chunk:
                pipe.hmget(self.prefix + "e:" + key, "context", "query", "vec", "expires_at")
            for key, (context, query, vec, expires) in zip(chunk, pipe.execute()):
                if context and query and vec:
                    out[key] = (context.decode(), query.decode(), vec, expires)
        return out

    def _bootstrap(self, redis: Any) -> None:
        self._contexts.clear()
        self._order.clear()
        pipe = redis.pipeline(transaction=False)
        pipe.get(self.generation)
        pipe.xrevrange(self.stream, "+", "-", count=1)
        gen, last = pipe.execute()
        self._gen = gen or b"0"
        self._last = last[0][0].decode() if last else "0-0"
        now = self.clock()
        for ctx_key in redis.scan_iter(match=self.prefix + "ctx:*", count=500):
            keys = [k.decode() for k in redis.zrangebyscore(ctx_key, now, "+inf")]
            for key, found in self._load(redis, keys).items():
                self._put(key, *found)

    def _put(self, key: str, context: str, query: str, vec: bytes, expires: bytes | None) -> None:
        vector = np.frombuffer(vec, dtype=np.float32)
        old = self._order.pop(key, None)
        if old is not None and old != context:
            self._drop(key, old)
        rows = self._contexts.get(context)
        if rows is None or rows.dim != vector.shape[0]:  # a new context, or vectors of a new embedder
            if rows is not None:
                for k in list(rows.pos):
                    self._order.pop(k, None)
            rows = self._contexts[context] = _ContextRows(vector.shape[0])
        rows.put(key, query, vector, float(expires) if expires else float("inf"))
        self._order[key] = context
        while len(self._order) > self.max_entries:
            victim, victim_ctx = self._order.popitem(last=False)
            self._drop(victim, victim_ctx)

    def _drop(self, key: str, context: str) -> None:
        rows = self._contexts[context]
        rows.remove(key)
        if not rows:
            del self._contexts[context]


def _id(stream_id: bytes | str) -> tuple[int, int]:
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)
