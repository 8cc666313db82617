"""Synthetic routing tables and a deterministic fake embedder for the cascade tests."""

from __future__ import annotations

import hashlib

import numpy as np

from thrifty.table import RoutingTable

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()


class FakeEmbedder:
    """Unit vectors from a hash of the text (same text → same vector), 384-dim like MiniLM."""

    name = "fake"
    dim = 384

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        out = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256((t or "").encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim)


def synthetic_table(n: int = 120, seed: int = 0, binary: bool = False, with_answers: bool = True) -> RoutingTable:
    """Three models, cheap→expensive. The cheap model's quality is high exactly when its answer is
    long and not a refusal — a signal the answer features can see; the big model is always good."""
    rng = np.random.default_rng(seed)
    prompts = [" ".join(rng.choice(WORDS, size=rng.integers(3, 9))) + "?" for _ in range(n)]
    good_small = rng.random(n) < 0.5
    good_mid = rng.random(n) < 0.6
    answers = np.empty((n, 3), dtype=object)
    quality = np.zeros((n, 3))
    for i in range(n):
        if good_small[i]:
            answers[i, 0] = "Here is a detailed answer.\n" + "\n".join(f"- point {k}: " + " ".join(rng.choice(WORDS, 8)) for k in range(6))
        else:
            answers[i, 0] = "I'm sorry, I cannot help with that."
        answers[i, 1] = ("Sure. " + " ".join(rng.choice(WORDS, 30))) if good_mid[i] else "Unfortunately I can't."
        answers[i, 2] = "A thorough, structured answer:\n" + "\n".join(f"1. " + " ".join(rng.choice(WORDS, 10)) for _ in range(5))
        if binary:
            quality[i] = [float(good_small[i]), float(good_mid[i]), 1.0]
        else:
            quality[i] = [
                np.clip((0.8 if good_small[i] else 0.1) + rng.normal(0, 0.05), 0, 1),
                np.clip((0.7 if good_mid[i] else 0.2) + rng.normal(0, 0.05), 0, 1),
                0.9,
            ]
    cost = np.tile([1e-5, 1e-4, 1e-3], (n, 1)) * rng.uniform(0.8, 1.2, size=(n, 3))
    return RoutingTable(
        prompt_ids=tuple(str(i) for i in range(n)),
        prompts=tuple(prompts),
        models=("small", "mid", "big"),
        quality=quality,
        cost=cost,
        answers=answers if with_answers else None,
    )
