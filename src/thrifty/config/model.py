"""Gateway settings: one TOML file → frozen objects, validated once at start.

Where the file comes from: ``--config PATH``, else ``$THRIFTY_CONFIG``, else none (the embedded
local default). Secrets never live in the file: a provider names the environment variable that holds
its key (``api_key_env``) and API keys are stored as SHA-256 hashes (``thrifty keys hash``).

Every problem raises :class:`~thrifty.errors.ConfigError` whose ``key`` is the TOML path
(``profiles.support.tiers[1]``) and whose ``fix`` says what to write instead. This module holds the
settings objects; the section parsers and file loading live in :mod:`thrifty.config.parse`, and
:mod:`thrifty.config.settings` is the one import surface for both.

Layout (every table optional)::

    [server]      host, port, max_body_bytes, cors_origins, data_dir, request_timeout_s,
                  admin_sha256 (hash of the admin key: enables POST /admin/reload),
                  memo_entries (size of each in-process memo: embeddings, answer features, shots)
    [providers.NAME]  kind = "openai" | "anthropic" | "llamacpp" | "student", model, base_url, api_key_env,
                  model_path (llamacpp), mode = "chat" | "completion" | "raw", prices = {input, output}
                  (USD per 1M tokens), vision, tools, max_tokens, timeout_s, options = {…}
    [profiles.NAME]   tiers = [provider names], thresholds = [...] | artefact = "path",
                  scorer, system, budget_usd, budget_period = "total" | "day" | "month" (UTC)
    [profiles.NAME.cache]  mode = "exact" | "semantic" | "off", ttl_s, max_entries, max_bytes, path
                  (SQLite file) | redis_url_env (env var holding a redis:// URL), semantic_threshold,
                  guard, cache_sampled, default_temperature
    [profiles.NAME.prompt_adaptation]  examples (JSONL/CSV of input/output), k, budget_tokens,
                  layout = "messages" | "text", strip_prefix (text file), embedder, tiers
    [profiles.NAME.audit]  rate, judge, rubric, reference, explore, budget_usd, budget_period, seed, …
                  (sampled audits: :mod:`thrifty.config.audit`, docs/audits.md)
    [profiles.NAME.refit]  every (new audits per refit, ≥ 1), target (share of answers at least as
                  good as the reference, in (0, 1]), mean_cost_usd, step, folds, min_gain
    [keys.NAME]   sha256 = "<hex>", limit_usd, limit_period = "total" | "day" | "month" (UTC)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from thrifty.config.audit import AuditSettings
from thrifty.config.refit import RefitConfig

__all__ = [
    "PERIODS",
    "ServerSettings",
    "ProviderSettings",
    "ProfileSettings",
    "CacheSettings",
    "PromptAdaptationSettings",
    "AuditSettings",
    "KeySettings",
    "RefitConfig",
    "Settings",
    "config_path",
    "hash_key",
    "DEFAULT_PROFILE",
    "PROVIDER_KINDS",
]

DEFAULT_PROFILE = "default"
PERIODS = ("total", "day", "month")  # budget periods (UTC); "total" never resets
PROVIDER_KINDS = ("openai", "anthropic", "llamacpp", "student")


def hash_key(plaintext: str) -> str:
    """The SHA-256 hex digest stored in ``[keys.NAME] sha256`` for an API key."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 1_000_000
    cors_origins: tuple[str, ...] = ()
    data_dir: Path | None = None  # None: the user's data directory (platformdirs)
    request_timeout_s: float = 120.0
    admin_sha256: str | None = None  # SHA-256 of the admin key; set: POST /admin/reload is served
    store: str | None = None  # the log store: a SQLite path or postgresql://user@host/db; None: <data_dir>/logs.sqlite3
    store_password_env: str | None = None  # env var holding the database password (else $PGPASSWORD)
    hold_lease_s: float = 60.0  # a budget hold lapses this long after its replica last renewed it
    artefact_poll_s: float = 5.0  # how often a replica checks the store's artefact versions (0: never)
    artefact_dir: Path | None = None  # where refits write learned artefacts; None: <data_dir>/artefacts (share it between replicas)
    memo_entries: int = 10_000  # entries per in-process LRU memo (thrifty.scoring.memo)

    def resolved_data_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else default_data_dir()

    def resolved_artefact_dir(self) -> Path:
        """Where the learning loop writes the artefacts it swaps in (replicas must all read this folder)."""
        return self.artefact_dir if self.artefact_dir is not None else self.resolved_data_dir() / "artefacts"

    def resolved_store(self) -> str:
        """The log store: ``store`` when set, else ``<data dir>/logs.sqlite3``."""
        return self.store if self.store else str(self.resolved_data_dir() / "logs.sqlite3")


def default_data_dir() -> Path:
    """``$THRIFTY_DATA_DIR``, else the user's data directory for thrifty (platformdirs)."""
    env = os.environ.get("THRIFTY_DATA_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("thrifty"))


@dataclass(frozen=True)
class ProviderSettings:
    name: str
    kind: str
    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    model_path: str | None = None
    mode: str = "chat"
    price_input: float | None = None  # USD per 1M tokens; None: look up genai-prices
    price_output: float | None = None
    vision: bool = False
    tools: bool = True
    max_tokens: int = 512  # cap used when a request sets none (and for budget reservations)
    timeout_s: float = 60.0
    options: Mapping[str, Any] = field(default_factory=dict)

    def api_key(self) -> str | None:
        """The secret from the environment (read at call time, never stored in settings)."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


@dataclass(frozen=True)
class CacheSettings:
    """``[profiles.NAME.cache]``: a completion cache in front of every tier of the profile
    (see :mod:`thrifty.serving.cache`). ``semantic_threshold`` None means the calibrated default."""

    mode: str = "exact"  # "exact" | "semantic"
    ttl_s: float = 7 * 24 * 3600.0
    max_entries: int = 100_000
    max_bytes: int | None = None
    path: Path | None = None  # SQLite file; None: <data_dir>/cache.sqlite
    redis_url_env: str | None = None  # env var holding redis://…; set: Redis instead of SQLite
    semantic_threshold: float | None = None
    guard: str = "strict"  # "strict" | "lexical" | "off" (see thrifty.serving.cache.guard)
    cache_sampled: bool = False  # also cache temperature > 0 requests
    default_temperature: float = 1.0  # what the upstream uses when a request sets none


@dataclass(frozen=True)
class PromptAdaptationSettings:
    """``[profiles.NAME.prompt_adaptation]``: per-request few-shot selection in front of the profile's
    tiers (see :mod:`thrifty.serving.adapted_provider`). ``tiers`` None means every tier."""

    examples: Path  # JSONL/CSV: input + output per row (or chat "messages")
    k: int = 8  # at most this many shots
    budget_tokens: int = 80  # approximate tokens of shot text per request
    layout: str = "messages"  # "messages" (user/assistant turns) | "text" (Q:/A: blocks in the user turn)
    strip_prefix: Path | None = None  # text file: a fixed few-shot prefix clients send, replaced by the selection
    embedder: str = "minilm"  # "minilm" | "static" | "module:Factory"
    tiers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ProfileSettings:
    name: str
    tiers: tuple[str, ...]
    thresholds: tuple[float, ...] | None = None
    artefact: Path | None = None
    scorer: str = "heuristic"
    system: str | None = None
    budget_usd: float | None = None
    budget_period: str = "total"  # "total" | "day" | "month": when budget_usd resets (UTC)
    cache: CacheSettings | None = None
    prompt_adaptation: PromptAdaptationSettings | None = None
    audit: AuditSettings | None = None  # [profiles.NAME.audit] (issue #12: sampled audits)
    refit: RefitConfig | None = None  # [profiles.NAME.refit]: the learning loop; None: off
    # ---- answer checks (issue #16): names ("json", "arithmetic", "python") or ("regex", pattern) pairs;
    # a failed check scores the answer 0 (thrifty.scoring.verifiers), so the cascade escalates
    checks: tuple[str | tuple[str, str], ...] = ()


@dataclass(frozen=True)
class KeySettings:
    name: str
    sha256: str
    limit_usd: float | None = None
    limit_period: str = "total"  # "total" | "day" | "month": when limit_usd resets (UTC)


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    providers: Mapping[str, ProviderSettings] = field(default_factory=dict)
    profiles: Mapping[str, ProfileSettings] = field(default_factory=dict)
    keys: Mapping[str, KeySettings] = field(default_factory=dict)
    source: str | None = None  # the file these settings came from; None: built-in default

    @property
    def auth_required(self) -> bool:
        return bool(self.keys)

    def key_by_hash(self, digest: str) -> KeySettings | None:
        for k in self.keys.values():
            if k.sha256 == digest:
                return k
        return None

    def with_server(self, **changes: Any) -> "Settings":
        """A copy with server fields overridden (CLI flags win over the file)."""
        from dataclasses import replace

        return replace(self, server=replace(self.server, **{k: v for k, v in changes.items() if v is not None}))


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """``explicit`` or ``$THRIFTY_CONFIG``; None when neither is set (embedded default)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("THRIFTY_CONFIG")
    return Path(env) if env else None
