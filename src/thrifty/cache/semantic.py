"""Semantic matching for the completion cache: nearest neighbour over local MiniLM embeddings.

A cached answer is served for a *different* request only if all of these hold:

1. both requests have the same ``context`` key — same namespace (profile), model, sampling
   parameters, tools, and identical messages before the last user turn (see :mod:`.keys`);
2. the last user turn is plain text of at most ``max_chars`` characters (MiniLM reads at most 256
   word pieces; a longer text could differ after the cut and still embed identically);
3. the cosine similarity of the two turns' embeddings is ``>= threshold``;
4. with ``guard`` on, the two turns agree on numbers, negations, units and named entities
   (:func:`~thrifty.cache.guard.lexical_mismatch`).

DEFAULT_THRESHOLD
    0.93 — calibrated by ``benchmarks/semantic_cache.py`` on 805 AlpacaEval prompts (two halves by
    prompt id; half A to choose, half B to report). Every prompt of a half is cached; rule-based
    paraphrases (politeness prefixes, synonyms, casing/punctuation, sentence reordering) must find
    their source, near-misses (another number, entity, negation, unit, instruction verb or an
    antonym) must find nothing. The threshold is the smallest one whose false-hit rate on half A is
    at most 1% *with the guard on*; see ``benchmarks/semantic_cache.py --json`` for the held-out
    precision / recall / false-hit rate, and the README for the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import re

import numpy as np

from thrifty.cache.guard import lexical_mismatch
from thrifty.cache.store import Candidate

__all__ = ["DEFAULT_THRESHOLD", "SemanticMatch", "SemanticMatcher", "embedding_text"]

_SPACE = re.compile(r"\s+")

DEFAULT_THRESHOLD = 0.93


def embedding_text(query: str) -> str:
    """What is embedded: whitespace collapsed, trailing punctuation dropped (MiniLM is uncased, but a
    final "?" alone moves a short question's embedding by ~0.1 cosine)."""
    return _SPACE.sub(" ", query).strip().rstrip(".?!;:, ").strip()


@dataclass(frozen=True)
class SemanticMatch:
    key: str
    similarity: float
    query: str


@dataclass
class SemanticMatcher:
    """Embeds queries and finds the best admissible cached neighbour (see the module docstring)."""

    threshold: float = DEFAULT_THRESHOLD
    guard: bool = True
    max_chars: int = 1000
    embedder: Any = None  # an Embedder; None: MiniLM (loaded on first use, vectors not persisted)
    _embedder: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not -1.0 <= float(self.threshold) <= 1.0:
            from thrifty.errors import ConfigError

            raise ConfigError(f"threshold must be a cosine in [-1, 1], got {self.threshold!r}", key="cache.semantic_threshold", fix=f"use the calibrated default {DEFAULT_THRESHOLD}")

    def eligible(self, query: str | None) -> bool:
        return bool(query) and len(query) <= self.max_chars  # type: ignore[arg-type]

    def embed(self, query: str) -> np.ndarray:
        if self._embedder is None:
            if self.embedder is not None:
                self._embedder = self.embedder
            else:
                from thrifty.scoring.embedding import get_embedder

                self._embedder = get_embedder().inner
        return np.asarray(self._embedder.embed([embedding_text(query)])[0], dtype=np.float32)

    def best(self, query: str, vector: np.ndarray, candidates: Sequence[Candidate]) -> SemanticMatch | None:
        """The most similar candidate with cosine >= threshold that passes the guard, or None.

        Candidates are tried in decreasing similarity, so a guard rejection of the nearest one can
        still let an admissible second-nearest through.
        """
        if not candidates:
            return None
        mat = np.stack([c.vector for c in candidates]).astype(np.float32)
        sims = mat @ vector.astype(np.float32)
        for i in np.argsort(-sims):
            sim = float(sims[i])
            if sim < self.threshold:
                return None
            cand = candidates[int(i)]
            if self.guard and lexical_mismatch(query, cand.query) is not None:
                continue
            return SemanticMatch(cand.key, sim, cand.query)
        return None
