"""The one import surface for gateway settings: the frozen settings objects
(:mod:`thrifty.config.model`) and the TOML loader (:mod:`thrifty.config.parse`)."""

from __future__ import annotations

from thrifty.config.model import (
    DEFAULT_PROFILE,
    PERIODS,
    PROVIDER_KINDS,
    AuditSettings,
    CacheSettings,
    KeySettings,
    ProfileSettings,
    PromptAdaptationSettings,
    ProviderSettings,
    RefitConfig,
    ServerSettings,
    Settings,
    config_path,
    default_data_dir,
    hash_key,
)
from thrifty.config.parse import load_settings, parse_settings

__all__ = [
    "DEFAULT_PROFILE",
    "AuditSettings",
    "PERIODS",
    "PROVIDER_KINDS",
    "CacheSettings",
    "KeySettings",
    "ProfileSettings",
    "PromptAdaptationSettings",
    "ProviderSettings",
    "RefitConfig",
    "ServerSettings",
    "Settings",
    "config_path",
    "default_data_dir",
    "hash_key",
    "load_settings",
    "parse_settings",
]
