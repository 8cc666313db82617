"""Prompt adaptation end to end: ``thrifty serve`` with a ``[profiles.X.prompt_adaptation]`` profile in
front of the real Gemma-3-270M (llama.cpp, raw completion, 1 thread), the real MiniLM, the official
openai client.

Clients send a FrugalGPT-style prompt — a fixed 8-shot prefix and ``Q: <headline>`` / ``A:``. The
adapted profile strips the fixed shots and inserts the examples most similar to the headline under a
small budget; the test asserts that the model was sent fewer prompt tokens (llama.cpp's own count)
than the same request on an unadapted profile, that an answer came back, what the headers say, that
the log holds the tokens actually sent, and that the cache in front keys the original request.
The headlines, labels and prefix below are made up for this test.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import openai
import pytest

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed (pip install 'thrifty[local]')"
    ),
    pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None, reason="needs thrifty[embed]"),
]

sys.path.insert(0, str(Path(__file__).parent))
from gateway_proc import GatewayProcess, read_db  # noqa: E402

PREFIX = """Decide whether the headline says the gold price went up, down, stayed neutral, or none of these.

Q: gold climbs $4 to $1,310 an ounce in new york
A: up

Q: gold slips 0.5% as dollar firms
A: down

Q: bullion dealers report quiet trading ahead of holiday
A: neutral

Q: mining company appoints new chief financial officer
A: none

Q: gold futures rally to two-week high
A: up

Q: spot gold eases $3 in early london deals
A: down

Q: gold holds steady near $1,290 as markets wait for fed
A: neutral

Q: central bank publishes annual report on reserves
A: none

"""
EXAMPLES = [
    ("gold jumps $12 on safe-haven demand", "up"),
    ("gold gains 1% as treasury yields fall", "up"),
    ("gold rises to three-month peak", "up"),
    ("gold futures settle higher for third day", "up"),
    ("gold drops $9 as dollar rallies", "down"),
    ("gold falls 1.2% after strong jobs data", "down"),
    ("gold sinks to six-week low", "down"),
    ("gold futures settle lower on profit taking", "down"),
    ("gold flat as traders await inflation data", "neutral"),
    ("gold little changed in thin trade", "neutral"),
    ("gold steady ahead of central bank meeting", "neutral"),
    ("jeweller opens new store in mumbai", "none"),
    ("gold miner reports quarterly output", "none"),
    ("museum displays ancient gold coins", "none"),
]
QUERIES = ["gold falls $7 as dollar strengthens", "gold rises 0.8% on weak dollar", "gold little changed before fed decision"]
LABELS = {"up", "down", "neutral", "none"}


def test_adapted_profile_sends_fewer_tokens_and_answers(tmp_path: Path) -> None:
    from thrifty.serving.local import gemma3_path

    (tmp_path / "shots.jsonl").write_text("".join(json.dumps({"input": q, "output": a}) + "\n" for q, a in EXAMPLES))
    (tmp_path / "prefix.txt").write_text(PREFIX)
    gemma = (
        f'[providers.gemma]\nkind = "llamacpp"\nmodel_path = "{gemma3_path()}"\nmode = "raw"\nmax_tokens = 3\n'
        "prices = { input = 0.027, output = 0.027 }\noptions = { n_ctx = 1024 }\n\n"
    )
    toml = (
        gemma + '[profiles.fixed]\ntiers = ["gemma"]\n\n'
        '[profiles.adapted]\ntiers = ["gemma"]\n\n'
        f'[profiles.adapted.prompt_adaptation]\nexamples = "{tmp_path / "shots.jsonl"}"\n'
        f'strip_prefix = "{tmp_path / "prefix.txt"}"\nlayout = "text"\nk = 8\nbudget_tokens = 40\n\n'
        f'[profiles.adapted.cache]\nmode = "exact"\npath = "{tmp_path / "cache.sqlite"}"\n'
    )
    with GatewayProcess(toml, tmp_path / "gw", cli=True) as gw:
        client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)

        def ask(model: str, headline: str):
            raw = client.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": f"{PREFIX}Q: {headline}\nA:"}], max_tokens=3, temperature=0, stop=["\n"]
            )
            return raw.headers, raw.parse()

        sent: dict[str, int] = {}
        for headline in QUERIES:
            h0, fixed = ask("thrifty/fixed", headline)
            h1, adapted = ask("thrifty/adapted", headline)
            assert "x-thrifty-shots" not in h0 and "x-thrifty-prompt-tokens-saved" not in h0
            assert h1["x-thrifty-cache"] == "miss" and 1 <= int(h1["x-thrifty-shots"]) <= 8
            assert int(h1["x-thrifty-prompt-tokens-saved"]) > 0
            assert adapted.usage.prompt_tokens < fixed.usage.prompt_tokens, (adapted.usage, fixed.usage)
            assert adapted.choices[0].message.content.strip(), adapted  # an answer came back
            assert float(h1["x-thrifty-cost-usd"]) < float(h0["x-thrifty-cost-usd"])
            sent[headline] = adapted.usage.prompt_tokens
        print({"fixed_prompt_tokens": fixed.usage.prompt_tokens, "adapted_prompt_tokens": sent})
        labelled = sum(ask("thrifty/adapted", q)[1].choices[0].message.content.strip().lower() in LABELS for q in QUERIES)

        h2, again = ask("thrifty/adapted", QUERIES[0])  # the cache keys the request the client sent
        assert h2["x-thrifty-cache"] == "hit" and "x-thrifty-shots" not in h2 and float(h2["x-thrifty-cost-usd"]) == 0.0
        rows = read_db(
            gw.db_path,
            "SELECT s.input_tokens FROM steps s JOIN requests r ON r.id = s.request_id"
            " WHERE r.model_requested = 'thrifty/adapted' AND r.cache = 'miss' ORDER BY r.created",
        )
    assert [r[0] for r in rows[: len(QUERIES)]] == [sent[q] for q in QUERIES]  # the log holds what was sent
    assert labelled == len(QUERIES)  # similar shots in the FrugalGPT layout: the base model answers with a label
