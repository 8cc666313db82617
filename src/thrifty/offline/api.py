"""The contract between offline policies and the evaluation harness.

An :class:`OfflinePolicy` is fitted on a training table and returns a :class:`FittedPolicy`, which
replays itself over a (held-out) table and returns one :class:`OperatingPoint` per setting of its
knob (budget, threshold, λ, share of strong calls …). The harness pools the points of all folds
that share a ``knob`` value into one held-out point over every prompt, so a policy must use the
same knob values on every fold — normally the ``knobs`` grid the harness passes to ``fit``
(target mean cost per query, USD).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from thrifty.data.table import RoutingTable
from thrifty.errors import ProviderError
from thrifty.types import Completion, Usage

__all__ = ["OperatingPoint", "FittedPolicy", "OfflinePolicy", "recorded_completion"]


@dataclass(eq=False)
class OperatingPoint:
    """One setting of a policy replayed on ``n`` prompts (per-prompt arrays, in table row order).

    ``cost[i]``: USD paid on prompt i — the sum over *every* model called there (a cascade pays for
    rejected answers too). ``quality[i]``: quality of the answer returned. ``calls[i, m]``: model m
    was called on prompt i. ``chosen[i]``: index of the model whose answer was returned.
    ``target_budget``: the mean cost per query this point was fitted for (None if not budgeted).
    """

    knob: float
    cost: np.ndarray
    quality: np.ndarray
    calls: np.ndarray
    chosen: np.ndarray
    target_budget: float | None = None
    label: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_cost(self) -> float:
        return float(np.mean(self.cost))

    @property
    def mean_quality(self) -> float:
        return float(np.mean(self.quality))


@runtime_checkable
class FittedPolicy(Protocol):
    def replay(self, table: RoutingTable) -> list[OperatingPoint]:
        """Operating points of this fitted policy on ``table`` (same models, any prompts)."""
        ...


@runtime_checkable
class OfflinePolicy(Protocol):
    name: str

    def fit(self, train: RoutingTable, knobs: Sequence[float] | np.ndarray) -> FittedPolicy:
        """Fit on ``train``; ``knobs`` is the harness's grid of target mean costs (USD/query)."""
        ...


def recorded_completion(table: RoutingTable, i: int, m: int) -> Completion:
    """Model m's recorded answer to prompt i, as the live provider would have returned it.

    A missing (prompt, model) pair raises :class:`ProviderError` — in replay, as live, the policy
    sees a failed tier and moves on.
    """
    if np.isnan(table.quality[i, m]):
        raise ProviderError(f"no recorded answer for prompt {table.prompt_ids[i]}", provider=table.models[m], status=404)
    tin = table.input_tokens[i, m] if table.input_tokens is not None else np.nan
    tout = table.output_tokens[i, m] if table.output_tokens is not None else np.nan
    usage = Usage(int(0 if np.isnan(tin) else tin), int(0 if np.isnan(tout) else tout))
    return Completion(text=table.answer(i, m) or "", model=table.models[m], usage=usage, cost_usd=float(table.cost[i, m]))
