"""TOML file → validated settings: :func:`load_settings`, :func:`parse_settings` and the section parsers.

Each ``[section]`` is checked key by key; every problem raises
:class:`~thrifty.errors.ConfigError` whose ``key`` is the TOML path and whose ``fix`` says what to
write instead. The result is the frozen settings objects of :mod:`thrifty.config.settings`.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Mapping

from thrifty.config.audit import check_audit_judges, parse_audit
from thrifty.config.checks import parse_checks
from thrifty.config.model import (
    PERIODS,
    PROVIDER_KINDS,
    CacheSettings,
    KeySettings,
    ProfileSettings,
    PromptAdaptationSettings,
    ProviderSettings,
    ServerSettings,
    Settings,
    config_path,
)
from thrifty.config.refit import parse_refit
from thrifty.errors import ConfigError

__all__ = ["load_settings", "parse_document", "parse_settings"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# ---- validation helpers -------------------------------------------------------------------------
def _table(doc: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    v = doc.get(key, {})
    if not isinstance(v, Mapping):
        raise ConfigError(f"expected a table, got {type(v).__name__}", key=path, fix=f"write it as [{path}]")
    return v


def _unknown(tbl: Mapping[str, Any], allowed: tuple[str, ...], path: str) -> None:
    for k in tbl:
        if k not in allowed:
            raise ConfigError(f"unknown setting {k!r}", key=f"{path}.{k}", fix=f"remove it or use one of: {', '.join(allowed)}")


def _str(tbl: Mapping[str, Any], key: str, path: str, default: Any = None, *, required: bool = False) -> Any:
    if key not in tbl:
        if required:
            raise ConfigError("missing", key=f"{path}.{key}", fix=f'add {key} = "..."')
        return default
    v = tbl[key]
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(f"expected a non-empty string, got {v!r}", key=f"{path}.{key}", fix=f'write {key} = "..."')
    return v


def _num(
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


def _bool(tbl: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    v = tbl.get(key, default)
    if not isinstance(v, bool):
        raise ConfigError(f"expected true or false, got {v!r}", key=f"{path}.{key}", fix=f"write {key} = true or {key} = false")
    return v


def _resolve(value: str, base_dir: Path | None) -> Path:
    """``value`` as a path (``~`` expanded); a relative one is relative to ``base_dir`` (the config file's folder)."""
    p = Path(value).expanduser()
    return p if p.is_absolute() or base_dir is None else base_dir / p


def _entry(section: str, name: str, tbl: Any, allowed: tuple[str, ...]) -> str:
    """The TOML path of ``[section.name]``, once its name, its being a table and its keys are checked."""
    path = f"{section}.{name}"
    if not _NAME.match(name):
        raise ConfigError(f"invalid name {name!r}", key=path, fix="use letters, digits, '.', '_', ':' or '-' (max 64 chars)")
    if not isinstance(tbl, Mapping):
        raise ConfigError("expected a table", key=path, fix=f"write it as [{path}]")
    _unknown(tbl, allowed, path)
    return path


# ---- sections -----------------------------------------------------------------------------------
def _server(tbl: Mapping[str, Any], base_dir: Path | None) -> ServerSettings:
    _unknown(
        tbl,
        (
            "host",
            "port",
            "max_body_bytes",
            "cors_origins",
            "data_dir",
            "request_timeout_s",
            "admin_sha256",
            "store",
            "store_password_env",
            "hold_lease_s",
            "artefact_poll_s",
            "memo_entries",
        ),
        "server",
    )
    port = _num(tbl, "port", "server", 8080, integer=True)
    if not 0 < port < 65536:
        raise ConfigError(f"port {port} out of range", key="server.port", fix="use 1–65535")
    origins = tbl.get("cors_origins", [])
    if not isinstance(origins, list) or not all(isinstance(o, str) and o for o in origins):
        raise ConfigError(
            "expected a list of origins",
            key="server.cors_origins",
            fix='write cors_origins = ["https://app.example.com"] (empty: CORS off)',
        )
    data_dir = _str(tbl, "data_dir", "server")
    if data_dir is not None:
        data_dir = _resolve(data_dir, base_dir)
    admin = _str(tbl, "admin_sha256", "server")
    if admin is not None and not _HEX64.match(admin.lower()):
        raise ConfigError(
            "not a SHA-256 hex digest",
            key="server.admin_sha256",
            fix="run `thrifty keys hash` on the admin key and paste its output; never store the plaintext key",
        )
    return ServerSettings(
        admin_sha256=None if admin is None else admin.lower(),
        host=_str(tbl, "host", "server", "127.0.0.1"),
        port=port,
        max_body_bytes=_num(tbl, "max_body_bytes", "server", 1_000_000, lo=0, integer=True, strict=True),
        cors_origins=tuple(origins),
        data_dir=data_dir,
        request_timeout_s=float(_num(tbl, "request_timeout_s", "server", 120.0, strict=True)),
        store=_store_url(_str(tbl, "store", "server"), base_dir),
        store_password_env=_str(tbl, "store_password_env", "server"),
        hold_lease_s=float(_num(tbl, "hold_lease_s", "server", 60.0, strict=True)),
        artefact_poll_s=float(_num(tbl, "artefact_poll_s", "server", 5.0)),  # 0: never poll
        memo_entries=_num(tbl, "memo_entries", "server", 10_000, lo=0, integer=True, strict=True),
    )


def _store_url(value: str | None, base_dir: Path | None) -> str | None:
    """``[server] store``: a SQLite path (relative to the config file) or a ``postgresql://`` URL without a password."""
    if value is None:
        return None
    from urllib.parse import urlsplit

    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme in ("postgresql", "postgres"):
        if urlsplit(value).password is not None:
            raise ConfigError(
                "the store URL contains a password",
                key="server.store",
                fix='remove it from the URL and set store_password_env = "THRIFTY_DB_PASSWORD" (or export PGPASSWORD)',
            )
        return value
    if scheme not in ("", "sqlite"):
        raise ConfigError(
            f"unknown store URL scheme {scheme!r}",
            key="server.store",
            fix="use a file path, sqlite:///path/logs.sqlite3 or postgresql://user@host:5432/dbname",
        )
    # sqlite:///relative/path, sqlite:////absolute/path (SQLAlchemy's spelling), or a bare path
    path = value if not scheme else value[len("sqlite:///") :] if value.startswith("sqlite:///") else value[len("sqlite://") :]
    return str(_resolve(path, base_dir))


_PROVIDER_KEYS = (
    "kind",
    "model",
    "base_url",
    "api_key_env",
    "model_path",
    "mode",
    "prices",
    "vision",
    "tools",
    "max_tokens",
    "timeout_s",
    "options",
)


def _provider(name: str, tbl: Any, base_dir: Path | None) -> ProviderSettings:
    path = _entry("providers", name, tbl, _PROVIDER_KEYS)
    kind = _str(tbl, "kind", path, required=True)
    if kind not in PROVIDER_KINDS:
        raise ConfigError(f"unknown kind {kind!r}", key=f"{path}.kind", fix=f"use one of: {', '.join(PROVIDER_KINDS)}")
    model_path = _str(tbl, "model_path", path)
    if kind in ("llamacpp", "student"):
        if model_path is None and kind == "student":
            raise ConfigError(
                "a student provider needs its artefact",
                key=f"{path}.model_path",
                fix='add model_path = "student.json" (written by thrifty student train)',
            )
        if model_path is None:
            raise ConfigError(
                "a llamacpp provider needs the GGUF file",
                key=f"{path}.model_path",
                fix='add model_path = "/path/to/model.gguf" (or "builtin:smollm2" / "builtin:gemma3")',
            )
        if not model_path.startswith("builtin:"):
            model_path = str(_resolve(model_path, base_dir))
    elif model_path is not None:
        raise ConfigError('model_path only applies to kind = "llamacpp" or "student"', key=f"{path}.model_path", fix="remove it")
    base_url = _str(tbl, "base_url", path)
    if base_url is not None and not re.match(r"^https?://", base_url):
        raise ConfigError(f"not an http(s) URL: {base_url!r}", key=f"{path}.base_url", fix='write base_url = "http://host:port/v1"')
    if kind == "openai" and base_url is None:
        base_url = "https://api.openai.com/v1"
    key_env = _str(tbl, "api_key_env", path)
    if key_env is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key_env):
        raise ConfigError(
            f"not an environment variable name: {key_env!r}",
            key=f"{path}.api_key_env",
            fix='name the variable, e.g. api_key_env = "OPENAI_API_KEY" — never put the key itself here',
        )
    mode = _str(tbl, "mode", path, "chat")
    if mode not in ("chat", "completion", "raw"):
        raise ConfigError(
            f"unknown mode {mode!r}",
            key=f"{path}.mode",
            fix='use "chat", "completion" (a transcript, for base models) or "raw" (the prompt text as is)',
        )
    prices = tbl.get("prices", {})
    if not isinstance(prices, Mapping):
        raise ConfigError(
            "expected a table", key=f"{path}.prices", fix="write prices = { input = 0.15, output = 0.6 }  # USD per 1M tokens"
        )
    _unknown(prices, ("input", "output"), f"{path}.prices")
    pin = _num(prices, "input", f"{path}.prices")
    pout = _num(prices, "output", f"{path}.prices")
    if (pin is None) != (pout is None):
        raise ConfigError("give both prices or neither", key=f"{path}.prices", fix="write prices = { input = X, output = Y }")
    options = tbl.get("options", {})
    if not isinstance(options, Mapping):
        raise ConfigError("expected a table", key=f"{path}.options", fix="write options = { key = value }")
    return ProviderSettings(
        name=name,
        kind=kind,
        model=_str(tbl, "model", path, name),
        base_url=base_url,
        api_key_env=key_env,
        model_path=model_path,
        mode=mode,
        price_input=None if pin is None else float(pin),
        price_output=None if pout is None else float(pout),
        vision=_bool(tbl, "vision", path, False),
        tools=_bool(tbl, "tools", path, True),
        max_tokens=_num(tbl, "max_tokens", path, 512, integer=True, strict=True),
        timeout_s=float(_num(tbl, "timeout_s", path, 60.0, strict=True)),
        options=dict(options),
    )


def _profile(name: str, tbl: Any, providers: Mapping[str, ProviderSettings], base_dir: Path | None) -> ProfileSettings:
    path = _entry(
        "profiles",
        name,
        tbl,
        (
            "tiers",
            "thresholds",
            "artefact",
            "scorer",
            "system",
            "budget_usd",
            "budget_period",
            "cache",
            "prompt_adaptation",
            "audit",
            "checks",
            "refit",
        ),
    )
    tiers = tbl.get("tiers")
    if not isinstance(tiers, list) or not tiers:
        raise ConfigError(
            "a profile needs at least one tier",
            key=f"{path}.tiers",
            fix='write tiers = ["cheap", "strong"] (provider names, cheapest first)',
        )
    for i, t in enumerate(tiers):
        if not isinstance(t, str) or t not in providers:
            known = ", ".join(providers) or "none defined"
            raise ConfigError(f"unknown provider {t!r}", key=f"{path}.tiers[{i}]", fix=f"define [providers.{t}] or use one of: {known}")
    if len(set(tiers)) != len(tiers):
        raise ConfigError("a tier is listed twice", key=f"{path}.tiers", fix="list each provider once")
    thresholds, artefact = tbl.get("thresholds"), tbl.get("artefact")
    if thresholds is not None and artefact is not None:
        raise ConfigError("give thresholds or artefact, not both", key=f"{path}.artefact", fix="remove one of them")
    ths: tuple[float, ...] | None = None
    if thresholds is not None:
        if not isinstance(thresholds, list) or len(thresholds) != len(tiers) - 1:
            raise ConfigError(
                f"{len(tiers)} tiers need {len(tiers) - 1} thresholds",
                key=f"{path}.thresholds",
                fix=f"write thresholds = [{', '.join(['0.5'] * (len(tiers) - 1))}] (one per tier but the last)",
            )
        for i, t in enumerate(thresholds):
            if isinstance(t, bool) or not isinstance(t, (int, float)) or math.isnan(t) or t < 0:
                raise ConfigError(
                    f"expected a number ≥ 0, got {t!r}",
                    key=f"{path}.thresholds[{i}]",
                    fix="scores are in [0, 1]; a threshold above 1 never accepts that tier",
                )
        ths = tuple(float(t) for t in thresholds)
    art: Path | None = None
    if artefact is not None:
        if not isinstance(artefact, str) or not artefact:
            raise ConfigError("expected a path", key=f"{path}.artefact", fix='write artefact = "path/from/thrifty-fit.json"')
        art = _resolve(artefact, base_dir)
        if not art.exists():
            raise ConfigError(
                f"no such file: {art}", key=f"{path}.artefact", fix="run `thrifty fit` to produce it, or give thresholds instead"
            )
    if ths is None and art is None and len(tiers) > 1:
        raise ConfigError(
            "a multi-tier profile needs thresholds or an artefact",
            key=f"{path}.thresholds",
            fix=f'add thresholds = [{", ".join(["0.5"] * (len(tiers) - 1))}] or artefact = "…"',
        )
    budget = _num(tbl, "budget_usd", path)
    return ProfileSettings(
        name=name,
        tiers=tuple(tiers),
        thresholds=ths,
        artefact=art,
        scorer=_str(tbl, "scorer", path, "heuristic"),
        system=_str(tbl, "system", path),
        budget_usd=None if budget is None else float(budget),
        budget_period=_period(tbl, "budget_period", path),
        cache=_cache(tbl.get("cache"), f"{path}.cache", base_dir),
        prompt_adaptation=_prompt_adaptation(tbl.get("prompt_adaptation"), f"{path}.prompt_adaptation", tuple(tiers), base_dir),
        audit=parse_audit(tbl.get("audit"), f"{path}.audit", tuple(tiers), providers),  # issue #12
        refit=parse_refit(tbl.get("refit"), f"{path}.refit"),
        checks=parse_checks(tbl.get("checks"), f"{path}.checks"),
    )


def _guard(v: Any, path: str) -> str:
    if v is True or v is False:
        return "strict" if v else "off"
    if v not in ("strict", "lexical", "off"):
        raise ConfigError(f"unknown guard {v!r}", key=path, fix='use "strict" (default), "lexical" or "off"')
    return str(v)


def _cache(tbl: Any, path: str, base_dir: Path | None) -> CacheSettings | None:
    if tbl is None:
        return None
    if not isinstance(tbl, Mapping):
        raise ConfigError("expected a table", key=path, fix=f'write it as [{path}] with mode = "exact" or "semantic"')
    _unknown(
        tbl,
        (
            "mode",
            "ttl_s",
            "max_entries",
            "max_bytes",
            "path",
            "redis_url_env",
            "semantic_threshold",
            "guard",
            "cache_sampled",
            "default_temperature",
        ),
        path,
    )
    mode = _str(tbl, "mode", path, "exact")
    if mode not in ("exact", "semantic", "off"):
        raise ConfigError(f"unknown cache mode {mode!r}", key=f"{path}.mode", fix='use "exact", "semantic" or "off"')
    if mode == "off":
        return None
    threshold = _num(tbl, "semantic_threshold", path, lo=-1.0)
    if threshold is not None and threshold > 1:
        raise ConfigError(
            f"a cosine threshold is at most 1, got {threshold}",
            key=f"{path}.semantic_threshold",
            fix="leave it unset for the calibrated default",
        )
    file = _str(tbl, "path", path)
    p = _resolve(file, base_dir) if file else None
    max_bytes = _num(tbl, "max_bytes", path, integer=True, strict=True)
    return CacheSettings(
        mode=mode,
        ttl_s=float(_num(tbl, "ttl_s", path, 7 * 24 * 3600.0, strict=True)),
        max_entries=int(_num(tbl, "max_entries", path, 100_000, integer=True, strict=True)),
        max_bytes=None if max_bytes is None else int(max_bytes),
        path=p,
        redis_url_env=_str(tbl, "redis_url_env", path),
        semantic_threshold=None if threshold is None else float(threshold),
        guard=_guard(tbl.get("guard", "strict"), f"{path}.guard"),
        cache_sampled=_bool(tbl, "cache_sampled", path, False),
        default_temperature=float(_num(tbl, "default_temperature", path, 1.0)),
    )


def _file(tbl: Mapping[str, Any], key: str, path: str, base_dir: Path | None, what: str, *, required: bool = False) -> Path | None:
    """An existing file named by ``key`` (relative to ``base_dir``)."""
    v = _str(tbl, key, path, required=required)
    if v is None:
        return None
    p = _resolve(v, base_dir)
    if not p.is_file():
        raise ConfigError(f"no such file: {p}", key=f"{path}.{key}", fix=f"point {key} at {what}")
    return p


def _prompt_adaptation(tbl: Any, path: str, tiers: tuple[str, ...], base_dir: Path | None) -> PromptAdaptationSettings | None:
    """``[profiles.NAME.prompt_adaptation]`` (the examples file's rows are read when the profile is built)."""
    if tbl is None:
        return None
    if not isinstance(tbl, Mapping):
        raise ConfigError("expected a table", key=path, fix=f'write it as [{path}] with examples = "shots.jsonl"')
    _unknown(tbl, ("examples", "k", "budget_tokens", "layout", "strip_prefix", "embedder", "tiers"), path)
    examples = _file(tbl, "examples", path, base_dir, 'a JSONL/CSV file with "input" and "output" per row', required=True)
    layout = _str(tbl, "layout", path, "messages")
    if layout not in ("messages", "text"):
        raise ConfigError(
            f"unknown layout {layout!r}",
            key=f"{path}.layout",
            fix='use "messages" (shots as user/assistant turns) or "text" (Q:/A: blocks in the user turn)',
        )
    only = tbl.get("tiers")
    if only is not None:
        if not isinstance(only, list) or not only:
            raise ConfigError(
                "expected a list of tier names", key=f"{path}.tiers", fix=f"write tiers = {list(tiers)!r} or remove it (every tier)"
            )
        for i, t in enumerate(only):
            if t not in tiers:
                raise ConfigError(f"{t!r} is not a tier of this profile", key=f"{path}.tiers[{i}]", fix=f"use some of: {', '.join(tiers)}")
    assert examples is not None
    return PromptAdaptationSettings(
        examples=examples,
        k=int(_num(tbl, "k", path, 8, integer=True, strict=True)),
        budget_tokens=int(_num(tbl, "budget_tokens", path, 80, integer=True, strict=True)),
        layout=layout,
        strip_prefix=_file(tbl, "strip_prefix", path, base_dir, "a text file holding the exact prefix clients send"),
        embedder=_str(tbl, "embedder", path, "minilm"),
        tiers=None if only is None else tuple(dict.fromkeys(only)),
    )


def _key(name: str, tbl: Any) -> KeySettings:
    path = _entry("keys", name, tbl, ("sha256", "limit_usd", "limit_period"))
    digest = _str(tbl, "sha256", path, required=True).lower()
    if not _HEX64.match(digest):
        raise ConfigError(
            "not a SHA-256 hex digest",
            key=f"{path}.sha256",
            fix="run `thrifty keys hash` and paste its output; never store the plaintext key",
        )
    limit = _num(tbl, "limit_usd", path)
    return KeySettings(
        name=name, sha256=digest, limit_usd=None if limit is None else float(limit), limit_period=_period(tbl, "limit_period", path)
    )


def _period(tbl: Mapping[str, Any], field: str, path: str) -> str:
    """A budget period: when a limit resets (UTC)."""

    value = _str(tbl, field, path, "total")
    if value not in PERIODS:
        raise ConfigError(
            f"unknown budget period {value!r}",
            key=f"{path}.{field}",
            fix=f'write {field} = "day" (resets 00:00 UTC), "month" or "total" (never resets)',
        )
    return str(value)


def parse_document(doc: Mapping[str, Any], *, source: str | None = None, base_dir: Path | None = None) -> Settings:
    """Validate a parsed TOML document. Relative paths resolve against ``base_dir``."""
    _unknown(doc, ("server", "providers", "profiles", "keys"), "<top level>")
    server = _server(_table(doc, "server", "server"), base_dir)
    providers = {n: _provider(n, t, base_dir) for n, t in _table(doc, "providers", "providers").items()}
    profiles = {n: _profile(n, t, providers, base_dir) for n, t in _table(doc, "profiles", "profiles").items()}
    check_audit_judges(profiles, providers)  # issue #12: an LLM judge may name any profile
    keys = {n: _key(n, t) for n, t in _table(doc, "keys", "keys").items()}
    seen: dict[str, str] = {}
    for k in keys.values():
        if k.sha256 in seen:
            raise ConfigError(f"same key hash as keys.{seen[k.sha256]}", key=f"keys.{k.name}.sha256", fix="give every client its own key")
        seen[k.sha256] = k.name
    return Settings(server=server, providers=providers, profiles=profiles, keys=keys, source=source)


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read and validate the TOML file at ``path`` (or ``$THRIFTY_CONFIG``); defaults when none."""
    p = config_path(path)
    if p is None:
        return Settings()
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {str(p)!r}: {exc.strerror or exc}",
            key="--config",
            fix="pass an existing TOML file or unset THRIFTY_CONFIG",
        ) from None
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}", key="--config", fix="fix the TOML syntax at the position shown") from None
    return parse_settings(doc, source=str(p), base_dir=p.parent)


parse_settings = parse_document  # the public name
