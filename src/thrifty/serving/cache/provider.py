"""``CachedProvider``: a completion cache in front of any provider (a tier, or a whole profile).

``complete(request)`` returns a :class:`~thrifty.types.Completion` whose ``cache`` field says what
happened — the gateway copies it into ``x-thrifty-cache``:

``hit``       the exact request (same key, see :mod:`.keys`) was answered before;
``semantic``  a cached answer to a sufficiently similar last user turn in the same context;
``miss``      the inner provider answered, and the answer was stored;
``bypass``    the request is not cacheable: sampled (temperature > 0, or temperature unset and the
              upstream default ``default_temperature`` > 0) without ``cache_sampled=True``, or it
              asks for several choices (``n > 1``). The inner provider answered; nothing was stored.

A cached answer costs nothing: ``cost_usd`` is 0 and ``raw["cache"]["saved_usd"]`` holds what the
original call cost; ``usage`` repeats the original token counts.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator, Iterable

import numpy as np

from thrifty.serving.cache.keys import RequestKeys, request_keys
from thrifty.serving.cache.semantic import SemanticMatcher
from thrifty.serving.cache.store import CacheEntry, CacheStore, SQLiteStore, completion_from_dict, completion_to_dict
from thrifty.serving.providers.base import Wrapper, stream_of
from thrifty.types import ChatRequest, Completion

__all__ = ["CachedProvider", "CacheStats"]


@dataclass
class CacheStats:
    hit: int = 0
    semantic: int = 0
    miss: int = 0
    bypass: int = 0
    saved_usd: float = 0.0

    @property
    def lookups(self) -> int:
        return self.hit + self.semantic + self.miss


@dataclass(frozen=True)
class _Lookup:
    keys: RequestKeys
    completion: Completion | None
    vector: np.ndarray | None


class CachedProvider(Wrapper):
    """Wrap ``inner`` with an exact (and optionally semantic) completion cache.

    ``namespace`` isolates caches (normally the profile name; defaults to ``inner.name``).
    ``semantic``: False (exact only), True (default :class:`SemanticMatcher`) or a matcher.
    """

    def __init__(
        self,
        inner: Any,
        store: CacheStore | None = None,
        *,
        namespace: str | None = None,
        semantic: bool | SemanticMatcher = False,
        cache_sampled: bool = False,
        default_temperature: float = 1.0,
        ignore_params: Iterable[str] = (),
    ) -> None:
        super().__init__(inner)
        self.store: CacheStore = store if store is not None else SQLiteStore()
        self.namespace = namespace if namespace is not None else self.name
        self.semantic: SemanticMatcher | None = (
            semantic if isinstance(semantic, SemanticMatcher) else SemanticMatcher() if semantic else None
        )
        self.cache_sampled = cache_sampled
        self.default_temperature = float(default_temperature)
        self.ignore_params = tuple(ignore_params)
        self.stats = CacheStats()

    def __repr__(self) -> str:
        return f"CachedProvider({self.name!r}, namespace={self.namespace!r}, semantic={self.semantic is not None})"

    # ---- policy ---------------------------------------------------------------------------------
    def cacheable(self, request: ChatRequest) -> bool:
        """False for sampled requests (unless ``cache_sampled``) and for ``n > 1``."""
        params = request.params
        try:
            if int(params.get("n", 1) or 1) > 1:
                return False
            temperature = float(params.get("temperature", self.default_temperature))
        except (TypeError, ValueError):
            return False
        return temperature <= 0.0 or self.cache_sampled

    # ---- lookup / store (blocking; run in a worker thread) ----------------------------------------
    def _lookup(self, request: ChatRequest) -> _Lookup:
        keys = request_keys(request, self.namespace, self.ignore_params)
        entry = self.store.get(keys.exact)
        if entry is not None:
            return _Lookup(keys, self._served(entry, "hit", 1.0), entry.vector)
        vector = None
        if self.semantic is not None and self.semantic.eligible(keys.query):
            assert keys.query is not None
            vector = self.semantic.embed(keys.query)
            match = self.semantic.best(keys.query, vector, self.store.candidates(keys.context))
            if match is not None:
                found = self.store.get(match.key)
                if found is not None:
                    return _Lookup(keys, self._served(found, "semantic", match.similarity, match.query), vector)
        return _Lookup(keys, None, vector)

    def _served(self, entry: CacheEntry, status: str, similarity: float, matched: str | None = None) -> Completion:
        original = completion_from_dict(entry.completion)
        info = {"status": status, "key": entry.key, "similarity": similarity, "saved_usd": original.cost_usd}
        if matched is not None:
            info["matched_query"] = matched
        return replace(original, cost_usd=0.0, latency_s=0.0, cache=status, raw={"cache": info})

    def _store(self, lookup: _Lookup, completion: Completion) -> None:
        keys = lookup.keys
        vector = lookup.vector
        if vector is None and self.semantic is not None and self.semantic.eligible(keys.query):
            vector = self.semantic.embed(keys.query)  # type: ignore[arg-type]
        self.store.put(
            CacheEntry(
                key=keys.exact,
                context=keys.context,
                query=keys.query if vector is not None else None,
                vector=vector,
                completion=completion_to_dict(completion),
            )
        )

    def _count(self, completion: Completion) -> None:
        status = completion.cache or "miss"
        setattr(self.stats, status, getattr(self.stats, status) + 1)
        if status in ("hit", "semantic") and isinstance(completion.raw, dict):
            self.stats.saved_usd += float(completion.raw["cache"]["saved_usd"])

    # ---- Provider ---------------------------------------------------------------------------------
    async def complete(self, request: ChatRequest) -> Completion:
        if not self.cacheable(request):
            answer: Completion = await self.inner.complete(request)
            result = replace(answer, cache="bypass")
            self._count(result)
            return result
        started = time.perf_counter()
        lookup = await asyncio.to_thread(self._lookup, request)
        if lookup.completion is not None:
            result = replace(lookup.completion, latency_s=time.perf_counter() - started)
            self._count(result)
            return result
        completion: Completion = await self.inner.complete(request)
        await asyncio.to_thread(self._store, lookup, completion)
        result = replace(completion, cache="miss")
        self._count(result)
        return result

    async def stream(self, request: ChatRequest) -> AsyncIterator[str | Completion]:
        """Text deltas then the final Completion; a hit is streamed as one delta."""
        if not self.cacheable(request):
            async for item in stream_of(self.inner, request):
                if isinstance(item, Completion):
                    item = replace(item, cache="bypass")
                    self._count(item)
                yield item
            return
        started = time.perf_counter()
        lookup = await asyncio.to_thread(self._lookup, request)
        if lookup.completion is not None:
            result = replace(lookup.completion, latency_s=time.perf_counter() - started)
            self._count(result)
            if result.text:
                yield result.text
            yield result
            return
        async for item in stream_of(self.inner, request):
            if isinstance(item, Completion):
                if item.finish_reason not in ("error", "cancelled"):
                    await asyncio.to_thread(self._store, lookup, item)
                item = replace(item, cache="miss")
                self._count(item)
            yield item

    def close(self) -> None:
        """Close the store (it reopens on next use); ``aclose()`` closes the inner provider, then this."""
        self.store.close()
