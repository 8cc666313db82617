"""The answer scorer: P-calibrated expected quality of one model's answer to one request.

``AnswerScorer.score(request, completion, model)`` embeds the request text and the answer with the
cached MiniLM embedder (:func:`thrifty.scoring.embedding.get_embedder`), computes the cheap features
of :mod:`thrifty.scoring.features` plus the query–answer cosine, and applies that model's head
(:mod:`thrifty.scoring.heads`). ``inputs="query"`` is the query-only fallback for tables without
answer text (e.g. MMLU-style correctness data): the head then sees only the query, so the score
is the model's expected quality on that query. ``embed`` chooses the embedding blocks: ``"full"``
(query and answer), ``"query"`` (query only; answer features still used) or ``"none"``.

Offline, :func:`score_inputs` computes the very same design matrices for a whole routing table at
once (one embedding per distinct text, from the on-disk cache), so replayed scores are exactly the
scores the live gateway computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from thrifty.errors import ConfigError
from thrifty.scoring.agreement import agreement_features
from thrifty.scoring.feature_store import active_store
from thrifty.scoring.features import FEATURE_NAMES, QueryPart, answer_features, feature_matrix, query_part, with_cosine
from thrifty.scoring.good_length import fit_good_length
from thrifty.scoring.heads import DEFAULT_CONFIGS, Head, HeadConfig, SharedHead, design_matrix, fit_head, fit_shared
from thrifty.scoring.memo import LRUMemo
from thrifty.types import ChatRequest, Completion

__all__ = ["AnswerScorer", "QueryMemory", "TableInputs", "table_inputs", "fit_answer_scorer", "embed_mode"]

EMB_DIM = 384
_FEATURES: LRUMemo[tuple[str, str | None], np.ndarray] = LRUMemo(name="answer-features")  # (query, answer) → feature row; pure


def _features(queries: Sequence[str], answers: Sequence[str | None], parts: dict[str, QueryPart] | None = None) -> np.ndarray:
    """:func:`feature_matrix` with an in-process memo (folds of one table share their rows: inside a
    :func:`~thrifty.scoring.feature_store.table_feature_scope` all of them, else as many as the
    bounded memo holds); ``parts``: the queries' :func:`query_part`, shared by a table's models."""
    store = active_store()
    if store is not None:
        return store.rows(queries, answers)
    parts = {} if parts is None else parts
    rows = []
    for q, a in zip(queries, answers):
        key = (q, a)
        row = _FEATURES.get(key)
        if row is None:
            part = parts.get(q)
            if part is None:
                part = parts[q] = query_part(q)
            row = _FEATURES.put(key, answer_features(q, a, part))
        rows.append(row)
    return np.stack(rows) if rows else feature_matrix([], [])


@dataclass
class TableInputs:
    """Design matrices of a table for some models: ``X[j]`` is (P, D) for model ``models[j]``."""

    models: tuple[str, ...]
    X: list[np.ndarray]
    n_features: int
    emb_dims: tuple[int, ...]


def _embedder(embedder):
    if embedder is not None:
        return embedder
    from thrifty.scoring.embedding import get_embedder

    return get_embedder()


def embed_mode(embed: bool | str) -> str:
    """Normalise an ``embed`` option: True → "full", False → "none"."""
    if isinstance(embed, bool):
        return "full" if embed else "none"
    e = str(embed).lower()
    e = {"true": "full", "1": "full", "yes": "full", "false": "none", "0": "none", "no": "none"}.get(e, e)
    if e not in ("full", "query", "none"):
        raise ValueError(f"embed must be full, query or none, not {embed!r}")
    return e


def table_inputs(
    table, models: Sequence[str], *, inputs: str = "answer", embed: bool | str = "full", embedder=None, agreement_with: str | None = None
) -> TableInputs:
    """Design matrices for ``models`` over every prompt of ``table`` (missing answers → empty text).

    ``agreement_with`` (a model of ``models``): every other model's rows also get the agreement of its
    answer with that model's answer (:mod:`thrifty.scoring.agreement`; zeros in that model's own rows)."""
    if agreement_with is not None and not (inputs == "answer" and table.has_answers):
        raise ConfigError(
            "the agreement feature compares answers, and this table has no answer text",
            key="agreement",
            fix="drop --opt agreement=true, or use a table whose outcomes carry the answers",
        )
    if inputs == "answer" and not table.has_answers:
        inputs = "query"
    embed = embed_mode(embed)
    prompts = [p or "" for p in table.prompts]
    emb = _embedder(embedder) if embed != "none" else None
    q_emb = emb.embed(prompts) if emb is not None else None
    Xs = []
    parts: dict[str, QueryPart] = {}
    full = emb is not None and embed == "full" and inputs == "answer"
    anchor: list[str | None] = []
    anchor_emb = None
    if agreement_with is not None:
        ja = table.model_index(agreement_with)
        anchor = [table.answers[p, ja] or "" for p in range(table.n_prompts)]
        anchor_emb = emb.embed(anchor) if (full and emb is not None) else None
    n_agree = 0
    for name in models:
        j = table.model_index(name)
        answers = [table.answers[p, j] or "" for p in range(table.n_prompts)] if inputs == "answer" else [None] * table.n_prompts
        feats = _features(prompts, answers, parts)
        a_emb = emb.embed(answers) if (full and emb is not None) else None
        feats = with_cosine(feats, q_emb, a_emb)
        if agreement_with is not None:
            agree = agreement_features(answers, anchor, a_emb, anchor_emb)
            feats = np.hstack([feats, np.zeros_like(agree) if name == agreement_with else agree])
            n_agree = agree.shape[1]
        Xs.append(design_matrix(feats, q_emb, a_emb))
    dims = ((EMB_DIM,) if emb is not None else ()) + ((EMB_DIM,) if embed == "full" and inputs == "answer" else ())
    return TableInputs(tuple(models), Xs, len(FEATURE_NAMES) + 1 + n_agree, dims)


@dataclass
class QueryMemory:
    """The training prompts' embeddings and every model's quality on them.

    ``estimate(q, model)`` is the k-NN estimate of that model's quality on queries ``q``: the mean of
    its quality over the k most similar training prompts, weighted by cosine similarity (clipped at
    0). It becomes one more cheap feature (the router's signal inside the answer scorer). On the
    training prompts themselves each prompt is left out of its own neighbourhood.
    """

    emb: np.ndarray  # (N, d), L2-normalised
    quality: dict[str, np.ndarray]  # model → (N,), NaN where missing
    k: int = 50

    def estimate(self, q: np.ndarray, model: str, leave_self_out: bool = False) -> np.ndarray:
        sims = np.asarray(q, np.float64) @ self.emb.T.astype(np.float64)
        if leave_self_out:
            np.fill_diagonal(sims, -np.inf)
        qual = self.quality[model]
        sims = np.where(np.isnan(qual)[None, :], -np.inf, sims)
        k = max(1, min(self.k, sims.shape[1] - (1 if leave_self_out else 0)))
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        s = np.take_along_axis(sims, idx, 1)
        w = np.where(np.isfinite(s), np.clip(s, 0.0, None) + 1e-3, 0.0)
        vals = np.nan_to_num(qual[idx])
        return (w * vals).sum(1) / np.maximum(w.sum(1), 1e-12)


def _insert(X: np.ndarray, at: int, col: np.ndarray) -> np.ndarray:
    return np.hstack([X[:, :at], col[:, None], X[:, at:]])


class AnswerScorer:
    """Per-model heads behind the :class:`thrifty.types.Scorer` protocol.

    With a ``memory`` (:class:`QueryMemory`) each design row gets that model's k-NN quality estimate
    for the query as an extra cheap feature (inserted after the ``n_features`` cheap features).
    """

    def __init__(
        self,
        heads: Mapping[str, Head | SharedHead],
        *,
        inputs: str = "answer",
        embed: bool | str = "full",
        embedder=None,
        memory: QueryMemory | None = None,
        n_features: int = len(FEATURE_NAMES) + 1,
        emb_in_heads: bool = True,
        good_length: Any = None,
    ) -> None:
        if inputs not in ("answer", "query"):
            raise ValueError("inputs must be 'answer' or 'query'")
        self.heads = dict(heads)
        self.inputs = inputs
        self.embed = embed_mode(embed)
        self._embedder = embedder
        self.memory = memory
        self.n_features = n_features
        self.emb_in_heads = emb_in_heads
        self.good_length = good_length  # GoodLength: two more cheap features (scoring.good_length)

    def augment(self, X: np.ndarray, model: str) -> np.ndarray:
        """The design rows as the heads see them: k-NN feature inserted (with a memory), embedding
        columns dropped (``emb_in_heads=False``: embeddings then only feed the k-NN feature)."""
        nf = self.n_features
        if self.memory is not None:
            X = _insert(X, nf, self.memory.estimate(X[:, nf : nf + EMB_DIM], model))
            nf += 1
        if getattr(self, "good_length", None) is not None:  # getattr: scorers pickled before the option
            X = np.hstack([X[:, :nf], self.good_length.features(X), X[:, nf:]])
            nf += 2
        return X if self.emb_in_heads else X[:, :nf]

    def __repr__(self) -> str:
        return f"AnswerScorer(models={list(self.heads)}, inputs={self.inputs!r}, embed={self.embed})"

    def row(self, prompt: str, answer: str | None) -> np.ndarray:
        """The design row of one (prompt, answer) — identical to a row of :func:`table_inputs`."""
        answer = (answer or "") if self.inputs == "answer" else None
        feats = answer_features(prompt, answer)[None, :]
        q_emb = a_emb = None
        if self.embed != "none":
            emb = _embedder(self._embedder)
            if self.inputs == "answer" and self.embed == "full":
                vecs = emb.embed([prompt, answer])
                q_emb, a_emb = vecs[:1], vecs[1:]
            else:
                q_emb = emb.embed([prompt])
        return design_matrix(with_cosine(feats, q_emb, a_emb), q_emb, a_emb)

    def score(self, request: ChatRequest, completion: Completion | None, model: str) -> float:
        head = self.heads.get(model)
        if head is None:
            raise ConfigError(
                f"the scorer has no head for model {model!r}", key="model", fix=f"fit it with that model; known: {', '.join(self.heads)}"
            )
        if getattr(self, "agreement_with", None):  # its rows need the earlier tier's answer, which score() never sees
            raise ConfigError(
                "an answer scorer fitted with the agreement feature scores offline tables only",
                key="agreement",
                fix="fit the served cascade without --opt agreement=true",
            )
        text = completion.text if completion is not None else None
        return float(head.predict(self.augment(self.row(request.prompt_text, text), model))[0])

    def score_table(self, inputs: TableInputs) -> np.ndarray:
        """(P, K) scores of the table rows, one column per model of ``inputs``."""
        return np.stack([self.heads[m].predict(self.augment(X, m)) for m, X in zip(inputs.models, inputs.X)], axis=1)


def fit_answer_scorer(
    table,
    inputs: TableInputs,
    configs: Sequence[HeadConfig] = DEFAULT_CONFIGS,
    *,
    k: int = 4,
    seed: int = 0,
    mode: str = "answer",
    embed: bool | str = "full",
    shared: bool = True,
    knn: int = 0,
    emb_in_heads: bool = True,
    good_length: bool = False,
) -> tuple[AnswerScorer, np.ndarray]:
    """Fit one head per model of ``inputs`` on the table's available rows.

    With ``shared`` a head pooled over all the models' rows (:func:`heads.fit_shared`) is fitted
    too, and each model keeps whichever of its own head and its view of the shared head has the
    lower inner-CV error. Returns the scorer and the (P, K) calibrated out-of-fold scores (NaN where
    the pair is missing). ``knn > 0`` (needs query embeddings) adds the k-NN quality feature of
    :class:`QueryMemory`, leave-self-out on the training prompts.
    """
    P = table.n_prompts
    memory = None
    nf = inputs.n_features
    if knn > 0 and inputs.emb_dims:
        q = inputs.X[0][:, nf : nf + EMB_DIM]
        memory = QueryMemory(q.astype(np.float32), {m: table.quality[:, table.model_index(m)].copy() for m in inputs.models}, knn)
        inputs = TableInputs(
            inputs.models,
            [_insert(X, nf, memory.estimate(q, m, leave_self_out=True)) for m, X in zip(inputs.models, inputs.X)],
            nf + 1,
            inputs.emb_dims,
        )
    gl = None
    if good_length:  # length against the expected good-answer length, out-of-fold on these prompts
        cols = [table.model_index(m) for m in inputs.models]
        gl, pred = fit_good_length(inputs.X, table.quality[:, cols], seed=seed)
        f = inputs.n_features
        inputs = TableInputs(
            inputs.models, [np.hstack([X[:, :f], gl.features(X, pred), X[:, f:]]) for X in inputs.X], f + 2, inputs.emb_dims
        )
    if not emb_in_heads:
        inputs = TableInputs(inputs.models, [X[:, : inputs.n_features] for X in inputs.X], inputs.n_features, ())
    heads: dict[str, Head | SharedHead] = {}
    oof = np.full((P, len(inputs.models)), np.nan)
    oks, ys = [], []
    for c, (name, X) in enumerate(zip(inputs.models, inputs.X)):
        j = table.model_index(name)
        ok = ~np.isnan(table.quality[:, j])
        head, cal = fit_head(X[ok], table.quality[ok, j], inputs.n_features, inputs.emb_dims, configs, k=k, seed=seed)
        heads[name] = head
        oof[ok, c] = cal
        oks.append(ok)
        ys.append(table.quality[ok, j])
    if shared and len(inputs.models) > 1:
        sh, sh_oof = fit_shared(
            [X[ok] for X, ok in zip(inputs.X, oks)],
            ys,
            [np.flatnonzero(ok) for ok in oks],
            inputs.n_features,
            inputs.emb_dims,
            configs,
            k=k,
            seed=seed,
        )
        for c, name in enumerate(inputs.models):
            if sh[c].cv_mse < heads[name].cv_mse:
                heads[name] = sh[c]
                oof[oks[c], c] = sh_oof[c]
    return AnswerScorer(heads, inputs=mode, embed=embed, memory=memory, n_features=nf, emb_in_heads=emb_in_heads, good_length=gl), oof
