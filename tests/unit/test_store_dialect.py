"""Portable SQL → PostgreSQL: placeholders, numbered placeholders, percent signs, REAL, BEGIN IMMEDIATE;
store URLs; the migration runner's refusal of a schema from a newer thrifty (on SQLite)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from thrifty.errors import ConfigError
from thrifty.store.backend import parse_target, store_label
from thrifty.store.db import MIGRATIONS, PG_OVERRIDES, connect, migrate
from thrifty.store.dialect import reorder, row_class, to_postgres


def test_question_marks_become_percent_s_outside_literals_and_comments() -> None:
    sql, order = to_postgres("SELECT a FROM t WHERE b = ? AND c = '?' AND d LIKE 'x%' -- what?\n AND e = ?")
    assert sql == "SELECT a FROM t WHERE b = %s AND c = '?' AND d LIKE 'x%%' \n AND e = %s"
    assert order is None


def test_a_percent_inside_a_string_literal_is_escaped_too() -> None:
    """psycopg scans the whole text for placeholders, literals included (it gets a parameter tuple always)."""
    assert to_postgres("SELECT 1 WHERE t LIKE '%,%' AND \"a%b\" = ?")[0] == "SELECT 1 WHERE t LIKE '%%,%%' AND \"a%b\" = %s"


def test_a_literal_percent_outside_strings_is_escaped() -> None:
    assert to_postgres("SELECT a % 2 FROM t WHERE b = ?")[0] == "SELECT a %% 2 FROM t WHERE b = %s"


def test_numbered_placeholders_reorder_and_repeat_parameters() -> None:
    sql, order = to_postgres("SELECT ?2, ?1 WHERE x = ?2 AND y >= ?3")
    assert sql == "SELECT %s, %s WHERE x = %s AND y >= %s"
    assert reorder(("a", "b", "c", "unused"), order) == ("b", "a", "b", "c")


def test_real_columns_are_double_precision_and_begin_immediate_is_begin() -> None:
    sql, _ = to_postgres("CREATE TABLE t (created REAL NOT NULL, realm TEXT, n INTEGER)")
    assert sql == "CREATE TABLE t (created DOUBLE PRECISION NOT NULL, realm TEXT, n INTEGER)"
    assert to_postgres("BEGIN IMMEDIATE")[0] == "BEGIN"
    assert to_postgres('SELECT "real" FROM t')[0] == 'SELECT "real" FROM t'  # a quoted name stays


def test_rows_read_by_position_and_name_and_convert_to_dict() -> None:
    row = row_class(("id", "cost"))(("r1", 0.5))
    assert row[0] == "r1" and row["cost"] == 0.5 and dict(row) == {"id": "r1", "cost": 0.5}
    with pytest.raises(KeyError):
        row["nope"]


def test_every_migration_translates_for_postgres() -> None:
    for name, sql in MIGRATIONS:
        text, _ = to_postgres(PG_OVERRIDES.get(name, sql))
        assert "?" not in text.replace("'?'", "") and "strftime" not in text, name


def test_store_targets() -> None:
    assert parse_target("logs.sqlite3") == ("sqlite", "logs.sqlite3")
    assert parse_target("sqlite:////var/lib/thrifty/logs.sqlite3") == ("sqlite", "/var/lib/thrifty/logs.sqlite3")
    assert parse_target("sqlite:///rel/logs.sqlite3") == ("sqlite", "rel/logs.sqlite3")
    assert parse_target("postgresql://u@h:5432/db") == ("postgresql", "postgresql://u@h:5432/db")
    assert store_label("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    with pytest.raises(ConfigError, match="server.store"):
        parse_target("mysql://u@h/db")


def test_a_schema_from_a_newer_thrifty_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "logs.sqlite3"
    connect(path).close()
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO migrations (name, applied) VALUES ('9999_from_the_future', 0)")
    raw.commit()
    raw.close()
    with pytest.raises(ConfigError) as info:
        migrate(connect(path, migrate_now=False))
    assert "newer thrifty" in str(info.value) and "server.store" in str(info.value) and "upgrade" in str(info.value)


def _settings(tmp_path: Path, server: str):
    from thrifty.config.settings import load_settings

    path = tmp_path / "thrifty.toml"
    path.write_text(f"[server]\n{server}\n")
    return load_settings(path)


def test_store_setting_paths_urls_and_refused_passwords(tmp_path: Path) -> None:
    assert _settings(tmp_path, 'store = "logs/x.sqlite3"').server.resolved_store() == str(tmp_path / "logs/x.sqlite3")
    assert _settings(tmp_path, 'store = "sqlite:////abs/x.sqlite3"').server.store == "/abs/x.sqlite3"
    s = _settings(tmp_path, 'store = "postgresql://thrifty@db:5432/thrifty"\nstore_password_env = "DBPW"\nartefact_poll_s = 0')
    assert (s.server.store, s.server.store_password_env, s.server.artefact_poll_s) == ("postgresql://thrifty@db:5432/thrifty", "DBPW", 0.0)
    assert _settings(tmp_path, "").server.resolved_store().endswith("logs.sqlite3")
    with pytest.raises(ConfigError) as info:
        _settings(tmp_path, 'store = "postgresql://thrifty:hunter2@db/thrifty"')
    assert info.value.key == "server.store" and "store_password_env" in info.value.fix and "hunter2" not in str(info.value)
    with pytest.raises(ConfigError, match="server.hold_lease_s"):
        _settings(tmp_path, "hold_lease_s = 0")
