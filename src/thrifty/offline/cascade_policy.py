"""Offline policy ``cascade``: fit answer scorers + optimised cascades on train, replay held-out.

``fit(train, knobs)``

1. candidate models from the training single-model stats (:func:`optimise.candidate_models`);
2. one answer-scoring head per candidate (:mod:`thrifty.scoring.heads`): head kind and strength are
   chosen by inner cross-validation *inside the training prompts*; the heads' calibrated
   out-of-fold scores are what the thresholds are fitted on;
3. the optimiser's hyperparameters (max tiers L ≤ ``max_tiers``, threshold-grid size, smoothing,
   significance gate z) are chosen by a second inner cross-validation over the training prompts:
   fronts fitted on inner-train rows, their budgeted picks scored on inner-test rows (mean held-out
   quality over the knob grid, minus a penalty for overspending the budget);
4. the final front on all training rows; each knob (target mean cost B) gets the front's best
   cascade with training cost ≤ B·(1 − ``budget_margin``) — unless its paired training gain over
   the best single model within B is under z standard errors (:func:`select_knobs`).

``replay(table)`` scores every (prompt, candidate) once with the fitted heads, then drives the one
:class:`thrifty.policy.cascade.CascadePolicy` per knob over the recorded answers with
:func:`thrifty.policy.drive.drive` — every tier called is paid, failures are skipped as live.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from thrifty.data.table import RoutingTable
from thrifty.errors import ConfigError
from thrifty.offline.api import OperatingPoint
from thrifty.offline.cascade_replay import LookupScorer, Replayed, knob_range, lookup_requests, replay_cascades, replay_policy, select_knobs
from thrifty.offline.optimise import CascadeSpec, Front, candidate_models, optimise, replay_arrays
from thrifty.scoring.answer_scorer import embed_mode, fit_answer_scorer, table_inputs
from thrifty.scoring.blend import fit_blend_scorer
from thrifty.scoring.finetuned import FineTuneConfig, fit_finetuned_scorer
from thrifty.scoring.heads import configs_for, inner_folds, single_threaded
from thrifty.serving.artefact import json_number, load_artefact

__all__ = [
    "CascadeOffline",
    "FittedCascade",
    "replay_cascades",
    "replay_policy",
    "lookup_requests",
    "Replayed",
    "LookupScorer",
    "select_knobs",
]


@dataclass
class FittedCascade:
    models: tuple[str, ...]  # candidate models (columns of the scorer)
    scorer: Any  # AnswerScorer
    front: Front
    picks: dict[float, CascadeSpec]
    inputs_kw: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    def cascades(self) -> dict[float, tuple[tuple[str, ...], tuple[float, ...], str]]:
        """knob → (tier model names, thresholds, select)."""
        return {k: (tuple(self.models[t] for t in s.tiers), s.thresholds, s.select) for k, s in self.picks.items()}

    def front_json(self) -> list[dict[str, Any]]:
        """The training front as an artefact's ``front`` list (``thrifty fit`` and the refit write it)."""
        return [
            {
                "tiers": [self.models[t] for t in s.tiers],
                "thresholds": [json_number(t) for t in s.thresholds],
                "select": s.select,
                "train_cost": s.cost,
                "train_quality": s.quality,
            }
            for s in self.front.points
        ]

    def score(self, table: RoutingTable) -> np.ndarray:
        if hasattr(self.scorer, "score_rows"):  # scorers that read the table themselves (fine-tuned)
            return self.scorer.score_rows(table, self.models)

        return self.scorer.score_table(table_inputs(table, self.models, **self.inputs_kw))

    def replay(self, table: RoutingTable) -> list[OperatingPoint]:

        with single_threaded():
            S = self.score(table)
        self.heldout_pred = (S, self.models)  # answer scores: the harness correlates them with the labels
        return replay_cascades(table, S, self.models, self.cascades(), {k: k for k in self.picks}, label="cascade")


class CascadeOffline:
    """The ``cascade`` policy. Options (``--opt key=value``):

    ``max_tiers`` (3: L is chosen in 1..max_tiers by nested CV), ``max_candidates`` (8; ``all`` =
    the whole pool), ``embed`` (``none``: cheap features only — measured best held-out on
    AlpacaEval; ``query``; ``full``), ``heads`` (``ridge``, ``gbm`` or ``ridge,gbm``, chosen per model
    by inner CV), ``shared`` (also fit a head pooled over all models; default true), ``knn`` (k of the
    k-NN quality feature, needs query embeddings; 50), ``emb_heads`` (feed embeddings to the heads;
    true), ``grids`` / ``smooths`` (threshold-grid sizes and smoothing radii tried by nested CV),
    ``inner_folds`` (4), ``select`` (``last``: the last tier called answers; ``best``: the optimiser
    may also return the best-scored answer among the tiers called; ``running``: may also stop on the
    best answer so far — see :class:`CascadePolicy` and :mod:`optimise`; a comma list: nested CV
    chooses),
    ``good_length`` (false: add the answer's log length against the predicted good-answer length,
    :mod:`thrifty.scoring.good_length`), ``agreement`` (false: later tiers' scorers also see how far
    their answer agrees with the first tier's, :mod:`thrifty.scoring.agreement`; multi-tier cascades
    then start at the cheapest candidate, whose answer the feature reads; offline only; needs answer
    text), ``start`` (``any``; ``cheapest``: every multi-tier cascade starts at the cheapest candidate,
    which ``agreement`` implies — alone, the control for what that constraint costs), ``budget_margin`` (0), ``gates`` (significance gates z tried by nested CV; 0,1), ``overspend_penalty`` (0.5: nested-CV penalty per unit
    of relative overspend), ``seed``, ``artefact`` (replay a ``thrifty fit`` artefact instead of fitting),
    ``scorer`` (``features``: the heads above; ``finetuned``: :mod:`thrifty.scoring.finetuned`, MiniLM
    fine-tuned on the CPU; ``blend``: :mod:`thrifty.scoring.blend`, the rank blend of the two; with ``ft_epochs`` (1), ``ft_max_length`` (128), ``ft_features`` (false),
    ``ft_inner_folds`` (2, for the out-of-fold threshold scores), ``ft_max_steps`` (cap, for smoke
    tests); slow: minutes per fit).
    """

    name = "cascade"

    def __init__(
        self,
        max_tiers: int | str = 3,
        max_candidates: int | str | None = 8,
        embed: bool | str = "none",
        inputs: str = "answer",
        grids: Sequence[int] | str = (16, 32),
        smooths: Sequence[int] | str = (0, 1),
        inner_folds: int | str = 4,
        budget_margin: float | str = 0.0,
        gates: Sequence[float] | str = (0.0, 1.0),
        overspend_penalty: float | str = 0.5,
        heads: str = "ridge",
        shared: bool | str = True,
        knn: int | str = 50,
        emb_heads: bool | str = True,
        seed: int | str = 0,
        artefact: str | None = None,
        variant: str | None = None,
        scorer: str = "features",
        select: Sequence[str] | str = "last",
        ft_epochs: float | str = 1.0,
        ft_max_length: int | str = 128,
        ft_features: bool | str = False,
        ft_inner_folds: int | str = 2,
        ft_max_steps: int | str | None = None,
        good_length: bool | str = False,
        agreement: bool | str = False,
        start: str = "any",
    ) -> None:
        if start not in ("any", "cheapest"):
            raise ConfigError(f"unknown start {start!r}", key="start", fix="use start=any or start=cheapest")
        self.start = start
        self.agreement = agreement if isinstance(agreement, bool) else str(agreement).lower() in ("1", "true", "yes")

        self.artefact = artefact
        self.head_configs = configs_for(str(heads).replace("+", ","))
        self.shared = shared if isinstance(shared, bool) else str(shared).lower() not in ("0", "false", "no")
        self.knn = int(knn)
        self.good_length = good_length if isinstance(good_length, bool) else str(good_length).lower() in ("1", "true", "yes")
        self.emb_heads = emb_heads if isinstance(emb_heads, bool) else str(emb_heads).lower() not in ("0", "false", "no")
        self.max_tiers = int(max_tiers)
        self.max_candidates = None if max_candidates in (None, "none", "all", 0, "0") else int(max_candidates)

        self.embed = embed_mode(embed)
        self.inputs = inputs
        self.grids = _ints(grids)
        self.smooths = _ints(smooths)
        self.inner_folds = int(inner_folds)
        self.budget_margin = float(budget_margin)
        self.gates = _floats(gates)
        self.overspend_penalty = float(overspend_penalty)
        self.seed = int(seed)
        if scorer not in ("features", "finetuned", "blend"):
            raise ValueError(f"scorer must be features, finetuned or blend, not {scorer!r}")
        self.scorer = scorer
        if self.agreement and scorer != "features":
            raise ConfigError(
                "the agreement feature is a feature of the feature scorer", key="agreement", fix="use scorer=features with agreement=true"
            )
        self.selects = tuple(x.strip() for x in (select.replace("/", ",").split(",") if isinstance(select, str) else select) if x.strip())
        if not self.selects or any(x not in ("last", "best", "running") for x in self.selects):
            raise ValueError(f"select must be last, best, running or a comma list (nested CV chooses), not {select!r}")
        self.ft: dict[str, Any] = {
            "epochs": float(ft_epochs),
            "max_length": int(ft_max_length),
            "features": ft_features if isinstance(ft_features, bool) else str(ft_features).lower() in ("1", "true", "yes"),
            "seed": self.seed,
            "max_steps": None if ft_max_steps in (None, "none", "") else int(ft_max_steps),
        }
        self.ft_inner_folds = int(ft_inner_folds)

    def _configs(self) -> list[tuple[int, int, int, str]]:
        """(L, grid, smooth, select) combinations the nested CV compares (select only matters for L > 1)."""
        return [
            (L, G, r, sel)
            for L, G, r in itertools.product(range(1, self.max_tiers + 1), self.grids, self.smooths)
            for sel in (self.selects if L > 1 else self.selects[:1])
        ]

    def fit(self, train: RoutingTable, knobs: Sequence[float] | np.ndarray) -> FittedCascade:

        if self.artefact:
            return from_artefact(self.artefact, knobs)
        with single_threaded():
            return self._fit(train, knobs)

    def candidates(self, train: RoutingTable) -> tuple[list[int], tuple[str, ...], dict[str, Any]]:
        """The candidate columns of ``train``, their model names and the answer scorer's input
        settings (query-only when the table has no answer text)."""
        cand = candidate_models(train.quality, train.cost, self.max_candidates)
        mode = self.inputs if train.has_answers else "query"
        kw: dict[str, Any] = {"inputs": mode, "embed": self.embed}
        if self.agreement:  # the anchor: the first tier of every multi-tier cascade
            kw["agreement_with"] = self.anchor(train, cand)
        return cand, tuple(train.models[j] for j in cand), kw

    @staticmethod
    def anchor(train: RoutingTable, cand: list[int]) -> str:
        """The cheapest candidate by mean training cost."""
        return train.models[min(cand, key=lambda j: float(np.nanmean(train.cost[:, j])))]

    def fit_feature_scorer(
        self, train: RoutingTable, models: Sequence[str], kw: dict[str, Any], embedder: Any = None
    ) -> tuple[Any, np.ndarray]:
        """The feature answer scorer over ``models`` (this policy's heads options) and its calibrated
        out-of-fold scores of the training answers (:func:`~thrifty.scoring.answer_scorer.fit_answer_scorer`)."""

        return fit_answer_scorer(
            train,
            table_inputs(train, models, embedder=embedder, **kw),
            self.head_configs,
            seed=self.seed,
            mode=kw["inputs"],
            embed=self.embed,
            shared=self.shared,
            knn=self.knn,
            emb_in_heads=self.emb_heads,
            good_length=self.good_length,
        )

    def _fit(self, train: RoutingTable, knobs: Sequence[float] | np.ndarray) -> FittedCascade:

        cand, models, kw = self.candidates(train)
        scorer: Any  # FineTunedScorer, BlendScorer or AnswerScorer, per self.scorer (FittedCascade.scorer)
        if self.scorer == "finetuned":
            scorer, S = fit_finetuned_scorer(train, models, FineTuneConfig(**self.ft), self.ft_inner_folds)
        else:
            scorer, S = self.fit_feature_scorer(train, models, kw)
            if self.scorer == "blend":
                scorer, S = fit_blend_scorer(train, models, (scorer, S), FineTuneConfig(**self.ft), self.ft_inner_folds)
        Q, C = train.quality[:, cand], train.cost[:, cand]
        first = models.index(self.anchor(train, cand)) if (self.agreement or self.start == "cheapest") else None
        if "agreement_with" in kw:
            scorer.agreement_with = kw["agreement_with"]  # the live scorer refuses: it never sees the first answer
        knobs = [float(k) for k in knobs] if len(knobs) else sorted({s.cost for s in train.model_stats() if s.n})
        sel_knobs = knob_range(train, knobs)

        # nested CV over (L, grid, smooth, select, gate z) on the out-of-fold scores of the training prompts
        scores = {}
        configs = [(L, G, r, sel, z) for (L, G, r, sel) in self._configs() for z in (self.gates if L > 1 else self.gates[:1])]
        if len(configs) > 1:
            folds = inner_folds(train.n_prompts, self.inner_folds, self.seed + 1)
            totals = np.zeros(len(configs))
            for test in folds:
                tr = np.setdiff1d(np.arange(train.n_prompts), test)
                Str, Qtr, Ctr = S[tr], Q[tr], C[tr]
                Ste, Qte, Cte = S[test], Q[test], C[test]
                singles = optimise(Str, Qtr, Ctr, max_tiers=1)
                fronts: dict[tuple, Front] = {}
                held: dict[CascadeSpec, tuple[float, float]] = {}  # a pick's inner-test (mean cost, mean quality), shared by configs
                for ci, (L, G, r, sel, z) in enumerate(configs):
                    if (L, G, r, sel) not in fronts:
                        fronts[(L, G, r, sel)] = optimise(Str, Qtr, Ctr, max_tiers=L, grid=G, smooth=r, select=sel, first=first)
                    picks = select_knobs(fronts[(L, G, r, sel)], sel_knobs, self.budget_margin, (singles, Str, Qtr, Ctr, z))
                    val = 0.0
                    for b, spec in picks.items():
                        if spec not in held:
                            c, q = replay_arrays(Ste, Qte, Cte, spec)
                            held[spec] = (c.mean(), q.mean())
                        mc, mq = held[spec]
                        val += mq - self.overspend_penalty * max(0.0, mc / b - 1.0)
                    totals[ci] += val / len(sel_knobs)
            scores = {
                f"L={L},grid={G},smooth={r},select={sel},gate={z:g}": float(t / len(folds)) for (L, G, r, sel, z), t in zip(configs, totals)
            }
            L, G, r, sel, z = configs[int(np.argmax(totals))]
        else:
            L, G, r, sel, z = configs[0]
        front = optimise(S, Q, C, max_tiers=L, grid=G, smooth=r, select=sel, first=first)
        picks = select_knobs(front, knobs, self.budget_margin, (optimise(S, Q, C, max_tiers=1), S, Q, C, z))
        info = {
            "candidates": list(models),
            "chosen": {"max_tiers": L, "grid": G, "smooth": r, "select": sel, "gate_z": z},
            "inner_cv": scores,
            "heads": scorer.info
            if self.scorer != "features"
            else {
                m: {"config": getattr(h, "label", h.config.label), "cv_mse": h.cv_mse, "cv_spearman": h.cv_spearman}
                for m, h in scorer.heads.items()
            },
            "front_size": len(front.points),
            **({"agreement_with": kw["agreement_with"]} if "agreement_with" in kw else {}),
            **({"first_tier": models[first]} if first is not None else {}),
        }
        return FittedCascade(models, scorer, front, picks, kw, info)


def from_artefact(path: str, knobs: Sequence[float] | np.ndarray) -> FittedCascade:
    """A fitted cascade read from a ``thrifty fit`` artefact (no training: ``--opt artefact=DIR``
    evaluates that artefact as it is — held-out only if it was fitted on other prompts)."""

    art = load_artefact(path)
    sc = art.manifest["scorer"]
    models = tuple(sc["models"])
    pts = [
        CascadeSpec(
            tuple(models.index(t) for t in p["tiers"]),
            tuple(float(t) for t in p["thresholds"]),
            p["train_cost"],
            p["train_quality"],
            p.get("select", "last"),
        )
        for p in art.manifest["front"]
    ]
    front = Front(pts, meta={"artefact": str(path)})
    return FittedCascade(
        models, art.scorer(), front, select_knobs(front, knobs), {"inputs": sc["inputs"], "embed": sc["embed"]}, {"artefact": str(path)}
    )


def _floats(v: Sequence[float] | str | float) -> tuple[float, ...]:
    """A list option given as a sequence, a comma/slash list or one number (``--opt gates=0``)."""
    if isinstance(v, str):
        return tuple(float(x) for x in v.replace("/", ",").split(",") if x.strip())
    if isinstance(v, (int, float)):
        return (float(v),)
    return tuple(float(x) for x in v)


def _ints(v: Sequence[int] | str | int) -> tuple[int, ...]:
    if isinstance(v, str):
        return tuple(int(x) for x in v.replace("/", ",").split(",") if x.strip())
    if isinstance(v, int):
        return (v,)
    return tuple(int(x) for x in v)
