"""Prompt adaptation as a provider wrapper: per request, few-shot examples chosen for *this* query.

:class:`FewShotAdapter` rewrites a single-turn request (system/developer messages, then one user
turn) before a tier sees it; :class:`AdaptedProvider` puts it in front of any provider. The gateway
builds both from ``[profiles.NAME.prompt_adaptation]`` (:func:`thrifty.serving.profiles.adapted_tiers`).

For each request:

1. **strip** (optional ``strip_prefix``) — when the user turn starts with a fixed few-shot prefix
   the client always sends (FrugalGPT's HEADLINES prompts carry 8 shots), the prefix's example
   blocks (``Q: …`` newline ``A: …``) are removed; its other blocks (an instruction line) stay;
2. **select** — :class:`~thrifty.serving.prompt_adapt.ShotSelector` takes up to ``k`` pool examples most
   similar to the query (the rest of the user turn, without ``Q:``/``A:`` markers) whose formatted
   text fits ``budget_tokens`` (:func:`~thrifty.serving.prompt_adapt.approx_tokens`, a tokenizer-free count);
3. **insert** — ``layout = "messages"``: each shot becomes a user turn and an assistant turn placed
   before the user turn (the form chat APIs, chat templates and the local transcript mode all
   read as examples); ``layout = "text"``: the user turn becomes ``kept blocks``, the shots as
   ``Q: input`` / ``A: output`` blocks, then the query as ``Q: query`` / ``A:`` (FrugalGPT's layout,
   for base models in raw completion).

Requests with history, tool results or images pass through unchanged. The answer's
:attr:`~thrifty.types.Completion.adaptation` says what was done: ``shots``, ``stripped`` and
``shot_ids`` (:func:`~thrifty.serving.prompt_adapt.example_id` of each shot, logged with the tier's step) and
``tokens_saved`` — approximate tokens of the original messages' text minus those of the adapted
ones (negative when the added shots outweigh what was stripped). The upstream's usage counts the
tokens actually sent, so cost needs no correction.

Selection is deterministic for a given pool, k, budget, layout, prefix and embedder; their digest
(:attr:`FewShotAdapter.fingerprint`) is part of the cache namespace when a cache sits in front.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Mapping, Sequence

import numpy as np

from thrifty.data.rows import read_rows
from thrifty.errors import DataError
from thrifty.scoring.memo import LRUMemo
from thrifty.serving.prompt_adapt import Example, ShotSelector, approx_tokens, example_id, format_example
from thrifty.serving.providers.base import Wrapper, stream_of
from thrifty.types import ChatRequest, Completion, message_text

__all__ = ["LAYOUTS", "read_examples", "FewShotAdapter", "AdaptedProvider"]

LAYOUTS = ("messages", "text")
_EXAMPLE_BLOCK = re.compile(r"^\s*Q:.*\n\s*A:", re.S)


def _text_field(row: Mapping[str, Any], key: str, path: Path, line: int) -> str:
    v = row.get(key)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = str(v)  # a CSV/JSON number as a label
    if not isinstance(v, str) or not v.strip():
        raise DataError(
            f"missing or empty {key!r}",
            file=str(path),
            line=line,
            field=key,
            expected='rows {"input": "...", "output": "..."} or {"messages": [..., user, assistant]}',
        )
    return v.strip()


def read_examples(path: str | os.PathLike[str]) -> list[Example]:
    """The labelled examples in ``path`` (JSONL or CSV, ``.gz`` allowed): ``input`` and ``output``
    per row, or ``messages`` (the chat fine-tuning format) whose last user and last assistant turns
    are the pair. Raises :class:`~thrifty.errors.DataError` naming the file, line and field."""

    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", file=str(path), expected="a JSONL or CSV file of examples")
    out: list[Example] = []
    for line, row in read_rows(path):
        if row.get("messages") is not None:
            msgs = row["messages"]
            if not isinstance(msgs, list):
                raise DataError("not a list", file=str(path), line=line, field="messages", expected="a list of chat messages")
            last = {m.get("role"): m.get("content") for m in msgs if isinstance(m, Mapping)}
            row = {
                "input": message_text(last.get("user")) if "user" in last else None,
                "output": message_text(last.get("assistant")) if "assistant" in last else None,
            }
        out.append(Example(_text_field(row, "input", path, line), _text_field(row, "output", path, line)))
    if not out:
        raise DataError("no examples", file=str(path), expected="at least one row")
    return out


def _blocks(text: str) -> list[str]:
    return [b.strip() for b in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if b.strip()]


def _query(text: str) -> str:
    """The question in ``text``: without a leading ``Q:`` and a trailing ``A:`` marker."""
    q = re.sub(r"^\s*Q:\s*", "", text)
    return re.sub(r"\n\s*A:\s*$", "", q).strip()


def _single_turn(messages: Sequence[Mapping[str, Any]]) -> int | None:
    """Index of the one user turn of a system…, user request with plain text content; else None."""
    roles = [m.get("role") for m in messages]
    if roles.count("user") != 1 or roles[-1] != "user" or any(r not in ("system", "developer", "user") for r in roles):
        return None
    content = messages[-1].get("content")
    if isinstance(content, (list, tuple)) and any(not (isinstance(p, Mapping) and p.get("type") == "text") for p in content):
        return None  # images or other parts: leave the request alone
    return len(messages) - 1


class FewShotAdapter:
    """Rewrites requests with selected shots (see the module docstring). Thread-safe; the pool is
    embedded on first use (``embed`` is called then, in the caller's thread)."""

    def __init__(
        self,
        pool: Sequence[Example],
        embed: Callable[[Sequence[str]], np.ndarray],
        *,
        k: int = 8,
        budget_tokens: int | None = 80,
        layout: str = "messages",
        strip_prefix: str | None = None,
        embedder_name: str = "",
    ) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if not pool:
            raise ValueError("the example pool is empty")
        self.pool = list(pool)
        self.embed = embed
        self.k, self.budget_tokens, self.layout = int(k), budget_tokens, layout
        self.prefix = strip_prefix.replace("\r\n", "\n").strip() if strip_prefix and strip_prefix.strip() else None
        self.kept = [b for b in _blocks(self.prefix) if not _EXAMPLE_BLOCK.match(b)] if self.prefix else []
        spec = {
            "pool": [[e.input, e.output] for e in self.pool],
            "k": self.k,
            "budget": budget_tokens,
            "layout": layout,
            "prefix": self.prefix,
            "embedder": embedder_name,
        }
        self.fingerprint = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        self._selector: ShotSelector | None = None
        self._memo: LRUMemo[str, list[Example]] = LRUMemo(name="few-shot-selections")
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FewShotAdapter({len(self.pool)} examples, k={self.k}, budget={self.budget_tokens}, layout={self.layout!r})"

    def select(self, query: str) -> list[Example]:
        """The shots for ``query`` (least similar first), remembered for the next tier of the request."""
        remembered = self._memo.get(query)
        if remembered is not None:
            return remembered
        with self._lock:
            if self._selector is None:
                self._selector = ShotSelector(self.pool, self.embed)
        # an example equal to the query is kept: its answer is the best demonstration there is
        shots = self._selector.select(query, self.k, self.budget_tokens, exclude_input=False)
        return self._memo.put(query, shots)

    def adapt(self, request: ChatRequest) -> tuple[ChatRequest, dict[str, Any] | None]:
        """``request`` with its shots, and what was done (None: not adapted). Blocking (embeds)."""
        at = _single_turn(request.messages)
        if at is None:
            return request, None
        text = message_text(request.messages[at].get("content")).replace("\r\n", "\n")
        stripped = self.prefix is not None and text.lstrip().startswith(self.prefix)
        rest = text.lstrip()[len(self.prefix) :].strip() if stripped and self.prefix else text.strip()
        kept = self.kept if stripped else []
        query = _query(rest)
        if not query:
            return request, None
        shots = self.select(query)
        if not shots and not stripped:
            return request, None
        head = list(request.messages[:at])
        if self.layout == "text":
            body = "\n\n".join([*kept, *(format_example(s) for s in shots), f"Q: {query}\nA:"])
            messages = [*head, {**request.messages[at], "content": body}]
        else:
            pairs = [m for s in shots for m in ({"role": "user", "content": s.input}, {"role": "assistant", "content": s.output})]
            body = "\n\n".join([*kept, rest])
            messages = [*head, *pairs, {**request.messages[at], "content": body}]
        before = sum(approx_tokens(message_text(m.get("content"))) for m in request.messages)
        after = sum(approx_tokens(message_text(m.get("content"))) for m in messages)
        info = {
            "shots": len(shots),
            "shot_ids": [example_id(s) for s in shots],  # logged per tier (steps.shots): which examples, not only how many
            "stripped": stripped,
            "tokens_saved": before - after,
            "layout": self.layout,
        }
        return replace(request, messages=tuple(messages)), info


class AdaptedProvider(Wrapper):
    """``inner`` behind a :class:`FewShotAdapter`; flags (tools, vision, model, prices) are the inner's.
    It holds nothing to close: the pool's vectors live in memory, the embedder is process-wide."""

    def __init__(self, inner: Any, adapter: FewShotAdapter) -> None:
        super().__init__(inner)
        self.adapter = adapter
        self.fingerprint = adapter.fingerprint  # part of a cache namespace in front of this provider

    def __repr__(self) -> str:
        return f"AdaptedProvider({self.name!r}, {self.adapter!r})"

    async def _adapt(self, request: ChatRequest) -> tuple[ChatRequest, dict[str, Any] | None]:
        return await asyncio.to_thread(self.adapter.adapt, request)

    async def complete(self, request: ChatRequest) -> Completion:
        adapted, info = await self._adapt(request)
        completion: Completion = await self.inner.complete(adapted)
        return replace(completion, adaptation=info) if info is not None else completion

    async def stream(self, request: ChatRequest) -> AsyncIterator[str | Completion]:
        """Text deltas then the final Completion (carrying ``adaptation``)."""
        adapted, info = await self._adapt(request)
        async for item in stream_of(self.inner, adapted):
            if isinstance(item, Completion) and info is not None:
                item = replace(item, adaptation=info)
            yield item
