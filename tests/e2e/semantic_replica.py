"""One cache replica for tests: a process with its own ``CachedProvider`` over a shared Redis store.

    python semantic_replica.py REDIS_URL PREFIX UPSTREAM_BASE_URL

Reads one prompt per stdin line and answers one JSON line per prompt: ``{"cache", "text",
"matched"}``. The inner provider is a real OpenAI-compatible client of ``UPSTREAM_BASE_URL`` (the
test's HTTP upstream, labelled per replica), so a served text says which replica's upstream
answered it first. A line ``!clear`` clears the shared store.
"""

from __future__ import annotations

import asyncio
import json
import sys


def main() -> None:
    from thrifty.config.settings import ProviderSettings
    from thrifty.serving.cache import CachedProvider, RedisStore, SemanticMatcher
    from thrifty.serving.profiles import build_provider
    from thrifty.types import ChatRequest

    redis_url, prefix, base_url = sys.argv[1:4]
    inner = build_provider(ProviderSettings("up", "openai", "m", base_url=base_url, price_input=1.0, price_output=2.0, timeout_s=10))
    store = RedisStore(redis_url, prefix=prefix)
    cached = CachedProvider(inner, store, namespace="p", semantic=SemanticMatcher())
    loop = asyncio.new_event_loop()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        prompt = line.rstrip("\n")
        if prompt == "!clear":
            store.clear()
            print(json.dumps({"cleared": True}), flush=True)
            continue
        request = ChatRequest.from_prompt(prompt, model="thrifty/default", temperature=0)
        comp = loop.run_until_complete(cached.complete(request))
        matched = (comp.raw or {}).get("cache", {}).get("matched_query") if isinstance(comp.raw, dict) else None
        print(json.dumps({"cache": comp.cache, "text": comp.text, "matched": matched}), flush=True)


if __name__ == "__main__":
    main()
