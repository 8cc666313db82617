"""Canonical cache keys for chat requests (pure, no I/O).

Two keys are derived from a :class:`~thrifty.types.ChatRequest`:

``scope``
    sha256 of the canonical JSON of ``namespace`` (the profile or model the cache sits in front of),
    the requested ``model``, every sampling parameter (except transport-only ones such as ``stream``),
    ``tools`` and ``tool_choice``. Two requests can share an answer — exactly or semantically — only if
    their scopes are equal, so answers never cross profiles, parameters or tools.
``exact``
    sha256 of the canonical JSON of the scope plus the *full* message list.

The semantic cache compares only the last user turn, and only among entries whose ``context`` key
(scope + every message before that turn: system prompt, history) is identical — a different system
prompt or history can never produce a semantic hit.

Canonical JSON: keys sorted, no insignificant whitespace, UTF-8, tuples as lists, floats that are
whole numbers written as integers (``temperature: 0`` and ``0.0`` are the same request).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from thrifty.types import ChatRequest, message_text

__all__ = [
    "TRANSPORT_PARAMS",
    "canonical_json",
    "RequestKeys",
    "request_keys",
    "semantic_query",
]

#: Parameters that change how an answer is delivered, not what it says: never part of a key.
TRANSPORT_PARAMS: frozenset[str] = frozenset({"stream", "stream_options"})


def _normalise(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _normalise(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_normalise(v) for v in obj]
    if isinstance(obj, float):
        if math.isfinite(obj) and obj.is_integer():
            return int(obj)
        return obj
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return repr(obj)


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text of ``obj`` (sorted keys, compact, numbers normalised)."""
    return json.dumps(_normalise(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RequestKeys:
    """``scope``: who may share answers; ``exact``: this very request; ``context``: scope + all
    messages before the last user turn (the semantic neighbourhood); ``query``: that turn's text, or
    None when the request cannot be matched semantically (last message not a plain-text user turn)."""

    scope: str
    exact: str
    context: str
    query: str | None


def _scope_doc(request: ChatRequest, namespace: str, ignore: Iterable[str]) -> dict[str, Any]:
    drop = set(TRANSPORT_PARAMS) | set(ignore)
    params = {k: v for k, v in dict(request.params).items() if k not in drop}
    return {
        "v": 1,
        "namespace": namespace,
        "model": request.model,
        "params": params,
        "tools": list(request.tools) if request.tools is not None else None,
        "tool_choice": request.tool_choice,
    }


def semantic_query(request: ChatRequest) -> str | None:
    """Text of the final user turn when it is plain text (no images, tool results); else None."""
    if not request.messages:
        return None
    last = request.messages[-1]
    if last.get("role") != "user" or request.has_images:
        return None
    content = last.get("content")
    if isinstance(content, (list, tuple)) and any(not (isinstance(p, Mapping) and p.get("type") == "text") for p in content):
        return None
    text = message_text(content).strip()
    return text or None


def request_keys(request: ChatRequest, namespace: str, ignore_params: Iterable[str] = ()) -> RequestKeys:
    """All keys of ``request`` in ``namespace`` (see the module docstring)."""
    scope_doc = _scope_doc(request, namespace, ignore_params)
    scope = _sha(canonical_json(scope_doc))
    messages = list(request.messages)
    exact = _sha(canonical_json({"scope": scope, "messages": messages}))
    context = _sha(canonical_json({"scope": scope, "context": messages[:-1]}))
    return RequestKeys(scope=scope, exact=exact, context=context, query=semantic_query(request))
