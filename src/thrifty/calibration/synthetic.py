"""A synthetic binary-correctness routing table whose quality structure is known and stated.

Used by ``benchmarks/live_loop.py`` and the tests of the learning loop, where thousands of prompts
with a controlled amount of learnable signal are needed (no benchmark has them with local answers).

The generative model (every number is an argument):

- each prompt has a latent difficulty ``d ~ N(0, 1)``;
- model ``m`` (skill ``s_m``) answers correctly with probability ``sigmoid(slope · (s_m − d))``;
  quality is 1 (correct) or 0;
- the **prompt text** carries ``query_signal`` of the difficulty: its word count is
  ``round(12 + 5·z)`` (at least 3) with ``z = ρ·d + sqrt(1 − ρ²)·ε``, ``ρ = query_signal``, so the
  length features correlate with the difficulty at about ρ;
- the **answer text** carries the correctness: a wrong answer hedges (contains "I'm not sure" or
  "I cannot be certain", phrases the answer features look for) with probability ``hedge_wrong``, a
  right one with probability ``hedge_right``; everything else in the answer is noise;
- cost: ``price_m`` USD per 1M tokens × (prompt tokens + 40 answer tokens), prompt tokens ≈ 1.3 × words.

With the defaults (3 models, skills −0.6 / 0.4 / 1.6, slope 1.7, ρ = 0.5, hedging 0.6 vs 0.05) the
three single models are right about 38% / 58% / 83% of the time.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from thrifty.data.table import RoutingTable

__all__ = ["binary_table", "DEFAULT_MODELS"]

#: (name, skill, USD per 1M tokens)
DEFAULT_MODELS: tuple[tuple[str, float, float], ...] = (("small", -0.6, 0.2), ("medium", 0.4, 1.0), ("large", 1.6, 6.0))

_WORDS = (
    "river",
    "market",
    "engine",
    "signal",
    "garden",
    "planet",
    "ledger",
    "theory",
    "winter",
    "number",
    "window",
    "lemon",
    "circuit",
    "harbor",
    "silver",
    "protein",
    "canvas",
    "orbit",
    "valley",
    "thread",
    "credit",
    "pillow",
)


def binary_table(
    n_prompts: int = 5000,
    seed: int = 0,
    *,
    models: Sequence[tuple[str, float, float]] = DEFAULT_MODELS,
    slope: float = 1.7,
    query_signal: float = 0.5,
    hedge_wrong: float = 0.6,
    hedge_right: float = 0.05,
    n_folds: int = 5,
) -> RoutingTable:
    """The table described in the module docstring (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    d = rng.standard_normal(n_prompts)
    z = query_signal * d + np.sqrt(max(0.0, 1 - query_signal**2)) * rng.standard_normal(n_prompts)
    n_words = np.maximum(3, np.round(12 + 5 * z)).astype(int)
    prompts = tuple("Question: " + " ".join(rng.choice(_WORDS, size=k)) + "?" for k in n_words)
    M = len(models)
    quality = np.zeros((n_prompts, M))
    cost = np.zeros((n_prompts, M))
    answers = np.empty((n_prompts, M), dtype=object)
    in_tok = np.round(1.3 * (n_words + 1))
    for j, (_, skill, price) in enumerate(models):
        p = 1.0 / (1.0 + np.exp(-slope * (skill - d)))
        right = rng.random(n_prompts) < p
        hedge = rng.random(n_prompts) < np.where(right, hedge_right, hedge_wrong)
        quality[:, j] = right
        cost[:, j] = price * (in_tok + 40) / 1e6
        filler = rng.integers(0, len(_WORDS), size=(n_prompts, 3))
        for i in range(n_prompts):
            body = "The answer is " + " ".join(_WORDS[k] for k in filler[i]) + "."
            answers[i, j] = ("I'm not sure, but " if rng.random() < 0.5 else "I cannot be certain. ") + body if hedge[i] else body
    perm = np.random.default_rng(seed + 1).permutation(n_prompts)
    folds = tuple(np.sort(perm[k::n_folds]) for k in range(n_folds))
    return RoutingTable(
        tuple(str(i) for i in range(n_prompts)),
        prompts,
        tuple(m[0] for m in models),
        quality,
        cost,
        answers=answers,
        input_tokens=np.repeat(in_tok[:, None], M, 1),
        output_tokens=np.full((n_prompts, M), 40.0),
        prices={m[0]: (m[2], m[2]) for m in models},
        folds=folds,
        source=f"synthetic-binary(n={n_prompts}, seed={seed})",
    )
