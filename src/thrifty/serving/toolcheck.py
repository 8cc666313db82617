"""Validate returned tool calls against the tools the request declared (JSON Schema).

A tool call naming an undeclared tool, with arguments that are not a JSON object, or with arguments
that fail the tool's ``parameters`` schema is an invalid answer: the engine treats it as a failed
tier, so the cascade escalates.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from thrifty.errors import ConfigError
from thrifty.types import ChatRequest, Completion

__all__ = ["tool_call_problem"]


def tool_call_problem(request: ChatRequest, completion: Completion) -> str | None:
    """Why ``completion``'s tool calls are invalid for ``request``, or None if they are fine."""
    if not completion.tool_calls:
        return None
    declared: dict[str, Mapping[str, Any]] = {}
    for tool in request.tools or ():
        fn = tool.get("function") or {}
        if fn.get("name"):
            declared[fn["name"]] = fn.get("parameters") or {"type": "object"}
    try:
        import jsonschema
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            "jsonschema is needed to validate tool calls",
            key="tools",
            fix="pip install 'thrifty[serve]'",
        ) from exc
    for call in completion.tool_calls:
        fn = call.get("function") or {}
        name = fn.get("name")
        if name not in declared:
            return f"tool call to undeclared tool {name!r}"
        raw = fn.get("arguments") or "{}"
        try:
            args = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError as exc:
            return f"tool {name!r}: arguments are not valid JSON ({exc.msg})"
        if not isinstance(args, dict):
            return f"tool {name!r}: arguments must be a JSON object"
        try:
            jsonschema.validate(args, declared[name])
        except jsonschema.ValidationError as exc:
            return f"tool {name!r}: arguments do not match the schema: {exc.message}"
        except jsonschema.SchemaError as exc:
            return f"tool {name!r}: declared schema is invalid: {exc.message}"
    return None
