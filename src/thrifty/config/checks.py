"""``[profiles.NAME] checks``: the free answer checks a profile declares (issue #16)."""

from __future__ import annotations

import re
from typing import Any, Mapping

from thrifty.errors import ConfigError

__all__ = ["CHECK_NAMES", "parse_checks"]

CHECK_NAMES = ("json", "arithmetic", "python")  # thrifty.scoring.verifiers.CHECKS (config sits below scoring)


def parse_checks(v: Any, path: str) -> tuple[str | tuple[str, str], ...]:
    """``checks = ["json", "arithmetic", "python", {regex = "..."}]`` → names and ("regex", pattern)."""
    if v is None:
        return ()
    fix = 'write checks = ["json", "arithmetic", "python", {regex = "^ANSWER: "}] (any subset)'
    if not isinstance(v, list):
        raise ConfigError("expected a list of checks", key=path, fix=fix)
    out: list[str | tuple[str, str]] = []
    for i, c in enumerate(v):
        if isinstance(c, str) and c in CHECK_NAMES:
            out.append(c)
        elif isinstance(c, Mapping) and set(c) == {"regex"} and isinstance(c["regex"], str):
            try:
                re.compile(c["regex"])
            except re.error as exc:
                raise ConfigError(
                    f"invalid regular expression {c['regex']!r}: {exc}",
                    key=f"{path}[{i}].regex",
                    fix="write a Python regular expression (TOML literal strings '...' keep backslashes)",
                ) from None
            out.append(("regex", c["regex"]))
        else:
            raise ConfigError(f"unknown check {c!r}", key=f"{path}[{i}]", fix=fix)
    return tuple(out)
