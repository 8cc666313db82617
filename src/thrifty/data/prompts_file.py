"""Read a prompts file for ``thrifty collect``: one prompt per row, validated line by line.

Accepted formats: JSONL (one object per line) or CSV with a header (``.gz`` allowed for both).
Columns:

- ``prompt_id`` (or ``id``) — required, unique;
- the prompt text — ``prompt`` (or ``instruction`` / ``text`` / ``query`` / ``question``), required,
  a non-empty string; or ``messages``: a JSON list of OpenAI chat messages;
- ``gold`` (optional) — the reference answer for exact grading (any column can be used with
  ``--gold``; all extra columns are kept as prompt metadata);
- ``prefix`` (optional) — text prepended to the prompt (e.g. a few-shot block);
- ``template`` (optional) — a format string containing ``{prompt}``; applied after the prefix;
- ``system`` (optional) — a system message.

A file-wide ``prefix``/``template`` may also be given on the command line. Every problem raises
:class:`~thrifty.errors.DataError` naming the file and line (CSV: the header is line 1).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from thrifty.data.rows import read_rows  # the one row reader (line-numbered, CSV/JSONL/gz/parquet)
from thrifty.errors import ConfigError, DataError
from thrifty.types import ChatRequest

__all__ = ["PromptItem", "read_prompts", "build_request", "render_prompt"]

TEXT_FIELDS = ("prompt", "instruction", "text", "query", "question")
RESERVED = {"prompt_id", "id", "messages", "prefix", "template", "system", *TEXT_FIELDS}


@dataclass(frozen=True)
class PromptItem:
    """One prompt to collect. ``text`` is the bare prompt (without prefix/template)."""

    prompt_id: str
    text: str
    prefix: str | None = None
    template: str | None = None
    system: str | None = None
    messages: tuple[Mapping[str, Any], ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # gold and any other columns
    line: int = 0

    @property
    def gold(self) -> Any:
        return self.meta.get("gold")


def render_prompt(text: str, prefix: str | None = None, template: str | None = None) -> str:
    """The user message actually sent: ``template.format(prompt=prefix + text)``, parts optional."""
    body = (prefix or "") + text
    if template:
        body = template.replace("{prompt}", body)
    return body


def build_request(item: PromptItem, model: str, params: Mapping[str, Any]) -> ChatRequest:
    """The ChatRequest for one (prompt, model) pair."""
    if item.messages is not None:
        return ChatRequest(messages=tuple(item.messages), model=model, params=dict(params))
    msgs: list[dict[str, Any]] = []
    if item.system:
        msgs.append({"role": "system", "content": item.system})
    msgs.append({"role": "user", "content": render_prompt(item.text, item.prefix, item.template)})
    return ChatRequest(messages=tuple(msgs), model=model, params=dict(params))


def _str_field(row: dict, key: str, path: Path, line: int) -> str | None:
    v = row.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise DataError(f"got {type(v).__name__} {v!r}", file=str(path), line=line, field=key, expected="text")
    return v


def _messages(v: Any, path: Path, line: int) -> tuple[Mapping[str, Any], ...]:
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"invalid JSON: {exc.msg}", file=str(path), line=line, field="messages", expected="a JSON list of chat messages"
            ) from None
    if not isinstance(v, list) or not v:
        raise DataError(
            "not a non-empty list", file=str(path), line=line, field="messages", expected='a list like [{"role": "user", "content": "..."}]'
        )
    for i, m in enumerate(v):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "developer", "tool"):
            raise DataError(
                f"message {i} has no valid role",
                file=str(path),
                line=line,
                field="messages",
                expected="objects with role system|user|assistant and content",
            )
        content = m.get("content")
        if not (isinstance(content, (str, list)) or (content is None and m["role"] == "assistant" and m.get("tool_calls"))):
            raise DataError(
                f"message {i} has content {content!r}",
                file=str(path),
                line=line,
                field="messages",
                expected="each message's content as text (or a list of content parts)",
            )
    return tuple(v)


def read_prompts(
    path: str | os.PathLike, *, prefix: str | None = None, template: str | None = None, limit: int | None = None
) -> list[PromptItem]:
    """Parse and validate a prompts file; ``prefix``/``template`` apply to rows that set none."""
    path = Path(path)
    if limit is not None and limit < 1:
        raise ConfigError(
            f"the prompt limit must be at least 1, got {limit}", key="--limit", fix="pass --limit N with N ≥ 1, or leave it out"
        )
    if not path.is_file():
        raise DataError("no such file", file=str(path), expected="a JSONL or CSV prompts file")
    if template is not None and "{prompt}" not in template:
        raise DataError("template has no {prompt} placeholder", file="--template", expected="text containing {prompt}")
    items: list[PromptItem] = []
    seen: dict[str, int] = {}
    for line, row in read_rows(path):
        pid = row.get("prompt_id", row.get("id"))
        if pid is None or (isinstance(pid, str) and not pid.strip()) or isinstance(pid, (bool, list, dict)):
            raise DataError(
                f"missing or invalid prompt id {pid!r}",
                file=str(path),
                line=line,
                field="prompt_id",
                expected="a non-empty prompt_id (or id) per row",
            )
        if isinstance(pid, float) and pid.is_integer():
            pid = int(pid)
        pid = str(pid).strip()
        if pid in seen:
            raise DataError(
                f"duplicate prompt_id {pid!r} (first on line {seen[pid]})",
                file=str(path),
                line=line,
                field="prompt_id",
                expected="unique ids",
            )
        seen[pid] = line
        msgs = _messages(row["messages"], path, line) if row.get("messages") is not None else None
        key = next((k for k in TEXT_FIELDS if row.get(k) is not None), None)
        text = _str_field(row, key, path, line) if key else None
        if msgs is None and (text is None or not text.strip()):
            raise DataError(
                "missing prompt text",
                file=str(path),
                line=line,
                field="prompt",
                expected=f"a non-empty '{TEXT_FIELDS[0]}' (or {', '.join(TEXT_FIELDS[1:])}) or 'messages'",
            )
        if text is None and msgs is not None:
            text = next((str(m.get("content")) for m in reversed(msgs) if m.get("role") == "user"), "")
        tpl = _str_field(row, "template", path, line) or template
        if tpl is not None and "{prompt}" not in tpl:
            raise DataError(
                "template has no {prompt} placeholder", file=str(path), line=line, field="template", expected="text containing {prompt}"
            )
        meta = {k: v for k, v in row.items() if k not in RESERVED}
        items.append(
            PromptItem(
                prompt_id=pid,
                text=text or "",
                prefix=_str_field(row, "prefix", path, line) or prefix,
                template=tpl,
                system=_str_field(row, "system", path, line),
                messages=msgs,
                meta=meta,
                line=line,
            )
        )
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise DataError("no prompts", file=str(path), expected="at least one row")
    return items
