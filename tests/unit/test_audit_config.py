"""``[profiles.NAME.audit]``: parsed into AuditSettings; every bad value is a ConfigError naming the key path and the fix."""

from __future__ import annotations

import pytest

from thrifty.config.audit import AuditSettings
from thrifty.config.settings import parse_settings
from thrifty.errors import ConfigError


def _doc(audit: dict | None, **profile_extra) -> dict:
    providers = {
        "small": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "prices": {"input": 0.1, "output": 0.2}},
        "big": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "prices": {"input": 1.0, "output": 2.0}},
        "grader": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1"},
    }
    profile = {"tiers": ["small", "big"], "thresholds": [0.7], **profile_extra}
    if audit is not None:
        profile["audit"] = audit
    return {"providers": providers, "profiles": {"support": profile, "other": {"tiers": ["big"]}}}


def test_a_full_audit_table_parses() -> None:
    s = parse_settings(
        _doc(
            {
                "rate": 0.02,
                "judge": "grader",
                "rubric": "absolute",
                "reference": "big",
                "explore": "all",
                "budget_usd": 5.0,
                "budget_period": "day",
                "seed": 7,
                "queue_size": 10,
                "max_attempts": 4,
            }
        )
    )
    a = s.profiles["support"].audit
    assert a == AuditSettings(
        rate=0.02,
        judge="grader",
        rubric="absolute",
        reference="big",
        explore="all",
        budget_usd=5.0,
        budget_period="day",
        seed=7,
        queue_size=10,
        max_attempts=4,
    )
    assert a.match is None
    assert s.profiles["other"].audit is None


def test_defaults_and_match_judges() -> None:
    a = parse_settings(_doc({"rate": 1, "judge": "match:agree"})).profiles["support"].audit
    assert (a.rate, a.match, a.reference, a.explore, a.budget_usd, a.budget_period, a.seed) == (1.0, "agree", None, "all", None, "total", 0)
    c = parse_settings(_doc({"rate": 0, "judge": "match:choice", "choices": ["up", "down"]})).profiles["support"].audit
    assert c.choices == ("up", "down")
    # an LLM judge may be another profile, by name or model id
    assert parse_settings(_doc({"rate": 0.5, "judge": "thrifty/other"})).profiles["support"].audit.judge == "thrifty/other"
    assert parse_settings(_doc({"rate": 0.5, "judge": "other"})).profiles["support"].audit.judge == "other"


@pytest.mark.parametrize(
    "audit, key, fix",
    [
        ({"rate": 1.5, "judge": "match:agree"}, "profiles.support.audit.rate", "rate = 0.02"),
        ({"rate": -0.1, "judge": "match:agree"}, "profiles.support.audit.rate", "rate = 0.02"),
        ({"rate": True, "judge": "match:agree"}, "profiles.support.audit.rate", "rate = 0.02"),
        ({"rate": "often", "judge": "match:agree"}, "profiles.support.audit.rate", "rate = 0.02"),
        ({"judge": "match:agree"}, "profiles.support.audit.rate", "add rate"),
        ({"rate": 0.1}, "profiles.support.audit.judge", "add judge"),
        ({"rate": 0.1, "judge": "gpt-9"}, "profiles.support.audit.judge", "match:exact|choice|numeric|agree"),
        ({"rate": 0.1, "judge": "match:fuzzy"}, "profiles.support.audit.judge", "match:agree"),
        ({"rate": 0.1, "judge": "match:agree", "rubric": "pairwise"}, "profiles.support.audit.rubric", "LLM judge"),
        ({"rate": 0.1, "judge": "grader", "rubric": "vibes"}, "profiles.support.audit.rubric", "absolute, pairwise"),
        ({"rate": 0.1, "judge": "match:agree", "reference": "nope"}, "profiles.support.audit.reference", "small, big"),
        ({"rate": 0.1, "judge": "match:agree", "explore": "some"}, "profiles.support.audit.explore", '"all"'),
        ({"rate": 0.1, "judge": "match:choice"}, "profiles.support.audit.choices", "choices = ["),
        ({"rate": 0.1, "judge": "match:agree", "choices": "up"}, "profiles.support.audit.choices", "choices = ["),
        ({"rate": 0.1, "judge": "match:agree", "budget_usd": -1}, "profiles.support.audit.budget_usd", "≥ 0"),
        ({"rate": 0.1, "judge": "match:agree", "budget_period": "week"}, "profiles.support.audit.budget_period", '"day"'),
        ({"rate": 0.1, "judge": "match:agree", "queue_size": 0}, "profiles.support.audit.queue_size", "> 0"),
        ({"rate": 0.1, "judge": "match:agree", "max_attempts": 1.5}, "profiles.support.audit.max_attempts", "integer"),
        ({"rate": 0.1, "judge": "match:agree", "every": 50}, "profiles.support.audit.every", "rate, judge"),
        ({"rate": 0.1, "judge": "match:agree", "sampling": "stratified"}, "profiles.support.audit.sampling", "near_threshold"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(audit: dict, key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(_doc(audit))
    assert err.value.key == key, str(err.value)
    assert fix in str(err.value) and err.value.fix, str(err.value)


def test_audit_must_be_a_table() -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(_doc(0.5))  # type: ignore[arg-type]
    assert err.value.key == "profiles.support.audit"


def test_budget_periods_match_the_ledger() -> None:
    from thrifty.config.audit import _PERIODS
    from thrifty.serving.budget import PERIODS

    assert _PERIODS == PERIODS


def test_sampling_key() -> None:
    assert parse_settings(_doc({"rate": 0.1, "judge": "match:agree"})).profiles["support"].audit.sampling == "uniform"
    a = parse_settings(_doc({"rate": 0.1, "judge": "match:agree", "sampling": "near_threshold"})).profiles["support"].audit
    assert a.sampling == "near_threshold"
