"""The pure audit logic: seeded sampling, match judges, LLM-judge verdicts, and one audit driven with
fake tiers and a fake judge (pure logic: no I/O is faked away that the e2e tests do not run for real)."""

from __future__ import annotations

import asyncio
import math
import uuid

import pytest

from thrifty.calibration.audit import (
    AuditFailed,
    TierAnswer,
    agree_key,
    audit_sampled,
    llm_verdicts,
    match_verdict,
    rubric_version,
    run_audit,
)
from thrifty.errors import ProviderError
from thrifty.types import Completion, Usage


def test_sampling_is_reproducible_and_hits_the_rate() -> None:
    ids = [f"req_{uuid.uuid5(uuid.NAMESPACE_OID, str(i)).hex[:24]}" for i in range(20_000)]
    first = [audit_sampled(r, 0.1, seed=3) for r in ids]
    assert first == [audit_sampled(r, 0.1, seed=3) for r in ids]  # same id, same seed: same answer
    share = sum(first) / len(ids)
    assert abs(share - 0.1) < 4 * math.sqrt(0.1 * 0.9 / len(ids))  # binomial, 4 sigma
    other = [audit_sampled(r, 0.1, seed=4) for r in ids]
    assert first != other  # the seed changes the sample
    assert all(audit_sampled(r, 1.0) for r in ids[:100]) and not any(audit_sampled(r, 0.0) for r in ids[:100])
    # nested: every id sampled at 5% is also sampled at 10% (one uniform draw per id)
    assert all(b for a, b in zip((audit_sampled(r, 0.05, 3) for r in ids), first) if a)


def test_agree_normalises_and_uses_choices() -> None:
    assert agree_key("Up.\n\nNews: gold rallies") == "up"
    assert agree_key('  \n  "Down!" ') == "down"
    assert agree_key("I think it went down today", ["up", "down", "neutral"]) == "down"
    assert agree_key("no label here", ["up", "down"]) == "no label here"
    assert match_verdict("agree", "up", "UP.\nmore text") == (1.0, "up")
    assert match_verdict("agree", "down", "up")[0] == 0.0
    with pytest.raises(AuditFailed):
        match_verdict("agree", "up", "   ")


def test_exact_numeric_choice_against_the_reference() -> None:
    assert match_verdict("exact", " Paris. ", "paris")[0] == 1.0
    assert match_verdict("exact", "Paris, France", "paris")[0] == 0.0
    assert match_verdict("numeric", "so the answer is 1,234.0", "#### 1234")[0] == 1.0
    assert match_verdict("numeric", "about 12", "#### 1234")[0] == 0.0
    with pytest.raises(AuditFailed):
        match_verdict("numeric", "12", "no number")
    assert match_verdict("choice", "It is neutral", "neutral, I think", ["up", "down", "neutral"])[0] == 1.0
    assert match_verdict("choice", "up", "neutral", ["up", "down", "neutral"])[0] == 0.0
    with pytest.raises(AuditFailed):
        match_verdict("choice", "up", "sideways", ["up", "down"])
    assert rubric_version("match:agree", None) == "match-agree-v1"
    assert rubric_version("judge-model", "pairwise") == "pairwise-v1"
    assert rubric_version("judge-model", "absolute") == "absolute-v1"


def _ask(replies: list[str], cost: float = 0.001):
    prompts: list[str] = []

    async def ask(text: str) -> Completion:
        prompts.append(text)
        return Completion(text=replies[len(prompts) - 1], model="judge", cost_usd=cost)

    return ask, prompts


def test_absolute_verdicts_compare_ratings_with_the_reference() -> None:
    ask, prompts = _ask(["7]]", "9]]", "[[5]]"])
    verdicts, paid = asyncio.run(llm_verdicts(ask, "absolute", "Q?", {"a": "x", "ref": "y", "b": "z"}, "ref"))
    assert prompts[0].count("[Answer]\ny") == 1  # the reference is rated first
    assert verdicts["ref"].quality == pytest.approx(6 / 9) and verdicts["ref"].at_least_as_good
    assert verdicts["a"].quality == pytest.approx(8 / 9) and verdicts["a"].at_least_as_good and verdicts["a"].verdict == "9"
    assert verdicts["b"].quality == pytest.approx(4 / 9) and not verdicts["b"].at_least_as_good
    assert verdicts["b"].raw == "[[5]]" and paid == pytest.approx(0.003)


def test_pairwise_verdicts_average_both_orders() -> None:
    ask, prompts = _ask(["A]]", "A]]", "C]]", "B]]"])
    verdicts, paid = asyncio.run(llm_verdicts(ask, "pairwise", "Q?", {"a": "x", "ref": "y", "b": "z"}, "ref"))
    assert verdicts["ref"].quality == 0.5 and verdicts["ref"].verdict == "reference"
    assert verdicts["a"].quality == 0.5 and verdicts["a"].verdict == "A,A" and verdicts["a"].at_least_as_good  # position bias cancels
    assert verdicts["b"].quality == 0.75 and verdicts["b"].raw == "C]] ||| B]]"
    assert "[Answer A]\nx" in prompts[0] and "[Answer B]\nx" in prompts[1]  # both orders
    assert paid == pytest.approx(0.004)


def test_unparseable_or_failing_judge_raises_with_what_it_paid() -> None:
    ask, _ = _ask(["7]]", "no idea"])
    with pytest.raises(AuditFailed) as err:
        asyncio.run(llm_verdicts(ask, "absolute", "Q?", {"ref": "y", "a": "x"}, "ref"))
    assert err.value.cost_usd == pytest.approx(0.002) and "unparseable" in str(err.value)

    async def down(text: str) -> Completion:
        raise ProviderError("boom", provider="judge", status=503, retryable=True)

    with pytest.raises(AuditFailed, match="the judge failed"):
        asyncio.run(llm_verdicts(down, "pairwise", "Q?", {"ref": "y", "a": "x"}, "ref"))


def _tiers(answers: dict[str, str | Exception]):
    called: list[str] = []
    saved: list[TierAnswer] = []

    async def call(model: str) -> Completion:
        called.append(model)
        a = answers[model]
        if isinstance(a, Exception):
            raise a
        return Completion(text=a, model=model, usage=Usage(10, 2), cost_usd=0.01)

    async def save(ans: TierAnswer) -> None:
        saved.append(ans)

    return call, save, called, saved


def test_run_audit_reuses_served_answers_and_calls_the_rest() -> None:
    call, save, called, saved = _tiers({"mid": "down", "big": "Up."})
    have = {"small": TierAnswer("small", 0, "up", 0.002, reused=True)}
    r = asyncio.run(
        run_audit(
            tiers=("small", "mid", "big"),
            reference="big",
            served_model="small",
            explore="all",
            judge="match:agree",
            rubric=None,
            prompt="Q",
            have=have,
            call=call,
            saved=save,
        )
    )
    assert called == ["mid", "big"] and [s.model for s in saved] == ["mid", "big"]
    rows = {x["model"]: x for x in r.rows}
    assert rows["small"]["reused"] and rows["small"]["quality"] == 1.0 and rows["small"]["at_least_as_good"]
    assert rows["mid"]["quality"] == 0.0 and rows["mid"]["at_least_as_good"] is False and not rows["mid"]["reused"]
    assert rows["big"]["verdict"] == "reference" and rows["big"]["tier"] == 2 and rows["big"]["cost_usd"] == 0.01


def test_run_audit_keeps_a_failed_tier_and_fails_on_the_reference() -> None:
    boom = ProviderError("down", provider="x", status=503)
    call, save, called, _ = _tiers({"mid": boom, "big": "up"})
    r = asyncio.run(
        run_audit(
            tiers=("small", "mid", "big"),
            reference="big",
            served_model="small",
            explore="all",
            judge="match:agree",
            rubric=None,
            prompt="Q",
            have={"small": TierAnswer("small", 0, "up", reused=True)},
            call=call,
            saved=save,
        )
    )
    mid = next(x for x in r.rows if x["model"] == "mid")
    assert mid["quality"] is None and "down" in mid["error"]
    call, save, _, _ = _tiers({"big": boom})
    with pytest.raises(AuditFailed, match="reference big failed"):
        asyncio.run(
            run_audit(
                tiers=("small", "big"),
                reference="big",
                served_model="small",
                explore="all",
                judge="match:agree",
                rubric=None,
                prompt="Q",
                have={"small": TierAnswer("small", 0, "up", reused=True)},
                call=call,
                saved=save,
            )
        )


def test_explore_served_judges_only_the_served_answer() -> None:
    call, save, called, _ = _tiers({"mid": "x", "big": "up"})
    r = asyncio.run(
        run_audit(
            tiers=("small", "mid", "big"),
            reference="big",
            served_model="small",
            explore="served",
            judge="match:agree",
            rubric=None,
            prompt="Q",
            have={"small": TierAnswer("small", 0, "up", reused=True)},
            call=call,
            saved=save,
        )
    )
    assert called == ["big"] and sorted(x["model"] for x in r.rows) == ["big", "small"]
