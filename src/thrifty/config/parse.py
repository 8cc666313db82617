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
from thrifty.config.fields import (
    bool_field,
    named_entry,
    num_field,
    period_field,
    reject_unknown,
    resolve_path,
    str_field,
    sub_table,
)
from thrifty.config.model import (
    PROVIDER_KINDS,
    KeySettings,
    ProfileSettings,
    ProviderSettings,
    ServerSettings,
    Settings,
    config_path,
)
from thrifty.config.profile_tables import parse_cache, parse_prompt_adaptation
from thrifty.config.refit import parse_refit
from thrifty.errors import ConfigError

__all__ = ["load_settings", "parse_document", "parse_settings"]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")  # a key or admin digest


def _server(tbl: Mapping[str, Any], base_dir: Path | None) -> ServerSettings:
    reject_unknown(
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
            "artefact_dir",
            "memo_entries",
        ),
        "server",
    )
    port = num_field(tbl, "port", "server", 8080, integer=True)
    if not 0 < port < 65536:
        raise ConfigError(f"port {port} out of range", key="server.port", fix="use 1–65535")
    origins = tbl.get("cors_origins", [])
    if not isinstance(origins, list) or not all(isinstance(o, str) and o for o in origins):
        raise ConfigError(
            "expected a list of origins",
            key="server.cors_origins",
            fix='write cors_origins = ["https://app.example.com"] (empty: CORS off)',
        )
    data_dir = str_field(tbl, "data_dir", "server")
    if data_dir is not None:
        data_dir = resolve_path(data_dir, base_dir)
    artefact_dir = str_field(tbl, "artefact_dir", "server")
    admin = str_field(tbl, "admin_sha256", "server")
    if admin is not None and not _HEX64.match(admin.lower()):
        raise ConfigError(
            "not a SHA-256 hex digest",
            key="server.admin_sha256",
            fix="run `thrifty keys hash` on the admin key and paste its output; never store the plaintext key",
        )
    return ServerSettings(
        admin_sha256=None if admin is None else admin.lower(),
        host=str_field(tbl, "host", "server", "127.0.0.1"),
        port=port,
        max_body_bytes=num_field(tbl, "max_body_bytes", "server", 1_000_000, lo=0, integer=True, strict=True),
        cors_origins=tuple(origins),
        data_dir=data_dir,
        request_timeout_s=float(num_field(tbl, "request_timeout_s", "server", 120.0, strict=True)),
        store=_store_url(str_field(tbl, "store", "server"), base_dir),
        store_password_env=str_field(tbl, "store_password_env", "server"),
        hold_lease_s=float(num_field(tbl, "hold_lease_s", "server", 60.0, strict=True)),
        artefact_poll_s=float(num_field(tbl, "artefact_poll_s", "server", 5.0)),  # 0: never poll
        artefact_dir=None if artefact_dir is None else resolve_path(artefact_dir, base_dir),
        memo_entries=num_field(tbl, "memo_entries", "server", 10_000, lo=0, integer=True, strict=True),
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
    return str(resolve_path(path, base_dir))


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
    path = named_entry("providers", name, tbl, _PROVIDER_KEYS)
    kind = str_field(tbl, "kind", path, required=True)
    if kind not in PROVIDER_KINDS:
        raise ConfigError(f"unknown kind {kind!r}", key=f"{path}.kind", fix=f"use one of: {', '.join(PROVIDER_KINDS)}")
    model_path = str_field(tbl, "model_path", path)
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
            model_path = str(resolve_path(model_path, base_dir))
    elif model_path is not None:
        raise ConfigError('model_path only applies to kind = "llamacpp" or "student"', key=f"{path}.model_path", fix="remove it")
    base_url = str_field(tbl, "base_url", path)
    if base_url is not None and not re.match(r"^https?://", base_url):
        raise ConfigError(f"not an http(s) URL: {base_url!r}", key=f"{path}.base_url", fix='write base_url = "http://host:port/v1"')
    if kind == "openai" and base_url is None:
        base_url = "https://api.openai.com/v1"
    key_env = str_field(tbl, "api_key_env", path)
    if key_env is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key_env):
        raise ConfigError(
            f"not an environment variable name: {key_env!r}",
            key=f"{path}.api_key_env",
            fix='name the variable, e.g. api_key_env = "OPENAI_API_KEY" — never put the key itself here',
        )
    mode = str_field(tbl, "mode", path, "chat")
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
    reject_unknown(prices, ("input", "output"), f"{path}.prices")
    pin = num_field(prices, "input", f"{path}.prices")
    pout = num_field(prices, "output", f"{path}.prices")
    if (pin is None) != (pout is None):
        raise ConfigError("give both prices or neither", key=f"{path}.prices", fix="write prices = { input = X, output = Y }")
    options = tbl.get("options", {})
    if not isinstance(options, Mapping):
        raise ConfigError("expected a table", key=f"{path}.options", fix="write options = { key = value }")
    return ProviderSettings(
        name=name,
        kind=kind,
        model=str_field(tbl, "model", path, name),
        base_url=base_url,
        api_key_env=key_env,
        model_path=model_path,
        mode=mode,
        price_input=None if pin is None else float(pin),
        price_output=None if pout is None else float(pout),
        vision=bool_field(tbl, "vision", path, False),
        tools=bool_field(tbl, "tools", path, True),
        max_tokens=num_field(tbl, "max_tokens", path, 512, integer=True, strict=True),
        timeout_s=float(num_field(tbl, "timeout_s", path, 60.0, strict=True)),
        options=dict(options),
    )


def _profile(name: str, tbl: Any, providers: Mapping[str, ProviderSettings], base_dir: Path | None) -> ProfileSettings:
    path = named_entry(
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
        art = resolve_path(artefact, base_dir)
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
    budget = num_field(tbl, "budget_usd", path)
    return ProfileSettings(
        name=name,
        tiers=tuple(tiers),
        thresholds=ths,
        artefact=art,
        scorer=str_field(tbl, "scorer", path, "heuristic"),
        system=str_field(tbl, "system", path),
        budget_usd=None if budget is None else float(budget),
        budget_period=period_field(tbl, "budget_period", path),
        cache=parse_cache(tbl.get("cache"), f"{path}.cache", base_dir),
        prompt_adaptation=parse_prompt_adaptation(tbl.get("prompt_adaptation"), f"{path}.prompt_adaptation", tuple(tiers), base_dir),
        audit=parse_audit(tbl.get("audit"), f"{path}.audit", tuple(tiers), providers),  # issue #12
        refit=parse_refit(tbl.get("refit"), f"{path}.refit"),
        checks=parse_checks(tbl.get("checks"), f"{path}.checks"),
    )


def _key(name: str, tbl: Any) -> KeySettings:
    path = named_entry("keys", name, tbl, ("sha256", "limit_usd", "limit_period"))
    digest = str_field(tbl, "sha256", path, required=True).lower()
    if not _HEX64.match(digest):
        raise ConfigError(
            "not a SHA-256 hex digest",
            key=f"{path}.sha256",
            fix="run `thrifty keys hash` and paste its output; never store the plaintext key",
        )
    limit = num_field(tbl, "limit_usd", path)
    return KeySettings(
        name=name, sha256=digest, limit_usd=None if limit is None else float(limit), limit_period=period_field(tbl, "limit_period", path)
    )


def parse_document(doc: Mapping[str, Any], *, source: str | None = None, base_dir: Path | None = None) -> Settings:
    """Validate a parsed TOML document. Relative paths resolve against ``base_dir``."""
    reject_unknown(doc, ("server", "providers", "profiles", "keys"), "<top level>")
    server = _server(sub_table(doc, "server", "server"), base_dir)
    providers = {n: _provider(n, t, base_dir) for n, t in sub_table(doc, "providers", "providers").items()}
    profiles = {n: _profile(n, t, providers, base_dir) for n, t in sub_table(doc, "profiles", "profiles").items()}
    check_audit_judges(profiles, providers)  # issue #12: an LLM judge may name any profile
    keys = {n: _key(n, t) for n, t in sub_table(doc, "keys", "keys").items()}
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
