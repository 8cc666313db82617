"""Export the request log as a routing table (the shared layout ``thrifty eval``/``thrifty fit`` read).

What is exported
----------------
- one *prompt* per logged request that reached a model: ``prompt_id`` = request id, ``instruction``
  = the last user message; metadata columns ``profile``, ``key_name``, ``created``;
- one *outcome* per tier answer (a step with text or tool calls): ``model`` = the provider name,
  ``cost_usd``, ``input_tokens``, ``output_tokens``, ``output`` (answer text), ``quality``, and
  ``quality_source``;
- ``quality``: the step's label when one was stored (``thrifty logs label``); else the request's label
  for the step whose answer was returned; else — only with ``quality="auto"`` (the default) — the
  live scorer's score for that answer (``quality_source = "score"``: an estimate, not a judgement).
  Answers with no quality at all (e.g. an unscored last tier) are written to ``pending.jsonl.gz``
  (``prompt_id``, ``model``, ``output``) for labelling instead of being guessed.

The table is sparse: a cascade that stopped at tier 0 has no outcome for tier 1 (``NaN``, meaning
"not routable here"), which is exactly what a routing table expresses.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

from thrifty.data.table import RoutingTable
from thrifty.data.table_io import write_table
from thrifty.errors import DataError
from thrifty.store.logs import LogStore

__all__ = ["export_table", "ExportSummary"]

QUALITY_MODES = ("auto", "label")


class ExportSummary(dict):
    """Counts written: prompts, outcomes, by quality source, pending (unlabelled) answers."""


def export_table(
    db: LogStore | str | os.PathLike, out_dir: str | os.PathLike, *, quality: str = "auto", since: float | None = None
) -> ExportSummary:
    """Write the log at ``db`` as a routing-table folder ``out_dir``; return what was written."""
    import numpy as np

    if quality not in QUALITY_MODES:
        raise DataError(f"unknown quality mode {quality!r}", field="quality", expected=" or ".join(QUALITY_MODES))
    store = db if isinstance(db, LogStore) else LogStore(db)
    where, params = "r.status = 200", []
    if since is not None:
        where += " AND r.created >= ?"
        params.append(float(since))
    rows = store.iter_rows(
        "SELECT r.id, r.prompt, r.profile, r.key_name, r.created, r.final_model, r.label AS rlabel,"
        " s.idx, s.model, s.answer, s.score, s.cost_usd, s.input_tokens, s.output_tokens, s.decision, s.label"
        f" FROM requests r JOIN steps s ON s.request_id = r.id WHERE {where} AND s.decision != 'failed'"
        " ORDER BY r.created, r.id, s.idx",
        params,
    )
    prompt_ids: list[str] = []
    prompts: list[str | None] = []
    meta: dict[str, list[Any]] = {"profile": [], "key_name": [], "created": []}
    models: list[str] = []
    cells: list[tuple[int, int, float, float, float, float, str | None, str]] = []
    pending: list[dict[str, Any]] = []
    counts = {"label": 0, "score": 0}
    pindex: dict[str, int] = {}
    for r in rows:
        rid = r["id"]
        q: float | None = None
        src = ""  # where q came from; set with q
        if r["label"] is not None:
            q, src = float(r["label"]), "label"
        elif r["rlabel"] is not None and r["decision"] == "accepted":
            q, src = float(r["rlabel"]), "label"
        elif quality == "auto" and r["score"] is not None:
            q, src = min(1.0, max(0.0, float(r["score"]))), "score"
        if q is None:
            pending.append(
                {
                    "prompt_id": rid,
                    "model": r["model"],
                    "output": r["answer"],
                    "prompt": r["prompt"],
                    "cost_usd": float(r["cost_usd"] or 0.0),
                    "input_tokens": r["input_tokens"],
                    "output_tokens": r["output_tokens"],
                }
            )
            continue
        if rid not in pindex:
            pindex[rid] = len(prompt_ids)
            prompt_ids.append(rid)
            prompts.append(r["prompt"])
            meta["profile"].append(r["profile"])
            meta["key_name"].append(r["key_name"])
            meta["created"].append(r["created"])
        if r["model"] not in models:
            models.append(r["model"])
        nan = float("nan")
        cells.append(
            (
                pindex[rid],
                models.index(r["model"]),
                q,
                float(r["cost_usd"] or 0.0),
                nan if r["input_tokens"] is None else float(r["input_tokens"]),
                nan if r["output_tokens"] is None else float(r["output_tokens"]),
                r["answer"],
                src,
            )
        )
        counts[src] += 1
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if pending:
        with gzip.open(out / "pending.jsonl.gz", "wt", encoding="utf-8") as fh:
            for item in pending:
                fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    if not cells:
        raise DataError(
            "no exportable answers in the log" + (f" ({len(pending)} unlabelled answers written to pending.jsonl.gz)" if pending else ""),
            file=str(store.path),
            expected="logged 200 answers with a label or a live score (label them with `thrifty logs label`)",
        )
    P, M = len(prompt_ids), len(models)
    quality_arr = np.full((P, M), np.nan)
    cost = np.full((P, M), np.nan)
    tin = np.full((P, M), np.nan)
    tout = np.full((P, M), np.nan)
    answers = np.full((P, M), None, dtype=object)
    source = np.full((P, M), None, dtype=object)
    for p, m, q, c, i, o, a, s in cells:
        quality_arr[p, m], cost[p, m], tin[p, m], tout[p, m], answers[p, m], source[p, m] = q, c, i, o, a or "", s
    table = RoutingTable(
        prompt_ids=tuple(prompt_ids),
        prompts=tuple(prompts),
        models=tuple(models),
        quality=quality_arr,
        cost=cost,
        answers=answers,
        input_tokens=tin,
        output_tokens=tout,
        prices={},
        prompt_meta={k: tuple(v) for k, v in meta.items()},
        source=str(store.path),
    )
    write_table(table, out)
    _add_quality_source(out, source, prompt_ids, models)
    return ExportSummary(
        prompts=P, outcomes=len(cells), labelled=counts["label"], scored=counts["score"], pending=len(pending), out_dir=str(out)
    )


def _add_quality_source(out: Path, source: Any, prompt_ids: list[str], models: list[str]) -> None:
    """Rewrite outcomes with a ``quality_source`` column (label | score); loaders ignore extra columns."""
    path = out / "outcomes.jsonl.gz"
    pi = {p: i for i, p in enumerate(prompt_ids)}
    mi = {m: j for j, m in enumerate(models)}
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for row in rows:
            row["quality_source"] = source[pi[row["prompt_id"]], mi[row["model"]]]
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
