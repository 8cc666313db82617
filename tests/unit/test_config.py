"""Config: TOML → frozen settings; every error names the key path and the fix."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from thrifty.config.settings import Settings, hash_key, load_settings, parse_settings
from thrifty.errors import ConfigError

GOOD = """
[server]
port = 9001
max_body_bytes = 2048
data_dir = "state"

[providers.small]
kind = "openai"
base_url = "http://127.0.0.1:8081/v1"
model = "smollm2"
prices = { input = 0.0, output = 0.0 }

[providers.big]
kind = "anthropic"
model = "claude-haiku-4-5"
api_key_env = "ANTHROPIC_API_KEY"
vision = true
max_tokens = 256

[providers.local]
kind = "llamacpp"
model_path = "builtin:gemma3"
mode = "completion"

[profiles.support]
tiers = ["small", "big"]
thresholds = [0.7]
system = "You are support for {profile}."
budget_usd = 5.0

[keys.alice]
sha256 = "%s"
limit_usd = 1.5
""" % hash_key("sk-alice")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "thrifty.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_no_config_means_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("THRIFTY_CONFIG", raising=False)
    s = load_settings(None)
    assert s == Settings()
    assert s.server.host == "127.0.0.1" and s.server.cors_origins == ()
    assert not s.auth_required and s.source is None


def test_full_file_parses_into_frozen_objects(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, GOOD))
    assert s.server.port == 9001 and s.server.max_body_bytes == 2048
    assert s.server.data_dir == tmp_path / "state"  # relative paths resolve next to the file
    assert s.providers["small"].base_url == "http://127.0.0.1:8081/v1"
    assert s.providers["big"].vision is True and s.providers["big"].max_tokens == 256
    assert s.providers["small"].price_input == 0.0
    assert s.providers["local"].model_path == "builtin:gemma3" and s.providers["local"].mode == "completion"
    prof = s.profiles["support"]
    assert prof.tiers == ("small", "big") and prof.thresholds == (0.7,) and prof.budget_usd == 5.0
    assert s.keys["alice"].sha256 == hashlib.sha256(b"sk-alice").hexdigest()
    assert s.key_by_hash(hash_key("sk-alice")).name == "alice" and s.key_by_hash(hash_key("nope")) is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.server.port = 1  # type: ignore[misc]


def test_env_var_points_at_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_CONFIG", str(write(tmp_path, GOOD)))
    assert load_settings().source == str(tmp_path / "thrifty.toml")


@pytest.mark.parametrize(
    "patch, key, fix_part",
    [
        (('tiers = ["small", "big"]', 'tiers = ["small", "huge"]'), "profiles.support.tiers[1]", "providers.huge"),
        (("thresholds = [0.7]", "thresholds = [0.7, 0.2]"), "profiles.support.thresholds", "one per tier"),
        (("thresholds = [0.7]", 'thresholds = ["high"]'), "profiles.support.thresholds[0]", "threshold"),
        (("thresholds = [0.7]", ""), "profiles.support.thresholds", "artefact"),
        (('kind = "anthropic"', 'kind = "bedrock"'), "providers.big.kind", "openai"),
        (("port = 9001", "port = 70000"), "server.port", "1–65535"),
        (("port = 9001", 'port = "9001"'), "server.port", "integer"),
        (('api_key_env = "ANTHROPIC_API_KEY"', 'api_key_env = "sk-ant-123-secret"'), "providers.big.api_key_env", "never put the key"),
        (('model_path = "builtin:gemma3"', ""), "providers.local.model_path", "GGUF"),
        (("budget_usd = 5.0", "budget_usd = -1"), "profiles.support.budget_usd", "≥ 0"),
        (("limit_usd = 1.5", "colour = 1"), "keys.alice.colour", "limit_usd"),
        (("budget_usd = 5.0", 'budget_usd = 5.0\nbudget_period = "weekly"'), "profiles.support.budget_period", '"day"'),
        (("limit_usd = 1.5", "limit_usd = 1.5\nlimit_period = 7"), "keys.alice.limit_period", "string"),
        (("max_body_bytes = 2048", "max_body_bytes = 0"), "server.max_body_bytes", "> 0"),
        (('base_url = "http://127.0.0.1:8081/v1"', 'base_url = "127.0.0.1:8081"'), "providers.small.base_url", "http://"),
    ],
)
def test_errors_name_the_key_and_the_fix(tmp_path: Path, patch: tuple[str, str], key: str, fix_part: str) -> None:
    text = GOOD.replace(*patch)
    assert text != GOOD
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert info.value.key == key
    assert fix_part in (info.value.fix or "") + str(info.value)


def test_plaintext_key_is_refused_and_not_echoed(tmp_path: Path) -> None:
    text = GOOD.replace(hash_key("sk-alice"), "sk-alice-plaintext")
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert info.value.key == "keys.alice.sha256" and "thrifty keys hash" in info.value.fix
    assert "sk-alice-plaintext" not in str(info.value)


def test_admin_key_is_a_hash_and_raw_mode_is_accepted() -> None:
    s = parse_settings(
        {
            "server": {"admin_sha256": hash_key("admin").upper()},
            "providers": {"g": {"kind": "llamacpp", "model_path": "/m.gguf", "mode": "raw"}},
        }
    )
    assert s.server.admin_sha256 == hash_key("admin") and s.providers["g"].mode == "raw"
    assert parse_settings({}).server.admin_sha256 is None
    with pytest.raises(ConfigError) as info:
        parse_settings({"server": {"admin_sha256": "admin-plaintext"}})
    assert info.value.key == "server.admin_sha256" and "admin-plaintext" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_settings({"providers": {"g": {"kind": "llamacpp", "model_path": "/m.gguf", "mode": "template"}}})
    assert info.value.key == "providers.g.mode" and "raw" in (info.value.fix or "")


def test_duplicate_key_hashes_are_refused() -> None:
    h = hash_key("same")
    with pytest.raises(ConfigError) as info:
        parse_settings({"keys": {"a": {"sha256": h}, "b": {"sha256": h}}})
    assert info.value.key == "keys.b.sha256"


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(write(tmp_path, "[server\nport = 1"))
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "absent.toml")
    assert info.value.key == "--config"


def test_artefact_must_exist_and_excludes_thresholds(tmp_path: Path) -> None:
    base = {
        "providers": {
            "a": {"kind": "openai", "prices": {"input": 0, "output": 0}},
            "b": {"kind": "openai", "prices": {"input": 1, "output": 1}},
        }
    }
    with pytest.raises(ConfigError) as info:
        parse_settings({**base, "profiles": {"p": {"tiers": ["a", "b"], "artefact": "nope.json"}}}, base_dir=tmp_path)
    assert info.value.key == "profiles.p.artefact" and "thrifty fit" in info.value.fix
    (tmp_path / "fit.json").write_text("{}")
    with pytest.raises(ConfigError) as info:
        parse_settings({**base, "profiles": {"p": {"tiers": ["a", "b"], "artefact": "fit.json", "thresholds": [0.5]}}}, base_dir=tmp_path)
    assert "not both" in str(info.value)
    s = parse_settings({**base, "profiles": {"p": {"tiers": ["a", "b"], "artefact": "fit.json"}}}, base_dir=tmp_path)
    assert s.profiles["p"].artefact == tmp_path / "fit.json"


def test_cli_overrides_server_fields() -> None:
    s = Settings().with_server(port=1234, host=None)
    assert s.server.port == 1234 and s.server.host == "127.0.0.1"


def test_hash_key_is_sha256_hex() -> None:
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_budget_periods_reach_the_gateway_ledger(tmp_path: Path) -> None:
    from thrifty.serving.budget import ledger_for
    from thrifty.store import LogStore

    text = GOOD.replace("budget_usd = 5.0", 'budget_usd = 5.0\nbudget_period = "month"').replace(
        "limit_usd = 1.5", 'limit_usd = 1.5\nlimit_period = "day"'
    )
    s = load_settings(write(tmp_path, text))
    assert s.profiles["support"].budget_period == "month" and s.keys["alice"].limit_period == "day"
    ledger = ledger_for(LogStore(tmp_path / "l.db"), s)
    assert ledger.period("profile", "support") == "month" and ledger.period("key", "alice") == "day"
    assert ledger.limit("key", "alice") == 1.5
    assert load_settings(write(tmp_path, GOOD)).profiles["support"].budget_period == "total"


def test_system_prompt_fills_in_the_utc_date_and_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    import time as _time

    from thrifty.serving.profiles import system_prompt

    monkeypatch.setattr(_time, "time", lambda: 1796083200.0 - 60)  # 2026-12-01 00:00 UTC minus a minute
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # local date there is already 1 December
    _time.tzset()
    try:
        assert system_prompt("Today is {date}; you serve {profile}.", "support") == "Today is 2026-11-30; you serve support."
    finally:
        monkeypatch.delenv("TZ")
        _time.tzset()
