"""``thrifty audit report``: time parsing, the JSON and table outputs, clear errors; a bad audit config stops ``thrifty serve``."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from audit_fixtures import fill_audits

from thrifty.cli.audit_cmd import parse_since
from thrifty.cli.main import main
from thrifty.errors import ConfigError
from thrifty.store.logs import LogStore


def test_parse_since() -> None:
    assert parse_since("1764633600") == 1764633600.0
    assert parse_since("24h", now=100_000.0) == 100_000.0 - 86_400
    assert parse_since("90m", now=10_000.0) == 10_000.0 - 5_400
    assert parse_since("2026-12-01") == datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp()
    assert parse_since("2026-12-01T08:00+01:00") == datetime(2026, 12, 1, 7, tzinfo=timezone.utc).timestamp()
    with pytest.raises(ConfigError) as err:
        parse_since("last tuesday")
    assert err.value.key == "--since" and "24h" in err.value.fix


@pytest.fixture
def db(tmp_path: Path) -> Path:
    store = LogStore(tmp_path / "logs.sqlite3")
    fill_audits(store, 120)
    store.close()
    return tmp_path / "logs.sqlite3"


def test_json_and_table_outputs(db: Path, capsys: Any) -> None:
    assert main(["audit", "report", "--db", str(db), "--json", "--since", "1050"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["since"] == 1050.0 and set(rep["profiles"]) == {"p", "q"}
    assert main(["audit", "report", "--db", str(db), "--profile", "p"]) == 0
    out = capsys.readouterr().out
    assert "served answers at least as good as the reference" in out and "saving against always calling the reference" in out
    assert "small" in out and "big" in out and "drift" in out


def test_errors_name_the_flag(tmp_path: Path, capsys: Any) -> None:
    assert main(["audit", "report", "--db", str(tmp_path / "none.sqlite3")]) == 3
    assert "--db" in capsys.readouterr().err
    store = LogStore(tmp_path / "empty.sqlite3")
    store.close()
    assert main(["audit", "report", "--db", str(tmp_path / "empty.sqlite3")]) == 0
    assert "no audits" in capsys.readouterr().out
    assert main(["audit", "report", "--db", str(tmp_path / "empty.sqlite3"), "--windows", "1"]) == 3
    assert "--windows" in capsys.readouterr().err


def test_serve_refuses_a_bad_audit_config(tmp_path: Path, capsys: Any) -> None:
    cfg = tmp_path / "thrifty.toml"
    cfg.write_text(
        '[providers.a]\nkind = "openai"\nbase_url = "http://127.0.0.1:1/v1"\n\n[profiles.p]\ntiers = ["a"]\n\n'
        '[profiles.p.audit]\nrate = 0.1\njudge = "nobody"\n'
    )
    assert main(["serve", "--config", str(cfg)]) == 3
    err = capsys.readouterr().err
    assert "profiles.p.audit.judge" in err and "unknown judge 'nobody'" in err and "fix:" in err
