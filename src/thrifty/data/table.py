"""The routing table: prompts × models → quality, answer, tokens, cost.

A core data type used by offline replay, fitting, evaluation and log export alike. Loading and
validation of files lives in :mod:`thrifty.data.table_io`; this module is pure in-memory logic.

Conventions
-----------
- ``quality[p, m]`` is in [0, 1]; ``NaN`` marks a missing (prompt, model) pair, meaning *model m is
  not routable on prompt p*. ``cost[p, m]`` is USD for that one call, ``NaN`` where missing.
- Prompt ids are strings (integer ids in files are converted), kept in file order.
- ``folds`` (optional) are arrays of prompt indices; fold k is the test set of split k.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Iterator, Sequence

import numpy as np

from thrifty.errors import ConfigError, DataError

__all__ = ["RoutingTable", "ModelStats"]


@dataclass(frozen=True)
class ModelStats:
    """Mean quality and mean cost of always calling one model (over prompts where it is available)."""

    model: str
    n: int
    quality: float
    cost: float


@dataclass(frozen=True, eq=False)
class RoutingTable:
    prompt_ids: tuple[str, ...]
    prompts: tuple[str | None, ...]
    models: tuple[str, ...]
    quality: np.ndarray  # (P, M) float, NaN = missing pair
    cost: np.ndarray  # (P, M) float USD, NaN = missing pair
    answers: np.ndarray | None = None  # (P, M) object: str | None; None when the table has no answer text
    input_tokens: np.ndarray | None = None  # (P, M) float, NaN unknown
    output_tokens: np.ndarray | None = None  # (P, M) float, NaN unknown
    prices: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)  # USD per 1M in/out
    folds: tuple[np.ndarray, ...] | None = None
    prompt_meta: dict[str, tuple] = field(default_factory=dict)  # extra prompt columns (dataset, gold, …)
    source: str = "<memory>"
    data_hash: str = ""

    def __post_init__(self) -> None:
        p, m = len(self.prompt_ids), len(self.models)
        for name in ("quality", "cost"):
            arr = getattr(self, name)
            if arr.shape != (p, m):
                raise ValueError(f"{name} has shape {arr.shape}, expected {(p, m)}")
        if len(self.prompts) != p:
            raise ValueError("prompts and prompt_ids differ in length")

    # ---- shape -------------------------------------------------------------------------------
    @property
    def n_prompts(self) -> int:
        return len(self.prompt_ids)

    @property
    def n_models(self) -> int:
        return len(self.models)

    @property
    def available(self) -> np.ndarray:
        """(P, M) bool: the model has an outcome for the prompt (is routable there)."""
        return ~np.isnan(self.quality)

    @property
    def has_answers(self) -> bool:
        return self.answers is not None

    @property
    def has_prompt_text(self) -> bool:
        return any(t for t in self.prompts)

    def model_index(self, model: str) -> int:
        try:
            return self.models.index(model)
        except ValueError:
            raise ConfigError(
                f"unknown model {model!r}",
                key="model",
                fix=f"choose one of: {', '.join(self.models[:12])}{' …' if self.n_models > 12 else ''}",
            ) from None

    def answer(self, p: int, m: int) -> str | None:
        return None if self.answers is None else self.answers[p, m]

    # ---- statistics --------------------------------------------------------------------------
    def model_stats(self) -> list[ModelStats]:
        """Single-model baselines: mean quality and mean cost over each model's available prompts."""
        avail = self.available
        out = []
        for j, name in enumerate(self.models):
            mask = avail[:, j]
            n = int(mask.sum())
            q = float(self.quality[mask, j].mean()) if n else float("nan")
            c = float(self.cost[mask, j].mean()) if n else float("nan")
            out.append(ModelStats(name, n, q, c))
        return out

    def best_single(self) -> ModelStats:
        """The single model with the highest mean quality (ties: the cheaper one)."""
        stats = [s for s in self.model_stats() if s.n > 0]
        return max(stats, key=lambda s: (s.quality, -s.cost))

    def mean_cost_by_model(self) -> np.ndarray:
        return np.array([s.cost for s in self.model_stats()])

    # ---- slicing -----------------------------------------------------------------------------
    def select_models(self, models: Sequence[str] | None = None, exclude: str | None = None) -> "RoutingTable":
        """The pool: keep ``models`` (in the given order) or all, then drop names matching ``exclude``."""
        names = list(models) if models else list(self.models)
        for n in names:
            self.model_index(n)
        if exclude:
            try:
                rx = re.compile(exclude)
            except re.error as exc:
                raise ConfigError(f"invalid regular expression {exclude!r}: {exc}", key="--exclude") from None
            names = [n for n in names if not rx.search(n)]
        if not names:
            raise ConfigError("the model pool is empty", key="--models/--exclude", fix="select at least one model")
        idx = [self.models.index(n) for n in names]
        return replace(
            self,
            models=tuple(names),
            quality=self.quality[:, idx],
            cost=self.cost[:, idx],
            answers=None if self.answers is None else self.answers[:, idx],
            input_tokens=None if self.input_tokens is None else self.input_tokens[:, idx],
            output_tokens=None if self.output_tokens is None else self.output_tokens[:, idx],
            prices={n: self.prices.get(n, (None, None)) for n in names},
        )

    def take(self, rows: Sequence[int] | np.ndarray) -> "RoutingTable":
        """A table of the given prompt rows (folds are dropped: they index the parent)."""
        rows = np.asarray(rows, dtype=int)
        return replace(
            self,
            prompt_ids=tuple(self.prompt_ids[i] for i in rows),
            prompts=tuple(self.prompts[i] for i in rows),
            quality=self.quality[rows],
            cost=self.cost[rows],
            answers=None if self.answers is None else self.answers[rows],
            input_tokens=None if self.input_tokens is None else self.input_tokens[rows],
            output_tokens=None if self.output_tokens is None else self.output_tokens[rows],
            folds=None,
            prompt_meta={k: tuple(v[i] for i in rows) for k, v in self.prompt_meta.items()},
        )

    def fold_indices(self, n_folds: int = 5, seed: int = 0) -> list[np.ndarray]:
        """Test-fold prompt indices: the table's own folds when present, else a seeded k-fold split."""
        if self.folds is not None:
            return [np.asarray(f, dtype=int) for f in self.folds]
        if self.n_prompts < n_folds:
            raise DataError(f"{self.n_prompts} prompts cannot be split into {n_folds} folds", file=self.source)
        perm = np.random.default_rng(seed).permutation(self.n_prompts)
        return [np.sort(perm[k::n_folds]) for k in range(n_folds)]

    def splits(self, n_folds: int = 5, seed: int = 0) -> Iterator[tuple[int, "RoutingTable", "RoutingTable", np.ndarray]]:
        """Yield ``(k, train, test, test_rows)`` for each fold: fit on train, report on test."""
        folds = self.fold_indices(n_folds, seed)
        for k, test_rows in enumerate(folds):
            mask = np.ones(self.n_prompts, dtype=bool)
            mask[test_rows] = False
            yield k, self.take(np.flatnonzero(mask)), self.take(test_rows), test_rows
