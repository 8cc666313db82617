"""The embedded default's free answer checks, with the real local models: a wrong worked sum from the
135M tier scores 0 and escalates to the next tier (issue #16: "17*23 = 4056" was accepted before)."""

from __future__ import annotations

import asyncio
import importlib.util
import json

import pytest

from thrifty.cli.main import main
from thrifty.policy.drive import drive
from thrifty.scoring.verifiers import arithmetic_problem
from thrifty.types import ChatRequest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed")

QUESTIONS = ("What is 17*23?", "What is 48*12?", "What is 15*15?")


@pytest.fixture(autouse=True)
def no_config(monkeypatch):
    monkeypatch.delenv("THRIFTY_CONFIG", raising=False)


def test_wrong_arithmetic_from_the_small_tier_escalates():
    from thrifty.serving.local import GEMMA3, SMOLLM2, embedded_default

    policy, providers = embedded_default(max_tokens=48)
    caught = 0
    for q in QUESTIONS:
        req = ChatRequest.from_prompt(q)
        small = asyncio.run(providers[SMOLLM2].complete(req))
        problem = arithmetic_problem(req, small.text)
        score = policy.scorer.score(req, small, SMOLLM2)
        decision = drive(policy.plan(req), lambda k, req=req: asyncio.run(providers[policy.tiers[k]].complete(req)))
        if problem:  # the check fired: the answer is worth nothing and tier 1 is asked
            caught += 1
            assert score == 0.0, (q, small.text)
            assert decision.tier == 1 and decision.completion.model == GEMMA3 and not decision.steps[0].accepted
        else:  # a right (or number-free) answer is judged by the heuristic alone
            assert score == policy.scorer.inner.score(req, small, SMOLLM2)
    assert caught >= 1, "the 135M tier got every sum right: pick harder questions"


def test_ask_cli_escalates_a_wrong_sum(capsys):
    assert main(["ask", QUESTIONS[0], "--json", "--max-tokens", "48"]) == 0
    out = json.loads(capsys.readouterr().out)
    first = out["steps"][0]
    if first["accepted"]:  # the small tier got it right this time: its answer must recompute
        assert arithmetic_problem(ChatRequest.from_prompt(QUESTIONS[0]), out["answer"]) is None
    else:
        assert first["score"] == 0.0 and out["tiers_tried"] == ["smollm2-135m-instruct", "gemma-3-270m"]
