"""Typed readers for TOML values; each error names the key's path and the fix."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Mapping

from thrifty.config.model import PERIODS
from thrifty.errors import ConfigError

__all__ = [
    "NAME_RE",
    "sub_table",
    "reject_unknown",
    "str_field",
    "num_field",
    "bool_field",
    "resolve_path",
    "named_entry",
    "file_field",
    "period_field",
]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


# ---- validation helpers -------------------------------------------------------------------------
def sub_table(doc: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    v = doc.get(key, {})
    if not isinstance(v, Mapping):
        raise ConfigError(f"expected a table, got {type(v).__name__}", key=path, fix=f"write it as [{path}]")
    return v


def reject_unknown(tbl: Mapping[str, Any], allowed: tuple[str, ...], path: str) -> None:
    for k in tbl:
        if k not in allowed:
            raise ConfigError(f"unknown setting {k!r}", key=f"{path}.{k}", fix=f"remove it or use one of: {', '.join(allowed)}")


def str_field(tbl: Mapping[str, Any], key: str, path: str, default: Any = None, *, required: bool = False) -> Any:
    if key not in tbl:
        if required:
            raise ConfigError("missing", key=f"{path}.{key}", fix=f'add {key} = "..."')
        return default
    v = tbl[key]
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(f"expected a non-empty string, got {v!r}", key=f"{path}.{key}", fix=f'write {key} = "..."')
    return v


def num_field(
    tbl: Mapping[str, Any], key: str, path: str, default: Any = None, *, lo: float = 0.0, integer: bool = False, strict: bool = False
) -> Any:
    if key not in tbl:
        return default
    v = tbl[key]
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok or math.isnan(float(v)) or math.isinf(float(v)) or (v <= lo if strict else v < lo):
        what = "an integer" if integer else "a number"
        raise ConfigError(
            f"expected {what} {'>' if strict else '≥'} {lo:g}, got {v!r}",
            key=f"{path}.{key}",
            fix=f"write {key} = <{what} {'>' if strict else '≥'} {lo:g}>",
        )
    return v


def bool_field(tbl: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    v = tbl.get(key, default)
    if not isinstance(v, bool):
        raise ConfigError(f"expected true or false, got {v!r}", key=f"{path}.{key}", fix=f"write {key} = true or {key} = false")
    return v


def resolve_path(value: str, base_dir: Path | None) -> Path:
    """``value`` as a path (``~`` expanded); a relative one is relative to ``base_dir`` (the config file's folder)."""
    p = Path(value).expanduser()
    return p if p.is_absolute() or base_dir is None else base_dir / p


def named_entry(section: str, name: str, tbl: Any, allowed: tuple[str, ...]) -> str:
    """The TOML path of ``[section.name]``, once its name, its being a table and its keys are checked."""
    path = f"{section}.{name}"
    if not NAME_RE.match(name):
        raise ConfigError(f"invalid name {name!r}", key=path, fix="use letters, digits, '.', '_', ':' or '-' (max 64 chars)")
    if not isinstance(tbl, Mapping):
        raise ConfigError("expected a table", key=path, fix=f"write it as [{path}]")
    reject_unknown(tbl, allowed, path)
    return path


# ---- sections -----------------------------------------------------------------------------------
def file_field(tbl: Mapping[str, Any], key: str, path: str, base_dir: Path | None, what: str, *, required: bool = False) -> Path | None:
    """An existing file named by ``key`` (relative to ``base_dir``)."""
    v = str_field(tbl, key, path, required=required)
    if v is None:
        return None
    p = resolve_path(v, base_dir)
    if not p.is_file():
        raise ConfigError(f"no such file: {p}", key=f"{path}.{key}", fix=f"point {key} at {what}")
    return p


def period_field(tbl: Mapping[str, Any], field: str, path: str) -> str:
    """A budget period: when a limit resets (UTC)."""

    value = str_field(tbl, field, path, "total")
    if value not in PERIODS:
        raise ConfigError(
            f"unknown budget period {value!r}",
            key=f"{path}.{field}",
            fix=f'write {field} = "day" (resets 00:00 UTC), "month" or "total" (never resets)',
        )
    return str(value)
