"""Prompt adaptation as a provider wrapper: examples file, request rewriting, wrapper, config, wiring."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

from thrifty.config.settings import parse_settings
from thrifty.errors import ConfigError, DataError
from thrifty.serving.adapted_provider import AdaptedProvider, FewShotAdapter, read_examples
from thrifty.serving.prompt_adapt import Example, approx_tokens, example_id, format_example
from thrifty.types import ChatRequest, Completion, Usage

VOCAB = ("gold", "silver", "oil", "up", "rises", "gains", "down", "falls", "drops", "steady", "flat", "record")


class BagEmbedder:
    """Bag of a fixed vocabulary, L2-normalised: similarity = shared words. Counts its calls."""

    name = "bag"
    dim = len(VOCAB)
    calls: list[int] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        BagEmbedder.calls.append(len(texts))
        v = np.array([[t.lower().split().count(w) for w in VOCAB] for t in texts], dtype=np.float32) + 1e-3
        return v / np.linalg.norm(v, axis=1, keepdims=True)


POOL = [
    Example("gold rises to record", "up"),
    Example("gold falls sharply", "down"),
    Example("oil steady in asia", "neutral"),
    Example("silver gains again", "up"),
    Example("silver drops", "down"),
    Example("gold flat", "neutral"),
]
PREFIX = (
    "Please determine the price direction (up, down, neutral, or none).\n\n"
    "Q: copper up at noon\nA: up\n\nQ: zinc down at noon\nA: down\n\nQ: tin flat on monday\nA: neutral\n\n"
)


def adapter(**kw: Any) -> FewShotAdapter:
    return FewShotAdapter(POOL, BagEmbedder().embed, **{"k": 2, "budget_tokens": 1000, **kw})


class FakeTier:
    """Records every request; answers with a fixed label and usage = approx tokens of what it got."""

    name, model, tools, vision, price_in, price_out = "fake", "fake-1", True, False, 1.0, 2.0
    streams = True

    def __init__(self) -> None:
        self.seen: list[ChatRequest] = []
        self.closed = False

    async def complete(self, request: ChatRequest) -> Completion:
        self.seen.append(request)
        n = sum(approx_tokens(str(m.get("content"))) for m in request.messages)
        return Completion("up", self.model, Usage(n, 1), cost_usd=n * 1e-6)

    async def stream(self, request: ChatRequest):
        c = await self.complete(request)
        yield "u"
        yield "p"
        yield c

    async def aclose(self) -> None:
        self.closed = True


# ---- examples file ------------------------------------------------------------------------------
def test_read_examples_jsonl_csv_and_chat_rows(tmp_path: Path) -> None:
    j = tmp_path / "shots.jsonl"
    j.write_text(
        '{"input": "gold up", "output": "up"}\n'
        '{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "gold down"},'
        ' {"role": "assistant", "content": "down"}]}\n'
        '{"input": "oil", "output": 3}\n'
    )
    assert read_examples(j) == [Example("gold up", "up"), Example("gold down", "down"), Example("oil", "3")]
    c = tmp_path / "shots.csv"
    c.write_text("input,output\ngold up,up\n")
    assert read_examples(c) == [Example("gold up", "up")]


@pytest.mark.parametrize(
    "rows, line, field",
    [
        (['{"input": "a", "output": "b"}', '{"input": "a"}'], 2, "output"),
        (['{"input": "  ", "output": "b"}'], 1, "input"),
        (['{"messages": [{"role": "user", "content": "q"}]}'], 1, "output"),
        (['{"messages": "nope"}'], 1, "messages"),
    ],
)
def test_read_examples_names_file_line_and_field(tmp_path: Path, rows: list[str], line: int, field: str) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError) as exc:
        read_examples(p)
    assert exc.value.file == str(p) and exc.value.line == line and exc.value.field == field


# ---- rewriting ----------------------------------------------------------------------------------
def test_text_layout_replaces_the_fixed_shots_and_keeps_the_instruction() -> None:
    a = adapter(layout="text", strip_prefix=PREFIX)
    new, info = a.adapt(ChatRequest.from_prompt(PREFIX + "Q: gold falls after record\nA:"))
    body = new.messages[0]["content"]
    assert body.startswith("Please determine the price direction") and body.endswith("Q: gold falls after record\nA:")
    assert "copper" not in body and "zinc" not in body and "tin flat" not in body  # the fixed shots are gone
    assert format_example(Example("gold falls sharply", "down")) in body
    # the most similar shot sits right before the query
    assert body.index("gold rises to record") < body.index("gold falls sharply") < body.index("Q: gold falls after record")
    assert info == {
        "shots": 2,
        "shot_ids": [example_id(Example("gold rises to record", "up")), example_id(Example("gold falls sharply", "down"))],
        "stripped": True,
        "layout": "text",
        "tokens_saved": approx_tokens(PREFIX + "Q: gold falls after record\nA:") - approx_tokens(body),
    }


def test_text_layout_strip_saves_tokens_when_the_budget_is_smaller_than_the_prefix() -> None:
    a = adapter(layout="text", strip_prefix=PREFIX, k=8, budget_tokens=12)
    new, info = a.adapt(ChatRequest.from_prompt(PREFIX + "Q: silver drops again\nA:"))
    assert info is not None and info["shots"] == 1 and info["tokens_saved"] > 0
    shots_text = new.messages[0]["content"].split("\n\n")[1:-1]
    assert sum(approx_tokens(s) + 1 for s in shots_text) <= 12


def test_text_layout_wraps_a_plain_query_and_leaves_unprefixed_text() -> None:
    new, info = adapter(layout="text", strip_prefix=PREFIX).adapt(ChatRequest.from_prompt("oil steady"))
    assert info is not None and info["stripped"] is False
    assert new.messages[0]["content"].endswith("\n\nQ: oil steady\nA:") and "Please determine" not in new.messages[0]["content"]


def test_messages_layout_inserts_turn_pairs_after_the_system_prompt() -> None:
    req = ChatRequest(
        messages=({"role": "system", "content": "Answer with one word."}, {"role": "user", "content": "silver drops today"}),
        params={"temperature": 0},
    )
    new, info = adapter(k=3).adapt(req)
    roles = [m["role"] for m in new.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user", "assistant", "user"]
    assert new.messages[0] == req.messages[0] and new.messages[-1] == req.messages[-1] and new.params == req.params
    assert (new.messages[-3]["content"], new.messages[-2]["content"]) == ("silver drops", "down")  # most similar last
    assert info is not None and info["shots"] == 3 and info["tokens_saved"] < 0  # shots added, nothing stripped


@pytest.mark.parametrize(
    "messages",
    [
        ({"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "gold up"}),
        ({"role": "user", "content": [{"type": "text", "text": "gold"}, {"type": "image_url", "image_url": {"url": "x"}}]},),
        ({"role": "user", "content": "gold"}, {"role": "tool", "content": "42", "tool_call_id": "c"}),
        ({"role": "system", "content": "only a system prompt"},),
    ],
)
def test_history_images_and_tool_turns_pass_through(messages: tuple) -> None:
    req = ChatRequest(messages=messages)
    assert adapter().adapt(req) == (req, None)


def test_k_budget_and_the_selection_memo() -> None:
    BagEmbedder.calls.clear()
    a = adapter(k=8, budget_tokens=15)
    for _ in range(3):  # three tiers (or repeats) of one request: one query embedding
        new, info = a.adapt(ChatRequest.from_prompt("gold rises"))
    assert BagEmbedder.calls == [len(POOL), 1]
    shot_tokens = sum(
        approx_tokens(format_example(Example(u["content"], s["content"]))) + 1 for u, s in zip(new.messages[:-1:2], new.messages[1:-1:2])
    )
    assert 0 < shot_tokens <= 15 and info is not None and info["shots"] == (len(new.messages) - 1) // 2
    assert adapter(k=1).adapt(ChatRequest.from_prompt("gold rises"))[1]["shots"] == 1


def test_fingerprint_follows_every_setting() -> None:
    base = adapter().fingerprint
    assert adapter().fingerprint == base
    assert (
        len(
            {
                base,
                adapter(k=3).fingerprint,
                adapter(budget_tokens=9).fingerprint,
                adapter(layout="text").fingerprint,
                adapter(strip_prefix=PREFIX).fingerprint,
                FewShotAdapter(POOL[:-1], BagEmbedder().embed, k=2, budget_tokens=1000).fingerprint,
            }
        )
        == 6
    )


# ---- the provider wrapper -----------------------------------------------------------------------
def test_adapted_provider_sends_the_adapted_request_and_reports_it() -> None:
    tier = FakeTier()
    p = AdaptedProvider(tier, adapter(layout="text", strip_prefix=PREFIX, budget_tokens=12))
    assert (p.model, p.tools, p.vision, p.price_in, p.streams) == ("fake-1", True, False, 1.0, True)
    original = ChatRequest.from_prompt(PREFIX + "Q: gold falls\nA:")
    c = asyncio.run(p.complete(original))
    assert tier.seen[-1].messages != original.messages and "copper" not in tier.seen[-1].messages[0]["content"]
    assert c.adaptation is not None and c.adaptation["tokens_saved"] > 0
    assert c.usage.input_tokens < approx_tokens(original.messages[0]["content"])  # usage is what was sent

    async def streamed() -> list:
        return [x async for x in p.stream(original)]

    items = asyncio.run(streamed())
    assert items[:2] == ["u", "p"] and items[-1].adaptation == c.adaptation
    asyncio.run(p.aclose())
    assert tier.closed


def test_unadapted_requests_carry_no_adaptation() -> None:
    c = asyncio.run(
        AdaptedProvider(FakeTier(), adapter()).complete(
            ChatRequest(
                messages=({"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"})
            )
        )
    )
    assert c.adaptation is None


# ---- config -------------------------------------------------------------------------------------
def _doc(tmp_path: Path, pa: dict[str, Any], **profile: Any) -> dict[str, Any]:
    (tmp_path / "shots.jsonl").write_text("".join(json.dumps({"input": e.input, "output": e.output}) + "\n" for e in POOL))
    return {
        "providers": {
            "a": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "prices": {"input": 1, "output": 2}},
            "b": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "prices": {"input": 5, "output": 9}},
        },
        "profiles": {"p": {"tiers": ["a", "b"], "thresholds": [0.5], "prompt_adaptation": pa, **profile}},
    }


def test_config_parses_with_defaults_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "prefix.txt").write_text(PREFIX)
    s = parse_settings(
        _doc(tmp_path, {"examples": "shots.jsonl", "strip_prefix": "prefix.txt", "layout": "text", "tiers": ["b"]}), base_dir=tmp_path
    )
    pa = s.profiles["p"].prompt_adaptation
    assert pa is not None and pa.examples == tmp_path / "shots.jsonl" and pa.strip_prefix == tmp_path / "prefix.txt"
    assert (pa.k, pa.budget_tokens, pa.layout, pa.embedder, pa.tiers) == (8, 80, "text", "minilm", ("b",))
    assert parse_settings(_doc(tmp_path, {"examples": "shots.jsonl"}), base_dir=tmp_path).profiles["p"].prompt_adaptation.tiers is None


@pytest.mark.parametrize(
    "pa, key, fix",
    [
        ({}, "profiles.p.prompt_adaptation.examples", "examples ="),
        ({"examples": "missing.jsonl"}, "profiles.p.prompt_adaptation.examples", "input"),
        ({"examples": "shots.jsonl", "layout": "chat"}, "profiles.p.prompt_adaptation.layout", "messages"),
        ({"examples": "shots.jsonl", "k": 0}, "profiles.p.prompt_adaptation.k", "integer"),
        ({"examples": "shots.jsonl", "budget_tokens": 2.5}, "profiles.p.prompt_adaptation.budget_tokens", "integer"),
        ({"examples": "shots.jsonl", "tiers": ["c"]}, "profiles.p.prompt_adaptation.tiers[0]", "a, b"),
        ({"examples": "shots.jsonl", "strip_prefix": "nope.txt"}, "profiles.p.prompt_adaptation.strip_prefix", "prefix"),
        ({"examples": "shots.jsonl", "shots": 3}, "profiles.p.prompt_adaptation.shots", "budget_tokens"),
        ("yes", "profiles.p.prompt_adaptation", "examples"),
    ],
)
def test_config_errors_name_the_key_and_the_fix(tmp_path: Path, pa: Any, key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_settings(_doc(tmp_path, pa), base_dir=tmp_path)
    assert exc.value.key == key and fix in (exc.value.fix or "")


def _built(tmp_path: Path, pa: dict[str, Any], **profile: Any):
    from thrifty.serving.profiles import build_profile

    s = parse_settings(_doc(tmp_path, {"embedder": "test_prompt_provider:BagEmbedder", **pa}, **profile), base_dir=tmp_path)
    tiers = {"a": FakeTier(), "b": FakeTier()}
    return build_profile(s, s.profiles["p"], tiers), tiers


def test_bad_examples_row_fails_the_build_with_file_line_field(tmp_path: Path) -> None:
    from thrifty.serving.profiles import build_profile

    s = parse_settings(_doc(tmp_path, {"examples": "shots.jsonl"}), base_dir=tmp_path)
    (tmp_path / "shots.jsonl").write_text('{"input": "x", "output": "y"}\n{"input": "x", "label": "y"}\n')
    with pytest.raises(ConfigError) as exc:
        build_profile(s, s.profiles["p"], {"a": FakeTier(), "b": FakeTier()})
    assert exc.value.key == "profiles.p.prompt_adaptation.examples"
    assert f"{tmp_path / 'shots.jsonl'}:2: field 'output'" in str(exc.value)


def test_unknown_embedder_is_a_config_error_at_build(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        _built(tmp_path, {"examples": "shots.jsonl", "embedder": "nosuchmodule_xyz:Factory"})
    assert exc.value.key == "profiles.p.prompt_adaptation.embedder"


def test_only_the_named_tiers_are_adapted_and_share_one_adapter(tmp_path: Path) -> None:
    built, raw = _built(tmp_path, {"examples": "shots.jsonl", "tiers": ["b"]})
    assert built.tiers["a"] is raw["a"] and isinstance(built.tiers["b"], AdaptedProvider)
    built, _ = _built(tmp_path, {"examples": "shots.jsonl"})
    assert built.tiers["a"].adapter is built.tiers["b"].adapter


def test_cache_sits_in_front_and_keys_the_original_request(tmp_path: Path) -> None:
    from thrifty.serving.cache import CachedProvider

    built, raw = _built(tmp_path, {"examples": "shots.jsonl", "k": 2}, cache={"mode": "exact", "path": str(tmp_path / "cache.sqlite")})
    tier = built.tiers["a"]
    assert isinstance(tier, CachedProvider) and isinstance(tier.inner, AdaptedProvider)
    assert tier.namespace == f"p/a/fake-1/shots:{tier.inner.fingerprint}"
    req = ChatRequest.from_prompt("gold rises again", temperature=0)
    first = asyncio.run(tier.complete(req))
    second = asyncio.run(tier.complete(req))
    assert (first.cache, second.cache) == ("miss", "hit") and len(raw["a"].seen) == 1
    assert len(raw["a"].seen[0].messages) == 5  # the upstream got 2 shots; the hit sent nothing
    assert first.adaptation is not None and second.adaptation is None
    tier.close()
