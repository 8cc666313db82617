"""A topic-structured routing table (which model is good depends on the query's words) and a
dependency-free hashing embedder, for the router / hybrid artefact tests (unit and e2e)."""

from __future__ import annotations

import zlib

import numpy as np

from thrifty.data.table import RoutingTable

TOPICS = {
    "chat": "hello friend weather weekend coffee movie",
    "poem": "poem rhyme verse sonnet haiku stanza",
    "math": "integral matrix prime proof equation derivative",
}
FILLER = "please quickly explain describe write about the a some".split()


class HashEmbedder:
    """Bag of words hashed (crc32) into 64 dims, L2-normalised — deterministic across processes."""

    dim = 64

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in (t or "").lower().split():
                out[i, zlib.crc32(w.strip("?.!,").encode()) % self.dim] += 1.0
        n = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(n > 0, n, 1.0)


def topic_table(n: int = 90, seed: int = 3) -> RoutingTable:
    """Three models, cheap→dear: ``small`` is good on chat, ``mid`` on chat and poems, ``big`` on
    everything (with 10% noise). Answers: good ones are long and structured, bad ones refusals."""
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    prompts, quality, answers = [], np.zeros((n, 3)), np.empty((n, 3), dtype=object)
    for i in range(n):
        topic = names[i % 3]
        words = list(rng.choice(TOPICS[topic].split(), 3)) + list(rng.choice(FILLER, 2))
        rng.shuffle(words)
        prompts.append(f"Q{i}: " + " ".join(words) + "?")
        good = np.array([topic == "chat", topic in ("chat", "poem"), True]) ^ (rng.random(3) < 0.1)
        quality[i] = np.where(good, 0.9, 0.1) + rng.normal(0, 0.03, 3)
        for j, g in enumerate(good):
            answers[i, j] = (
                "Here is a careful answer:\n" + "\n".join(f"- {' '.join(rng.choice(FILLER, 6))}" for _ in range(4))
                if g
                else "Sorry, I can't help with that."
            )
    cost = np.tile([1e-4, 1e-3, 1e-2], (n, 1)) * rng.uniform(0.9, 1.1, size=(n, 3))
    return RoutingTable(
        prompt_ids=tuple(f"p{i}" for i in range(n)),
        prompts=tuple(prompts),
        models=("small", "mid", "big"),
        quality=np.clip(quality, 0, 1),
        cost=cost,
        answers=answers,
    )
