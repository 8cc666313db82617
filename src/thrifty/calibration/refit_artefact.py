"""Write a refit's candidate as a ``thrifty fit``-format cascade artefact (the only I/O of a refit;
kept apart from :mod:`thrifty.calibration.refit`, which re-exports it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from thrifty.data.table import RoutingTable
from thrifty.serving.artefact import json_number, write_artefact

__all__ = ["write_candidate_artefact"]


def write_candidate_artefact(path: str | Path, candidate: Any, table: RoutingTable, evidence: Mapping[str, Any]) -> Path:
    """Write ``candidate`` as a ``thrifty fit``-format cascade artefact (the gateway and ``thrifty
    eval --opt artefact=`` read it)."""
    import copy

    fitted = candidate.fitted
    front = fitted.front_json()
    selected = {
        "tiers": list(candidate.tiers),
        "thresholds": [json_number(t) for t in candidate.thresholds],
        "select": candidate.select,
        "train_cost": float(np.nanmean(evidence.get("candidate_cv", {}).get("cost_usd", np.nan))),
        "train_quality": float(evidence.get("candidate_cv", {}).get("quality", np.nan)),
    }
    scorer = copy.copy(fitted.scorer)
    if hasattr(scorer, "_embedder"):
        scorer._embedder = None
    best = table.best_single()
    manifest = {
        "data": {"source": "audits", "hash": table.data_hash, "n_prompts": table.n_prompts},
        "pool": list(table.models),
        "best_single": {"model": best.model, "quality": best.quality, "cost": best.cost},
        "goal": {k: v for k, v in evidence.get("goal", {}).items() if v is not None},
        "selected": selected,
        "scorer": {
            "inputs": fitted.inputs_kw["inputs"],
            "embed": fitted.inputs_kw["embed"],
            "embedder": "all-MiniLM-L6-v2",
            "kind": "features",
            "models": list(fitted.models),
        },
        "front": front,
        "training": {**fitted.info, "refit_evidence": dict(evidence)},
    }
    return write_artefact(path, manifest, {"scorer": scorer}, kind="cascade")
