"""Label a collection folder: grade each answer into ``quality`` in [0, 1].

Exact graders (:mod:`thrifty.scoring.graders`: ``exact``, ``regex``, ``numeric``, ``choice``) compare
the answer with a gold column of the prompts (quality 1 or 0).

The LLM judge lives in :mod:`thrifty.calibration.judge`. Every label stores its provenance next to the quality:
``label_method``, ``label_verdict`` (what was parsed) and, for the judge, ``judge``,
``rubric_version`` and ``judge_raw`` (the judge's raw reply).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from thrifty.data.outcomes_log import OutcomeLog
from thrifty.errors import ConfigError, DataError
from thrifty.scoring.graders import MATCHES, Grader, make_grader, normalise, parse_choice, parse_number

__all__ = ["Grader", "make_grader", "parse_number", "parse_choice", "normalise", "label_folder", "LabelSummary", "MATCHES"]

LABEL_COLUMNS = ("quality", "label_method", "label_verdict", "judge", "rubric_version", "judge_raw", "label_error")


def needs_label(row: dict[str, Any], force: bool = False) -> bool:
    """A row is (re)labelled when forced, when it has no quality, or when its quality is only the
    live scorer's estimate (``quality_source = "score"`` in an exported log)."""
    return force or row.get("quality") is None or row.get("quality_source") == "score"


@dataclass
class LabelSummary:
    labelled: int = 0
    skipped: int = 0
    unparseable: int = 0
    by_model: dict[str, tuple[int, float]] | None = None  # model -> (n labelled, mean quality)

    def table_rows(self) -> list[tuple[str, int, float]]:
        return [(m, n, q) for m, (n, q) in sorted((self.by_model or {}).items())]


def rows_to_label(folder: str | Path) -> tuple[OutcomeLog, list[dict[str, Any]]]:
    """The folder's log and every row a labeller sees (outcomes plus an exported log's pending
    answers, :meth:`OutcomeLog.for_labelling`); a folder with none is a :class:`DataError`."""
    log = OutcomeLog(folder)
    rows = log.for_labelling()
    if not rows:
        raise DataError("no outcomes to label", file=str(log.outcomes_path), expected="run thrifty collect first")
    return log, rows


def _prompt_gold(log: OutcomeLog, gold: str) -> dict[str, Any]:
    rows = log.prompts()
    if not rows:
        raise DataError("no prompts file", file=str(log.prompts_path), expected="a folder written by thrifty collect")
    if not any(gold in r for r in rows):
        cols = sorted({k for r in rows for k in r} - {"prompt_id", "instruction"})
        raise ConfigError(f"the prompts have no column {gold!r}", key="--gold", fix=f"use one of: {', '.join(cols) or '(none)'}")
    return {str(r["prompt_id"]): r.get(gold) for r in rows}


def _summarise(rows: list[dict[str, Any]], summary: LabelSummary) -> LabelSummary:
    acc: dict[str, list[float]] = {}
    for r in rows:
        if r.get("quality") is not None:
            acc.setdefault(str(r["model"]), []).append(float(r["quality"]))
    summary.by_model = {m: (len(v), sum(v) / len(v)) for m, v in acc.items()}
    return summary


def label_folder(
    folder: str | Path,
    *,
    gold: str = "gold",
    match: str = "exact",
    choices: Sequence[str] | None = None,
    tol: float = 1e-6,
    force: bool = False,
) -> LabelSummary:
    """Grade every unlabelled outcome (all of them with ``force``) against the gold column, in place."""
    log, rows = rows_to_label(folder)
    golds = _prompt_gold(log, gold)
    grader = make_grader(match, choices=choices, golds=list(golds.values()), tol=tol)
    summary = LabelSummary()
    for i, r in enumerate(rows, start=1):
        if needs_label(r, force) is False:
            summary.skipped += 1
            continue
        pid = str(r.get("prompt_id"))
        if golds.get(pid) is None:
            raise DataError(
                f"prompt {pid!r} has no {gold!r} value",
                file=str(log.prompts_path),
                field=gold,
                expected="a gold value for every collected prompt",
            )
        for k in LABEL_COLUMNS:
            r.pop(k, None)
        r.update(grader.grade_row(r.get("output"), golds[pid], where=f"prompt {pid!r} (outcomes line {i})"))
        if "quality_source" in r:
            r["quality_source"] = "label"
        summary.labelled += 1
    log.save_labelled(rows)
    return _summarise(rows, summary)
