"""Shared pieces of ``thrifty eval`` and ``thrifty eval --contributions``: ``--opt`` parsing and JSON output."""

from __future__ import annotations

import json
from typing import Any

from thrifty.errors import ConfigError

__all__ = ["parse_options", "policy_options", "jsonable"]


def parse_options(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"bad option {item!r}", key="--opt", fix="use --opt key=value")
        out[key.strip()] = _json_or_text(value.strip())
    return out


def policy_options(pairs: list[str], policies: list[str]) -> dict[str, dict[str, Any]]:
    """Options per ``--policy`` name: the unscoped ``key=value`` pairs, overridden by ``base.key=value``
    (``base``: the name before ``:``, e.g. ``router`` for ``router:knn``), overridden by
    ``name.key=value`` (the full name). A scope naming a policy that is not evaluated is an error."""
    from thrifty.offline.registry import policy_names

    known = policy_names()
    scopes = sorted({*policies, *(n.partition(":")[0] for n in policies)}, key=len, reverse=True)
    plain: list[str] = []
    scoped: dict[str, list[str]] = {}
    for item in pairs:
        key = item.partition("=")[0]
        scope = next((s for s in scopes if key.startswith(s + ".")), None)
        if scope is None:
            head = key.partition(".")[0]
            if "." in key and head.partition(":")[0] in known:
                raise ConfigError(
                    f"option {item!r} is scoped to {head!r}, which is not among the evaluated policies",
                    key="--opt",
                    fix=f"add --policy {head}, or scope it to one of: {', '.join(policies)}",
                )
            plain.append(item)
        else:
            scoped.setdefault(scope, []).append(item[len(scope) + 1 :])
    base = parse_options(plain)
    return {
        n: {**base, **parse_options(scoped.get(n.partition(":")[0], [])), **(parse_options(scoped.get(n, [])) if ":" in n else {})}
        for n in policies
    }


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def jsonable(o: Any) -> Any:
    import numpy as np

    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
