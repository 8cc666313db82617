"""The Redis store's shared semantic index (``thrifty.serving.cache.shared_index``) against a real ``redis-server``.

Two ``RedisStore`` objects with the same prefix stand for two replicas (each has its own mirror).
Vectors are synthetic unit vectors so the index logic is tested without MiniLM (the end-to-end test
with MiniLM and separate processes is ``tests/e2e/test_shared_semantic_cache.py``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import numpy as np
import pytest

from thrifty.serving.cache import SemanticMatcher
from thrifty.serving.cache.store import CacheEntry, CandidateSet

DIM = 8


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    redis = pytest.importorskip("redis")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path_factory.mktemp("redis")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    client.close()
    proc.terminate()
    proc.wait(timeout=10)


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def vec(i: int) -> np.ndarray:
    """A [whole ‖ last paragraph] vector: unit basis vector i in both halves."""
    v = np.zeros(2 * DIM, dtype=np.float32)
    v[i % DIM] = 1.0
    v[DIM + i % DIM] = 1.0
    return v


def entry(key: str, i: int, context: str = "ctx") -> CacheEntry:
    return CacheEntry(key=key, context=context, query=f"query {key}", vector=vec(i), completion={"text": key, "model": "m"})


def stores(url: str, prefix: str, clock: Clock, **kw):
    from thrifty.serving.cache import RedisStore

    one = RedisStore(url, prefix=prefix, clock=clock, **kw)
    one.clear()
    return one, RedisStore(url, prefix=prefix, clock=clock, **kw)


def keys_of(cands) -> set[str]:
    assert isinstance(cands, CandidateSet)
    return {k for k, live in zip(cands.keys, cands.live) if live}


def test_a_second_replica_mirrors_puts_evictions_and_expiry(redis_url):
    clock = Clock()
    one, two = stores(redis_url, "si1:", clock, ttl_s=60, max_entries=3)
    one.put(entry("a", 0))
    one.put(entry("b", 1))
    one.put(entry("z", 2, context="other"))
    assert keys_of(two.candidates("ctx")) == {"a", "b"}  # bootstrap
    matcher = SemanticMatcher(guard="off")
    match = matcher.best("query b", vec(1), two.candidates("ctx"))
    assert match is not None and match.key == "b" and match.similarity == pytest.approx(1.0)
    assert matcher.best("query c", vec(5), two.candidates("ctx")) is None  # orthogonal: below the threshold
    clock.t += 1
    one.put(entry("c", 3))  # a fourth entry: the least recently used ("a") is evicted by replica one
    assert keys_of(two.candidates("ctx")) == {"b", "c"}  # the put and the delete came through the stream
    clock.t += 61
    assert keys_of(two.candidates("ctx")) == set()  # expired, though nobody deleted them
    assert matcher.best("query c", vec(3), two.candidates("ctx")) is None


def test_a_replica_that_fell_behind_a_trimmed_stream_reloads(redis_url):
    import redis

    clock = Clock()
    one, two = stores(redis_url, "si2:", clock)
    one.put(entry("a", 0))
    assert keys_of(two.candidates("ctx")) == {"a"}
    for i in range(5):
        one.put(entry(f"n{i}", i))
    redis.Redis.from_url(redis_url).xtrim("si2:idx", maxlen=1, approximate=False)  # events two never read are gone
    assert keys_of(two.candidates("ctx")) == {"a", "n0", "n1", "n2", "n3", "n4"}  # reloaded from the entries


def test_clear_empties_every_mirror_and_the_mirror_is_bounded(redis_url):
    clock = Clock()
    one, two = stores(redis_url, "si3:", clock)
    one.put(entry("a", 0))
    assert keys_of(two.candidates("ctx")) == {"a"}
    one.clear()
    assert keys_of(two.candidates("ctx")) == set()
    one.put(entry("b", 1))
    assert keys_of(two.candidates("ctx")) == {"b"}

    from thrifty.serving.cache import RedisStore

    small = RedisStore(redis_url, prefix="si3:", clock=clock, max_entries=2)
    for i in range(4):
        one.put(entry(f"m{i}", i))
    assert keys_of(small.candidates("ctx")) == {"m2", "m3"}  # at most max_entries mirrored, newest kept
    assert len(small.index) == 2


def test_refresh_interval_bounds_staleness(redis_url):
    clock = Clock()
    one, two = stores(redis_url, "si4:", clock, index_refresh_s=5.0)
    one.put(entry("a", 0))
    assert keys_of(two.candidates("ctx")) == {"a"}
    one.put(entry("b", 1))
    assert keys_of(two.candidates("ctx")) == {"a"}  # within the refresh interval: not read yet
    clock.t += 5
    assert keys_of(two.candidates("ctx")) == {"a", "b"}
