"""A profile's sub-tables: ``[profiles.NAME.cache]`` and ``[profiles.NAME.prompt_adaptation]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from thrifty.config.fields import bool_field, file_field, num_field, reject_unknown, resolve_path, str_field
from thrifty.config.model import CacheSettings, PromptAdaptationSettings
from thrifty.errors import ConfigError

__all__ = ["parse_cache", "parse_prompt_adaptation"]


def _guard(v: Any, path: str) -> str:
    if v is True or v is False:
        return "strict" if v else "off"
    if v not in ("strict", "lexical", "off"):
        raise ConfigError(f"unknown guard {v!r}", key=path, fix='use "strict" (default), "lexical" or "off"')
    return str(v)


def parse_cache(tbl: Any, path: str, base_dir: Path | None) -> CacheSettings | None:
    if tbl is None:
        return None
    if not isinstance(tbl, Mapping):
        raise ConfigError("expected a table", key=path, fix=f'write it as [{path}] with mode = "exact" or "semantic"')
    reject_unknown(
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
    mode = str_field(tbl, "mode", path, "exact")
    if mode not in ("exact", "semantic", "off"):
        raise ConfigError(f"unknown cache mode {mode!r}", key=f"{path}.mode", fix='use "exact", "semantic" or "off"')
    if mode == "off":
        return None
    threshold = num_field(tbl, "semantic_threshold", path, lo=-1.0)
    if threshold is not None and threshold > 1:
        raise ConfigError(
            f"a cosine threshold is at most 1, got {threshold}",
            key=f"{path}.semantic_threshold",
            fix="leave it unset for the calibrated default",
        )
    file = str_field(tbl, "path", path)
    p = resolve_path(file, base_dir) if file else None
    max_bytes = num_field(tbl, "max_bytes", path, integer=True, strict=True)
    return CacheSettings(
        mode=mode,
        ttl_s=float(num_field(tbl, "ttl_s", path, 7 * 24 * 3600.0, strict=True)),
        max_entries=int(num_field(tbl, "max_entries", path, 100_000, integer=True, strict=True)),
        max_bytes=None if max_bytes is None else int(max_bytes),
        path=p,
        redis_url_env=str_field(tbl, "redis_url_env", path),
        semantic_threshold=None if threshold is None else float(threshold),
        guard=_guard(tbl.get("guard", "strict"), f"{path}.guard"),
        cache_sampled=bool_field(tbl, "cache_sampled", path, False),
        default_temperature=float(num_field(tbl, "default_temperature", path, 1.0)),
    )


def parse_prompt_adaptation(tbl: Any, path: str, tiers: tuple[str, ...], base_dir: Path | None) -> PromptAdaptationSettings | None:
    """``[profiles.NAME.prompt_adaptation]`` (the examples file's rows are read when the profile is built)."""
    if tbl is None:
        return None
    if not isinstance(tbl, Mapping):
        raise ConfigError("expected a table", key=path, fix=f'write it as [{path}] with examples = "shots.jsonl"')
    reject_unknown(tbl, ("examples", "k", "budget_tokens", "layout", "strip_prefix", "embedder", "tiers"), path)
    examples = file_field(tbl, "examples", path, base_dir, 'a JSONL/CSV file with "input" and "output" per row', required=True)
    layout = str_field(tbl, "layout", path, "messages")
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
        k=int(num_field(tbl, "k", path, 8, integer=True, strict=True)),
        budget_tokens=int(num_field(tbl, "budget_tokens", path, 80, integer=True, strict=True)),
        layout=layout,
        strip_prefix=file_field(tbl, "strip_prefix", path, base_dir, "a text file holding the exact prefix clients send"),
        embedder=str_field(tbl, "embedder", path, "minilm"),
        tiers=None if only is None else tuple(dict.fromkeys(only)),
    )
