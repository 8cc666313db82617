"""``[profiles.NAME.refit]``: parsed into RefitConfig; bad values name the key and the fix."""

from __future__ import annotations

import pytest

from thrifty.config.settings import RefitConfig, parse_settings
from thrifty.errors import ConfigError


def _doc(refit: dict) -> dict:
    return {
        "providers": {
            "a": {"kind": "openai", "model": "a", "base_url": "http://x/v1"},
            "b": {"kind": "openai", "model": "b", "base_url": "http://x/v1"},
        },
        "profiles": {"p": {"tiers": ["a", "b"], "thresholds": [0.5], "refit": refit}},
    }


def test_defaults_and_values() -> None:
    assert parse_settings(_doc({})).profiles["p"].refit == RefitConfig()
    r = parse_settings(_doc({"every": 50, "target": 0.9, "step": 0.1, "folds": 4, "mean_cost_usd": 0.001})).profiles["p"].refit
    assert (r.every, r.target, r.step, r.folds, r.mean_cost_usd) == (50, 0.9, 0.1, 4, 0.001)
    no_refit = _doc({})
    del no_refit["profiles"]["p"]["refit"]
    assert parse_settings(no_refit).profiles["p"].refit is None


@pytest.mark.parametrize(
    ("refit", "key", "fix"),
    [
        ({"every": 0}, "profiles.p.refit.every", "every = 200"),
        ({"every": 2.5}, "profiles.p.refit.every", "every = 200"),
        ({"target": 0}, "profiles.p.refit.target", "target = 0.95"),
        ({"target": 1.2}, "profiles.p.refit.target", "target = 0.95"),
        ({"target": True}, "profiles.p.refit.target", "target = 0.95"),
        ({"folds": 1}, "profiles.p.refit.folds", "folds = 3"),
        ({"step": 0}, "profiles.p.refit.step", "step"),
        ({"evry": 3}, "profiles.p.refit.evry", "every"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(refit: dict, key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(_doc(refit))
    assert err.value.key == key and fix in (err.value.fix or "")


def test_share_z_key() -> None:
    from thrifty.gateway.learning import loop_config

    r = parse_settings(_doc({"share_z": 1.645})).profiles["p"].refit
    assert r.share_z == 1.645 and loop_config(r).share_z == 1.645
    assert parse_settings(_doc({})).profiles["p"].refit.share_z == 1.0
    for bad in (-1, 6, "1", True):
        with pytest.raises(ConfigError) as e:
            parse_settings(_doc({"share_z": bad}))
        assert e.value.key == "profiles.p.refit.share_z" and "share_z = 1.0" in (e.value.fix or "")
