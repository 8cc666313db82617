"""Synthetic routing tables and a deterministic fake embedder for the cascade tests."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np

from thrifty.data.table import RoutingTable
from thrifty.offline.optimise import CascadeSpec, replay_arrays

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
        answers[i, 2] = "A thorough, structured answer:\n" + "\n".join("1. " + " ".join(rng.choice(WORDS, 10)) for _ in range(5))
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


def tiny_table() -> RoutingTable:
    """Four prompts × three models (cost 1, 10, 100); model "m" has no answer on prompt 3."""
    q = np.array([[0.9, 0.5, 1.0], [0.1, 0.6, 1.0], [0.1, 0.2, 1.0], [0.3, np.nan, 0.8]])
    c = np.array([[1.0, 10.0, 100.0]] * 4)
    c[3, 1] = np.nan
    answers = np.array([["a", "b", "c"]] * 4, dtype=object)
    answers[3, 1] = None
    return RoutingTable(("0", "1", "2", "3"), ("p0", "p1", "p2", "p3"), ("s", "m", "b"), q, c, answers)


def brute_force(S, Q, C, max_tiers, selects=("last",)):
    """(cost, quality) of every order of ≤ max_tiers models × every threshold (distinct scores ± inf)
    × every answer-selection rule in ``selects``."""
    M = Q.shape[1]
    pts = []
    for L in range(1, max_tiers + 1):
        for order in itertools.permutations(range(M), L):
            grids = [np.concatenate([[-np.inf], np.unique(S[:, m]), [np.inf]]) for m in order[:-1]]
            for thr in itertools.product(*grids):
                for sel in selects:
                    c, q = replay_arrays(S, Q, C, CascadeSpec(order, tuple(thr), 0, 0, sel))
                    pts.append((c.mean(), q.mean()))
    return np.array(pts)
