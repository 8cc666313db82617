"""Prompt adaptation: few-shot selection under a token budget, batched prompts and answer splitting."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from thrifty.serving.prompt_adapt import (
    Example,
    ShotSelector,
    approx_tokens,
    batch_prompt,
    complete_batched,
    few_shot_prompt,
    format_example,
    match_label,
    split_answers,
)
from thrifty.types import ChatRequest, Completion

LABELS = ("up", "down", "neutral", "none")


def bag_embed(texts):
    """A deterministic bag-of-words embedder (tests the selection logic, not MiniLM)."""
    vocab = ["gold", "up", "down", "rises", "falls", "silver", "oil", "steady", "india", "dollar"]
    out = np.zeros((len(texts), len(vocab)), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().split():
            if w in vocab:
                out[i, vocab.index(w)] += 1
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1, norms)


POOL = [
    Example("gold rises on weak dollar", "up"),
    Example("silver falls as dollar firms", "down"),
    Example("oil steady in asia", "neutral"),
    Example("india imports more gold this year than ever before in its long history of trade", "none"),
    Example("gold falls", "down"),
]


def test_selection_picks_most_similar_and_puts_best_last():
    sel = ShotSelector(POOL, bag_embed)
    shots = sel.select("gold falls sharply on strong dollar", k=2)
    assert len(shots) == 2
    assert shots[-1].input == "gold falls"  # the nearest example sits right before the query
    assert {s.output for s in shots} <= {"down", "up"}


def test_selection_respects_token_budget_and_k():
    sel = ShotSelector(POOL, bag_embed)
    everything = sel.select("gold", k=10)
    assert len(everything) == len(POOL)
    budget = approx_tokens(format_example(POOL[4])) + 1
    tight = sel.select("gold falls today", k=10, budget_tokens=budget)
    assert tight == [POOL[4]]
    small = sel.select("india gold trade", k=10, budget_tokens=12)
    assert all(s.input != POOL[3].input for s in small)  # the long example never fits
    assert sum(approx_tokens(format_example(s)) + 1 for s in small) <= 12
    assert sel.select("gold", k=0) == [] and sel.select("gold", budget_tokens=0) == []


def test_selection_excludes_the_query_itself():
    sel = ShotSelector(POOL, bag_embed)
    assert all(s.input != "gold falls" for s in sel.select("gold falls", k=3))


def test_selector_rejects_mismatched_vectors():
    with pytest.raises(ValueError):
        ShotSelector(POOL, bag_embed, vectors=np.zeros((2, 10)))


def test_few_shot_prompt_layout():
    p = few_shot_prompt("Classify.", [POOL[0]], "gold up")
    assert p == "Classify.\n\nQ: gold rises on weak dollar\nA: up\n\nQ: gold up\nA:"


def test_batch_prompt_numbers_queries_and_demonstrations():
    p = batch_prompt("Classify.", ["a", "b"], shots=[[POOL[0], POOL[1]]])
    assert p.endswith("Q1: a\nQ2: b\nA1:")
    assert "Q1: gold rises on weak dollar\nQ2: silver falls as dollar firms\nA1: up\nA2: down" in p
    with pytest.raises(ValueError):
        batch_prompt("x", [])


@pytest.mark.parametrize(
    "text, expected",
    [
        (" up\nA2: down\nA3: none\nA4: neutral", ["up", "down", "none", "neutral"]),
        (" Up.\nA3: none\nA2: DOWN\nA4: neutral\nA5: up", ["up", "down", "none", "neutral"]),  # order, case, extra
        (" up\n2. down\n3) none\n4 - neutral", ["up", "down", "none", "neutral"]),
        (" up\nA2: down", ["up", "down", None, None]),  # truncated: missing ones are None
        (" up\nA2: sideways\nA3: none\nA4: none", ["up", None, "none", "none"]),  # not a label
        (" up, down, none, neutral", ["up", "down", "none", "neutral"]),  # one line
        (" up\nA2: down\nA2: up\nQ5: echo\nA4: none", ["up", "down", None, "none"]),  # first answer wins
    ],
)
def test_split_answers(text, expected):
    assert split_answers(text, 4, LABELS) == expected


def test_split_answers_without_labels_keeps_text():
    assert split_answers(" Paris\nA2: Rome ", 2) == ["Paris", "Rome"]


def test_match_label():
    assert match_label(" Down, sharply", LABELS) == "down"
    assert match_label("unclear", LABELS) is None
    assert match_label(None, LABELS) is None


class ScriptedProvider:
    """Answers a batch prompt with a fixed reply per call and records the prompts it got."""

    name = "scripted"

    def __init__(self, replies):
        self.replies = list(replies)
        self.prompts = []

    async def complete(self, request: ChatRequest) -> Completion:
        self.prompts.append(request.prompt_text)
        return Completion(text=self.replies.pop(0), model="m")


def test_complete_batched_retries_unparsed_answers_one_by_one():
    provider = ScriptedProvider([" up\nA2: ???\nA3: down", "neutral", " up\nA2: none"])
    answers, paid = asyncio.run(complete_batched(provider, "Classify.", ["q1", "q2", "q3", "q4", "q5"], size=3, labels=LABELS))
    assert answers == ["up", "neutral", "down", "up", "none"]
    assert len(paid) == 3
    assert provider.prompts[0].endswith("Q1: q1\nQ2: q2\nQ3: q3\nA1:")
    assert provider.prompts[1].endswith("Q: q2\nA:")
    assert provider.prompts[2].endswith("Q1: q4\nQ2: q5\nA1:")
