"""Prompt adaptation (FrugalGPT): send fewer tokens for the same answers. Pure, sans-I/O.

Two tools, each a pure builder/parser pair plus a small async helper that runs it through any
:class:`~thrifty.types.Provider` (the prompt goes out as one user message; a completion-mode
provider sends that text verbatim):

**Few-shot selection** — :class:`ShotSelector` keeps a pool of labelled examples and their
embeddings; for a query it takes the most similar examples, most similar first, while their
formatted text fits a token budget and at most ``k`` of them, then lays them out with the most
similar one *closest to the query*. The embedder and the token counter are passed in, so selection
is a deterministic function of its inputs.

**Query concatenation** — :func:`batch_prompt` puts n short queries into one prompt, numbered
(``Q1: …`` … ``Qn: …`` then ``A1:``), after few-shot blocks in the same numbered layout;
:func:`split_answers` reads the numbered answers back (``A2: down``, ``2. down``, ``2) down`` …),
maps each to a label when labels are given, and returns None for any answer it cannot find, so the
caller can re-ask those queries one by one (:func:`complete_batched` does).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from thrifty.types import ChatRequest, Completion

__all__ = [
    "Example",
    "example_id",
    "approx_tokens",
    "format_example",
    "ShotSelector",
    "few_shot_prompt",
    "batch_prompt",
    "split_answers",
    "match_label",
    "complete_few_shot",
    "complete_batched",
]

TokenCounter = Callable[[str], int]
EmbedFn = Callable[[Sequence[str]], np.ndarray]

_TOKEN = re.compile(r"\w+|[^\w\s]")


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate: words and punctuation marks, long words counted per 4 chars."""
    return sum(max(1, math.ceil(len(t) / 4)) if t[0].isalnum() else 1 for t in _TOKEN.findall(text))


@dataclass(frozen=True)
class Example:
    input: str
    output: str


def example_id(ex: Example) -> str:
    """A short stable id of an example (12 hex digits of the SHA-256 of its input and output): what the
    log records for each shot a request got, found again in the examples file by the dashboard."""
    return hashlib.sha256(f"{ex.input}\x1f{ex.output}".encode()).hexdigest()[:12]


def format_example(ex: Example, q: str = "Q: ", a: str = "A: ") -> str:
    return f"{q}{ex.input}\n{a}{ex.output}"


def few_shot_prompt(instruction: str, shots: Sequence[Example], query: str, q: str = "Q: ", a: str = "A:") -> str:
    """``instruction``, the shots, then the query awaiting its answer (FrugalGPT's layout)."""
    blocks = [instruction.strip()] if instruction.strip() else []
    blocks += [format_example(s, q, a + " ") for s in shots]
    blocks.append(f"{q}{query}\n{a}")
    return "\n\n".join(blocks)


class ShotSelector:
    """Pick the k most similar pool examples to a query under a token budget (see module doc)."""

    def __init__(
        self,
        pool: Sequence[Example],
        embed: EmbedFn,
        *,
        count_tokens: TokenCounter = approx_tokens,
        vectors: np.ndarray | None = None,
    ) -> None:
        if not pool:
            raise ValueError("the example pool is empty")
        self.pool = list(pool)
        self.embed = embed
        self.count_tokens = count_tokens
        vecs = np.asarray(vectors if vectors is not None else embed([e.input for e in self.pool]), dtype=np.float32)
        if vecs.shape[0] != len(self.pool):
            raise ValueError(f"{vecs.shape[0]} vectors for {len(self.pool)} examples")
        self.vectors = vecs
        self._cost = [count_tokens(format_example(e)) + 1 for e in self.pool]  # +1: the blank line between shots

    def select(
        self,
        query: str,
        k: int = 8,
        budget_tokens: int | None = None,
        *,
        query_vector: np.ndarray | None = None,
        exclude_input: bool = True,
    ) -> list[Example]:
        """Up to ``k`` examples in decreasing similarity whose summed formatted tokens fit
        ``budget_tokens`` (None: no budget). An example whose input equals the query is skipped when
        ``exclude_input`` (no answer leakage in evaluation). Returned order: least similar first, so
        the most similar example sits right before the query."""
        if k <= 0 or (budget_tokens is not None and budget_tokens <= 0):
            return []
        qv = np.asarray(query_vector if query_vector is not None else self.embed([query])[0], dtype=np.float32)
        sims = self.vectors @ qv
        chosen: list[int] = []
        used = 0
        seen: set[str] = set()
        for i in np.argsort(-sims, kind="stable"):
            ex = self.pool[int(i)]
            if (exclude_input and ex.input.strip() == query.strip()) or ex.input in seen:
                continue
            cost = self._cost[int(i)]
            if budget_tokens is not None and used + cost > budget_tokens:
                continue
            chosen.append(int(i))
            seen.add(ex.input)
            used += cost
            if len(chosen) >= k:
                break
        return [self.pool[i] for i in reversed(chosen)]


# ---- query concatenation -----------------------------------------------------------------------------
def batch_prompt(instruction: str, queries: Sequence[str], shots: Sequence[Sequence[Example]] = ()) -> str:
    """One prompt asking ``len(queries)`` questions at once.

    ``shots`` are demonstration batches laid out exactly like the real one, so a base model learns
    the numbered answer format. The prompt ends with ``A1:``: the answer to the first query follows.
    """
    if not queries:
        raise ValueError("batch_prompt needs at least one query")
    blocks = [instruction.strip()] if instruction.strip() else []
    for batch in shots:
        qs = "\n".join(f"Q{i}: {ex.input}" for i, ex in enumerate(batch, 1))
        ans = "\n".join(f"A{i}: {ex.output}" for i, ex in enumerate(batch, 1))
        blocks.append(f"{qs}\n{ans}")
    qs = "\n".join(f"Q{i}: {q}" for i, q in enumerate(queries, 1))
    blocks.append(f"{qs}\nA1:")
    return "\n\n".join(blocks)


_NUMBERED = re.compile(r"^\s*(?:A|Answer)?\s*(\d{1,3})\s*[:.)\-]\s*(.*?)\s*$", re.I)


def match_label(answer: str | None, labels: Sequence[str] | None) -> str | None:
    """``answer`` normalised to one of ``labels``: the first label word it contains (case-folded),
    or None. With no labels: the stripped answer (None if empty)."""
    if answer is None:
        return None
    text = answer.strip()
    if not labels:
        return text or None
    words = re.findall(r"[a-z]+", text.lower())
    lowered = {lab.lower(): lab for lab in labels}
    for w in words:
        if w in lowered:
            return lowered[w]
    return None


def split_answers(completion: str, n: int, labels: Sequence[str] | None = None, *, starts_with_first: bool = True) -> list[str | None]:
    """The n answers in ``completion`` (the text generated after the prompt's ``A1:``).

    Numbered lines (``A3: up``, ``3. up``, ``3) up``) are read by number — the first line is answer 1
    when ``starts_with_first`` (the prompt ended with ``A1:``); the first answer to a number wins and
    numbers outside 1..n are ignored. If no numbered line is found beyond the first, a single line of
    n comma/semicolon-separated answers is accepted. With ``labels``, answers are mapped through
    :func:`match_label`; an answer that is missing or matches no label is None.
    """
    found: dict[int, str] = {}
    lines = completion.splitlines()
    if starts_with_first and lines:
        first = lines[0]
        if not _NUMBERED.match(first):
            found[1] = first
            lines = lines[1:]
    for line in lines:
        m = _NUMBERED.match(line)
        if m is None:  # blank lines, echoed questions, chatter
            continue
        idx = int(m.group(1))
        if 1 <= idx <= n and idx not in found:
            found[idx] = m.group(2)
    if len(found) <= 1 and n > 1 and 1 in found:
        parts = [p for p in re.split(r"[,;]|\s{2,}", found[1]) if p.strip()]
        if len(parts) == n:
            found = {i + 1: p for i, p in enumerate(parts)}
    out: list[str | None] = []
    for i in range(1, n + 1):
        ans = found.get(i)
        out.append(match_label(ans, labels) if labels else (ans.strip() or None) if ans is not None else None)
    return out


# ---- helpers that run through a provider -------------------------------------------------------
async def complete_few_shot(
    provider: Any,
    instruction: str,
    selector: ShotSelector,
    query: str,
    *,
    k: int = 8,
    budget_tokens: int | None = None,
    labels: Sequence[str] | None = None,
    **params: Any,
) -> tuple[str | None, Completion]:
    """Ask ``query`` with selected shots; returns (label or stripped answer, the completion)."""
    prompt = few_shot_prompt(instruction, selector.select(query, k, budget_tokens), query)
    params.setdefault("stop", ["\n"])
    completion = await provider.complete(ChatRequest.from_prompt(prompt, **params))
    return match_label(completion.text.split("\n")[0], labels), completion


async def complete_batched(
    provider: Any,
    instruction: str,
    queries: Sequence[str],
    *,
    size: int = 4,
    shots: Sequence[Sequence[Example]] = (),
    labels: Sequence[str] | None = None,
    retry_single: bool = True,
    **params: Any,
) -> tuple[list[str | None], list[Completion]]:
    """Answer ``queries`` ``size`` at a time; answers the split could not recover are asked again
    one by one when ``retry_single`` (with the first ``shots`` batch as plain few-shot examples).
    Returns the answers (in query order) and every completion paid for."""
    answers: list[str | None] = []
    paid: list[Completion] = []
    for start in range(0, len(queries), size):
        chunk = list(queries[start : start + size])
        p = dict(params)
        p.setdefault("max_tokens", 8 * len(chunk) + 8)
        p.setdefault("stop", ["\n\n", "\nQ"])
        completion = await provider.complete(ChatRequest.from_prompt(batch_prompt(instruction, chunk, shots), **p))
        paid.append(completion)
        got = split_answers(completion.text, len(chunk), labels)
        if retry_single:
            flat = [ex for batch in shots for ex in batch]
            for j, ans in enumerate(got):
                if ans is None:
                    single = dict(params)
                    single.setdefault("max_tokens", 8)
                    single.setdefault("stop", ["\n"])
                    c = await provider.complete(ChatRequest.from_prompt(few_shot_prompt(instruction, flat, chunk[j]), **single))
                    paid.append(c)
                    got[j] = match_label(c.text.split("\n")[0], labels)
        answers.extend(got)
    return answers, paid
