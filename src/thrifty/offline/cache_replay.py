"""Replay of the completion cache over a held-out request stream (offline, no I/O but embeddings).

The prompts of a routing table, in table row order, are the stream of requests a gateway receives.
Each request first meets the cache, exactly as live (:mod:`thrifty.serving.cache`):

- **exact**: the same request text as an earlier *cached* request (one that missed and was
  answered) is a hit;
- **semantic**: otherwise the live :class:`~thrifty.serving.cache.semantic.SemanticMatcher` (its threshold,
  length limit and lexical guard) looks for an admissible earlier cached request;
- a miss is answered by the routing policy and its answer is cached.

Which requests hit, and whose answer they get, depends only on the request texts, so
:func:`stream_hits` computes it once per table. A hit costs 0 and returns the answer the policy
gave the *source* request; :func:`grade_hits` grades that answer for the new request — against the
new request's gold answer with an exact :class:`~thrifty.calibration.label.Grader` when the table has a gold
column, else (exact hits only) with the source's recorded quality, since the two requests are
identical. :func:`cached_points` applies the hits to a policy's pooled held-out operating points.

The request text is what the gateway would receive: the table's prompt with its ``prefix`` and
``template`` prompt columns applied (:func:`thrifty.data.prompts_file.render_prompt`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np

from thrifty.data.prompts_file import render_prompt
from thrifty.data.table import RoutingTable
from thrifty.errors import ConfigError
from thrifty.scoring.graders import make_grader, normalise
from thrifty.serving.cache.semantic import SemanticMatcher, similarities
from thrifty.serving.cache.store import Candidate

__all__ = ["CacheHits", "request_texts", "stream_hits", "gold_grader", "gold_agreement", "grade_hits", "cached_points", "CACHE_MODES"]

CACHE_MODES = ("semantic", "exact", "off")

Grade = Callable[[str, int], float]  # (answer text, prompt row) -> quality of that answer for that prompt


@dataclass(frozen=True, eq=False)
class CacheHits:
    """Per prompt of the stream: ``source[i]`` = row of the earlier request whose answer is served
    (-1 on a miss) and ``kind[i]`` = ``"exact"``, ``"semantic"`` or ``""``; ``served[i, m]`` =
    quality of model m's answer to ``source[i]`` served to request i (NaN on misses).
    ``models`` names the columns of ``served``."""

    mode: str
    source: np.ndarray
    kind: np.ndarray
    served: np.ndarray
    models: tuple[str, ...]
    guard_rejections: int = 0
    agreement: float | None = None  # share of hits whose gold answer equals their source's (None: no gold)

    @property
    def n(self) -> int:
        return len(self.source)

    @property
    def hit_rate(self) -> float:
        return float(np.mean(self.source >= 0)) if self.n else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "n": self.n,
            "exact_hits": int(np.sum(self.kind == "exact")),
            "semantic_hits": int(np.sum(self.kind == "semantic")),
            "hit_rate": self.hit_rate,
            "guard_rejections": self.guard_rejections,
            "gold_agreement_on_hits": self.agreement,
        }


def request_texts(table: RoutingTable) -> list[str]:
    """The request text of each prompt: ``prefix`` + prompt, inside ``template`` when those columns exist."""

    if not table.has_prompt_text:
        raise ConfigError(
            "the cache replay needs the prompt texts", key="--cache", fix="add a prompts file with the prompt text, or use --cache off"
        )
    pre, tpl = table.prompt_meta.get("prefix"), table.prompt_meta.get("template")
    return [render_prompt(t or "", pre[i] if pre else None, tpl[i] if tpl else None) for i, t in enumerate(table.prompts)]


def stream_hits(texts: Sequence[str], mode: str = "semantic", matcher: Any = None) -> tuple[np.ndarray, np.ndarray, int]:
    """``(source, kind, guard_rejections)`` of the request stream ``texts`` (see the module docstring).

    ``matcher`` is a :class:`~thrifty.serving.cache.semantic.SemanticMatcher` (the calibrated default when
    None and ``mode == "semantic"``); guard rejections count candidates above the threshold that
    the lexical guard refused.
    """
    if mode not in CACHE_MODES:
        raise ConfigError(f"unknown cache mode {mode!r}", key="--cache", fix=f"use one of: {', '.join(CACHE_MODES)}")
    n = len(texts)
    source, kind = np.full(n, -1, dtype=int), np.full(n, "", dtype=object)
    if mode == "off":
        return source, kind, 0

    if mode == "semantic" and matcher is None:
        matcher = SemanticMatcher()
    semantic = matcher if mode == "semantic" else None
    eligible = [bool(semantic and semantic.eligible(t)) for t in texts]
    vecs = semantic.embed_many([t for t, ok in zip(texts, eligible) if ok]) if semantic and any(eligible) else None
    vec_of = {i: vecs[k] for k, i in enumerate(i for i, ok in enumerate(eligible) if ok)} if vecs is not None else {}
    exact: dict[str, int] = {}
    cands: list[Any] = []
    rejected = 0
    for i, text in enumerate(texts):
        if text in exact:
            source[i], kind[i] = exact[text], "exact"
            continue
        if semantic is not None and eligible[i] and cands:
            hit = semantic.best(text, vec_of[i], cands)
            rejected += _guard_rejections(semantic, text, vec_of[i], cands, hit)
            if hit is not None:
                source[i], kind[i] = int(hit.key), "semantic"
                continue
        exact[text] = i
        if semantic is not None and eligible[i]:
            cands.append(Candidate(str(i), text, vec_of[i]))
    return source, kind, rejected


def _guard_rejections(matcher: Any, text: str, vector: np.ndarray, cands: list[Any], hit: Any) -> int:
    """Candidates more similar than the served one (or all above the threshold on a miss): refused by the guard."""

    sims = similarities(vector, np.stack([c.vector for c in cands]))
    floor = hit.similarity if hit is not None else matcher.threshold
    return int(np.sum(sims > floor)) if hit is not None else int(np.sum(sims >= floor))


def gold_grader(table: RoutingTable, gold: str = "gold", match: str = "choice", choices: Sequence[str] | None = None) -> Grade | None:
    """A grader of any answer for prompt row i against ``table.prompt_meta[gold][i]`` (None without that column)."""
    golds = table.prompt_meta.get(gold)
    if golds is None:
        return None

    grader = make_grader(match, choices=choices, golds=golds)
    return lambda answer, i: grader.grade(answer, golds[i], where=f"prompt {table.prompt_ids[i]!r}")[0]


def gold_agreement(table: RoutingTable, source: np.ndarray, gold: str = "gold") -> float | None:
    """Share of hits whose gold answer equals their source's gold answer (None without gold or hits)."""
    golds = table.prompt_meta.get(gold)
    rows = np.flatnonzero(source >= 0)
    if golds is None or not len(rows):
        return None

    return float(np.mean([normalise(golds[i]) == normalise(golds[source[i]]) for i in rows]))


def grade_hits(
    table: RoutingTable,
    source: np.ndarray,
    kind: np.ndarray,
    grade: Grade | None,
    mode: str = "semantic",
    guard_rejections: int = 0,
    gold: str = "gold",
) -> CacheHits:
    """The :class:`CacheHits` of ``table``: every model's answer to each hit's source, graded for the hit."""
    served = np.full((table.n_prompts, table.n_models), np.nan)
    for i in np.flatnonzero(source >= 0):
        j = int(source[i])
        for m in range(table.n_models):
            if np.isnan(table.quality[j, m]):
                continue
            if grade is not None and table.answers is not None:
                served[i, m] = grade(table.answer(j, m) or "", int(i))
            elif kind[i] == "exact":
                served[i, m] = table.quality[j, m]
            else:
                raise ConfigError(
                    "a semantic cache hit serves another prompt's answer, which needs a gold answer to grade",
                    key="--gold",
                    fix="give the gold column (--gold NAME) of a table with answer texts, or use --cache exact",
                )
    return CacheHits(mode, source, kind, served, table.models, guard_rejections, gold_agreement(table, source, gold))


def cached_points(hits: CacheHits, models: Sequence[str]) -> Callable[[list[Any]], list[Any]]:
    """A transform of pooled held-out points (:class:`~thrifty.offline.evaluate.PooledPoint`) of a
    policy over ``models`` (a subset of ``hits.models``): on a hit whose source was answered, cost 0,
    no model called, and the quality of the source's returned answer served to this request."""
    cols = [hits.models.index(m) for m in models]
    served = hits.served[:, cols]
    hit_rows = np.flatnonzero(hits.source >= 0)

    def apply(points: list[Any]) -> list[Any]:
        out = []
        for p in points:
            if p.chosen is None:
                raise ValueError("the cache replay needs the returned model per prompt (PooledPoint.chosen)")
            src = hits.source[hit_rows]
            answered = p.chosen[src] >= 0
            rows, src = hit_rows[answered], src[answered]
            cost, quality, calls, chosen = p.cost.copy(), p.quality.copy(), p.calls.copy(), p.chosen.copy()
            cost[rows] = 0.0
            quality[rows] = served[rows, p.chosen[src]]
            calls[rows] = 0
            chosen[rows] = p.chosen[src]
            out.append(replace(p, cost=cost, quality=quality, calls=calls, chosen=chosen))
        return out

    return apply
