"""Deterministic answer checks (thrifty.scoring.verifiers) and the scorer that applies them."""

from __future__ import annotations

import pytest

from thrifty.scoring.heuristic import HeuristicScorer
from thrifty.scoring.verifiers import VerifiedScorer, arithmetic_problem, build_checks, json_problem, python_problem, regex_check
from thrifty.types import ChatRequest, Completion


def req(text: str, **params) -> ChatRequest:
    return ChatRequest.from_prompt(text, **params)


@pytest.mark.parametrize(
    "answer", ["17*23 = 4056", "17 × 23 = 4056.", "The answer is 4056.", "First 17 x 20 = 340, then 17 x 3 = 51, so 17*23 = 392"]
)
def test_arithmetic_catches_wrong_results(answer):
    assert arithmetic_problem(req("What is 17*23?"), answer)


@pytest.mark.parametrize(
    "answer",
    [
        "17*23 = 391",
        "17 × 23 = 391.",
        "The answer is 391.",
        "17 x 20 = 340 and 17 x 3 = 51, so 340 + 51 = 391",
        "1,000 + 234 = 1,234",
        "10 / 3 = 3.33",
        "2^10 = 1024",
        "(3 + 4) * 2 = 14",
    ],
)
def test_arithmetic_accepts_right_results(answer):
    assert arithmetic_problem(req("What is 17*23?" if "391" in answer else "Add these up."), answer) is None


@pytest.mark.parametrize(
    "prompt,answer",
    [
        ("Tell me about the year 1990.", "In 1990 - 1991 = a lot happened."),  # not a worked step: '=' then no number
        ("Write a poem.", "Roses are red, violets are blue."),
        ("What is 17*23?", "I think you should use a calculator."),  # states no number: the heuristic judges it
        ("Phone?", "Call 555-1234 = my number"),  # no number after '=': not a worked step
        ("When?", "The date 1990-05-12 = 34 years ago"),  # a date, not a subtraction
    ],
)
def test_arithmetic_stays_quiet_where_it_does_not_apply(prompt, answer):
    assert arithmetic_problem(req(prompt), answer) is None


def test_json_with_response_format_must_parse_and_match_the_schema():
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    r = req("Give me JSON", response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert json_problem(r, '{"age": 3}') is None
    assert "schema" in json_problem(r, '{"age": "three"}')
    assert "not the JSON" in json_problem(r, "Sure! here it is: {age: 3}")
    assert json_problem(r, '```json\n{"age": 4}\n```') is None
    obj = req("JSON please", response_format={"type": "json_object"})
    assert "not an object" in json_problem(obj, "[1, 2]")
    assert json_problem(req("hi"), "no json here") is None  # no response_format, no json block: does not apply
    assert "does not parse" in json_problem(req("hi"), "```json\n{'a': 1}\n```")


def test_python_blocks_must_parse():
    assert python_problem(req("Write a python function"), "```python\ndef f(x):\n    return x + 1\n```") is None
    assert "does not parse" in python_problem(req("Write code"), "```py\ndef f(x)\n    return x\n```")
    assert "does not parse" in python_problem(req("in Python please"), "```\nfor i in range(3) print(i)\n```")
    assert python_problem(req("Write a shell loop"), "```\nfor i in 1 2 3; do echo $i; done\n```") is None  # unlabelled, not Python


def test_regex_check_and_bad_specs():
    c = regex_check(r"^\d{4}-\d{2}-\d{2}$")
    assert c.run(req("date?"), "2026-12-02") is None
    assert "does not match" in c.run(req("date?"), "December 2nd")
    with pytest.raises(ValueError, match="invalid regular expression"):
        regex_check("(")
    with pytest.raises(ValueError, match="unknown check"):
        build_checks(["json", "spelling"])
    assert [c.name for c in build_checks(["json", {"regex": "x+"}])] == ["json", "regex:x+"]


def test_verified_scorer_turns_a_failed_check_into_a_low_score():
    scorer = VerifiedScorer(HeuristicScorer(), build_checks(["arithmetic"]))
    r = req("What is 17*23?")
    good = Completion("17 * 23 = 391", model="m")
    bad = Completion("17*23 = 4056", model="m")
    assert scorer.score(r, good) == HeuristicScorer().score(r, good) > 0.5
    assert scorer.score(r, bad) == 0.0 and "arithmetic" in scorer.last_problems
    assert scorer.explain(r, bad)["check:arithmetic"] == 0.0
    assert scorer.score(r, None) == 0.0  # no answer: the inner scorer's verdict


def _doc(checks) -> dict:
    return {
        "providers": {
            "a": {"kind": "openai", "model": "x", "base_url": "http://127.0.0.1:9"},
            "b": {"kind": "openai", "model": "y", "base_url": "http://127.0.0.1:9"},
        },
        "profiles": {"p": {"tiers": ["a", "b"], "thresholds": [0.5], "checks": checks}},
    }


def test_profile_checks_parse_and_wrap_the_scorer():
    from thrifty.config.settings import parse_settings
    from thrifty.serving.profiles import profile_policy

    s = parse_settings(_doc(["arithmetic", {"regex": "^ANSWER: "}]))
    prof = s.profiles["p"]
    assert prof.checks == ("arithmetic", ("regex", "^ANSWER: "))
    policy = profile_policy(prof)
    assert isinstance(policy.scorer, VerifiedScorer)
    r = req("What is 2+2?")
    assert policy.scorer.score(r, Completion("ANSWER: 2+2 = 4", model="a")) > 0.5
    assert policy.scorer.score(r, Completion("ANSWER: 2+2 = 5", model="a")) == 0.0
    assert policy.scorer.score(r, Completion("4", model="a")) == 0.0  # the regex fails
    assert parse_settings(_doc(None)).profiles["p"].checks == ()


@pytest.mark.parametrize(
    "checks,key",
    [
        ("json", "profiles.p.checks"),
        (["spelling"], "profiles.p.checks[0]"),
        (["json", {"regex": "("}], "profiles.p.checks[1].regex"),
        ([{"regexp": "x"}], "profiles.p.checks[0]"),
    ],
)
def test_bad_checks_name_the_key(checks, key):
    from thrifty.config.settings import parse_settings
    from thrifty.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        parse_settings(_doc(checks))
    assert exc.value.key == key and exc.value.fix
