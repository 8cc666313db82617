"""Completion cache (FrugalGPT's "LLM approximation"): exact and semantic, as a provider wrapper.

- :mod:`.keys` — canonical request keys (scope / exact / context);
- :mod:`.guard` — lexical near-miss guard (numbers, negations, units, entities);
- :mod:`.semantic` — nearest neighbour over MiniLM embeddings, calibrated ``DEFAULT_THRESHOLD``;
- :mod:`.store` — ``SQLiteStore`` (default; TTL, size cap, LRU); :mod:`.redis_store` — ``RedisStore``;
- :mod:`.provider` — ``CachedProvider(inner, store, namespace=…, semantic=…)``.

Nothing heavy is imported here: MiniLM loads on the first semantic lookup, redis-py on first use.
"""

from __future__ import annotations

from typing import Any

from thrifty.serving.cache.keys import RequestKeys, canonical_json, request_keys
from thrifty.serving.cache.provider import CachedProvider, CacheStats
from thrifty.serving.cache.redis_store import RedisStore
from thrifty.serving.cache.semantic import DEFAULT_THRESHOLD, SemanticMatcher
from thrifty.serving.cache.store import CacheEntry, CacheStore, SQLiteStore

__all__ = [
    "CachedProvider",
    "CacheStats",
    "CacheStore",
    "CacheEntry",
    "SQLiteStore",
    "RedisStore",
    "SemanticMatcher",
    "DEFAULT_THRESHOLD",
    "RequestKeys",
    "request_keys",
    "canonical_json",
    "make_store",
]


def __getattr__(name: str) -> Any:
    if name == "RedisStore":
        return RedisStore
    raise AttributeError(name)


def make_store(
    *,
    redis_url: str | None = None,
    path: str | None = None,
    ttl_s: float | None = 7 * 24 * 3600.0,
    max_entries: int | None = 100_000,
    max_bytes: int | None = None,
    prefix: str = "thrifty:cache:",
) -> CacheStore:
    """A Redis store when ``redis_url`` is set, else a SQLite store at ``path`` (default cache dir)."""
    if redis_url:
        return RedisStore(redis_url, ttl_s=ttl_s, max_entries=max_entries, prefix=prefix)
    return SQLiteStore(path, ttl_s=ttl_s, max_entries=max_entries, max_bytes=max_bytes)
