"""LLM-as-judge labelling with versioned rubrics (any provider or profile can judge).

- ``absolute`` (rubric ``absolute-v1``): the judge rates one answer 1–10; quality = (rating − 1) / 9.
- ``pairwise`` (rubric ``pairwise-v1``): the judge compares the answer with a reference model's
  answer to the same prompt, in both orders (to cancel position bias); a win scores 1, a tie 0.5,
  a loss 0 and quality is the mean over the parsed orders. The reference model's own answers get 0.5.

The rubric text is part of its version: changing a template means a new version string. Each label
stores ``judge``, ``rubric_version``, ``label_verdict`` (the parsed verdicts) and ``judge_raw`` (the
judge's raw reply; pairwise: both replies joined by `` ||| ``). A reply that cannot be parsed leaves
the row unlabelled with ``label_error`` set, unless ``unparseable`` gives a fallback quality.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from thrifty.calibration.collect import _drive, check_run_options
from thrifty.calibration.executors import LocalExecutor
from thrifty.calibration.label import LABEL_COLUMNS, LabelSummary, _summarise, needs_label, rows_to_label
from thrifty.calibration.remote_calls import CallJob, answer_batch, batched, complete_with_retries
from thrifty.data.outcomes_log import OutcomeLog
from thrifty.errors import ConfigError, DataError, ProviderError
from thrifty.types import ChatRequest, Provider

__all__ = ["Rubric", "RUBRICS", "parse_rating", "parse_preference", "judge_folder"]


@dataclass(frozen=True)
class Rubric:
    name: str
    version: str
    template: str


RUBRICS: dict[str, Rubric] = {
    "absolute": Rubric(
        "absolute",
        "absolute-v1",
        "You are a strict grader. Rate how correct and helpful the answer is for the question, on a scale "
        "from 1 (wrong or useless) to 10 (fully correct and helpful).\n\n"
        "[Question]\n{prompt}\n\n[Answer]\n{answer}\n\n"
        "Reply with the rating (a number from 1 to 10) between double brackets.\n\nRating: [[",
    ),
    "pairwise": Rubric(
        "pairwise",
        "pairwise-v1",
        "You are a strict grader. Compare two answers to the same question and decide which one is more "
        "correct and helpful.\n\n[Question]\n{prompt}\n\n[Answer A]\n{a}\n\n[Answer B]\n{b}\n\n"
        "Reply with the verdict only: [[A]] if A is better, [[B]] if B is better, [[C]] for a tie.\n\nVerdict: [[",
    ),
}

_NUMBER = r"(\d+(?:\.\d+)?)"


def parse_rating(raw: str) -> float | None:
    """A 1–10 rating from a judge reply, else None.

    The rubric ends with ``Rating: [[`` so a reply may start with the bare number (``7]]``); also
    accepted anywhere: ``[[N]]``, ``Rating: N``, ``N/10``. Other numbers (echoed content) never count.
    """
    text = raw or ""
    for pattern in (
        r"^\s*" + _NUMBER + r"\s*(?:\]\]|/\s*10\b|[.!]?\s*$)",
        r"\[\[\s*" + _NUMBER + r"\s*\]\]",
        r"rating\W{0,3}" + _NUMBER,
        _NUMBER + r"\s*/\s*10\b",
    ):
        m = re.search(pattern, text, re.IGNORECASE)
        if m:
            v = float(m.group(1))
            return v if 1.0 <= v <= 10.0 else None
    return None


def parse_preference(raw: str) -> str | None:
    """'A', 'B' or 'C' (tie) from a pairwise reply (``A]]``, ``[[B]]``, "Answer A is better", "tie"), else None."""
    text = raw or ""
    for pattern, flags in (
        (r"^\s*([ABC])\s*(?:\]\]|[.!]?\s*$)", 0),
        (r"\[\[\s*([ABC])\s*\]\]", 0),
        (r"\b(?:answer|assistant)\s+([AB])\s+is\s+better", re.IGNORECASE),
    ):
        m = re.search(pattern, text, flags)
        if m:
            return m.group(1).upper()
    if re.search(r"\b(tie|equally good)\b", text, re.IGNORECASE):
        return "C"
    return None


def _request(text: str, model: str, max_tokens: int) -> ChatRequest:
    return ChatRequest.from_prompt(text, model=model, temperature=0.0, max_tokens=max_tokens)


def _prompt_texts(log: OutcomeLog) -> dict[str, str]:
    """The bare prompt of every prompt id: the prompts file's, else an exported log's pending answer's."""
    texts = {str(r["prompt_id"]): str(r.get("instruction") or "") for r in log.prompts()}
    for p in log.pending():  # exported-log answers not yet in the prompts file
        texts.setdefault(str(p["prompt_id"]), str(p.get("prompt") or ""))
    return texts


def judge_folder(
    folder: str | Path,
    judge: Provider,
    *,
    judge_name: str,
    rubric: str = "absolute",
    reference: str | None = None,
    concurrency: int = 2,
    retries: int = 3,
    max_tokens: int = 16,
    force: bool = False,
    unparseable: float | None = None,
    models: list[str] | None = None,
    on_done: Callable[[], None] | None = None,
    executor: Any = None,
    build: Callable[[], Any] | None = None,
) -> LabelSummary:
    """Label the folder's unlabelled outcomes (all with ``force``) with an LLM judge, in place.

    With a non-local ``executor`` (a Ray cluster) the judge calls run on its workers, which build the
    judge with ``build`` (:func:`thrifty.calibration.collect.provider_factory`); the labels are written here."""

    check_run_options(concurrency, retries)
    if unparseable is not None and not 0.0 <= unparseable <= 1.0:
        raise ConfigError(f"a quality is in [0, 1], got {unparseable!r}", key="--unparseable", fix="pass --unparseable 0, 0.5 or 1")
    if rubric not in RUBRICS:
        raise ConfigError(f"unknown rubric {rubric!r}", key="--rubric", fix=f"use one of: {', '.join(RUBRICS)}")
    if rubric == "pairwise" and not reference:
        raise ConfigError(
            "the pairwise rubric needs a reference model", key="--reference", fix="pass --reference MODEL (a model in the folder)"
        )
    rb = RUBRICS[rubric]
    log, rows = rows_to_label(folder)
    if models is not None:
        have = {str(r.get("model")) for r in rows}
        absent = [m for m in models if m not in have]
        if absent:
            raise ConfigError(
                f"no answers of {', '.join(map(repr, absent))} in the folder", key="--models", fix=f"use some of: {', '.join(sorted(have))}"
            )
    prompts = _prompt_texts(log)
    ref_answer: dict[str, str] = {}
    if reference:
        ref_answer = {str(r["prompt_id"]): str(r.get("output") or "") for r in rows if r.get("model") == reference}
        if not ref_answer:
            found = sorted({str(r.get("model")) for r in rows})
            raise ConfigError(
                f"no answers of reference model {reference!r} in the folder", key="--reference", fix=f"use one of: {', '.join(found)}"
            )
    todo = [i for i, r in enumerate(rows) if needs_label(r, force) and (models is None or r.get("model") in models)]
    for i in todo:
        pid = str(rows[i].get("prompt_id"))
        if pid not in prompts:  # the judge would be asked about an answer without its question
            raise DataError(
                f"prompt {pid!r} has an answer but no prompt text",
                file=str(log.prompts_path),
                field="prompt_id",
                expected="every answered prompt in the prompts file",
            )
        if reference and rows[i].get("model") != reference and pid not in ref_answer:
            raise DataError(
                f"reference model {reference!r} has no answer for prompt {pid!r}",
                file=str(log.outcomes_path),
                field="model",
                expected=f"collect {reference} on every prompt first",
            )
    summary = LabelSummary()
    summary.skipped = len(rows) - len(todo)

    def texts(row: dict[str, Any]) -> list[str]:
        """What the judge is asked about ``row``: one text (absolute), two orders (pairwise), none (the reference)."""
        pid = str(row.get("prompt_id"))
        prompt, answer = prompts.get(pid, ""), str(row.get("output") or "")
        if rubric == "absolute":
            return [rb.template.format(prompt=prompt, answer=answer)]
        if row.get("model") == reference:
            return []
        ref = ref_answer[pid]
        return [rb.template.format(prompt=prompt, a=answer, b=ref), rb.template.format(prompt=prompt, a=ref, b=answer)]

    def label(row: dict[str, Any], raws: list[str]) -> None:
        labels: dict[str, Any] = {"label_method": f"judge:{rubric}", "judge": judge_name, "rubric_version": rb.version}
        if rubric == "absolute":
            rating = parse_rating(raws[0])
            labels.update(judge_raw=raws[0], label_verdict="" if rating is None else f"{rating:g}")
            quality = None if rating is None else (rating - 1.0) / 9.0
        elif not raws:  # the reference model's own answer
            labels.update(judge_raw="", label_verdict="reference")
            quality = 0.5
        else:
            p1, p2 = parse_preference(raws[0]), parse_preference(raws[1])
            scores = [
                s for s in ({"A": 1.0, "C": 0.5, "B": 0.0}.get(p1 or ""), {"B": 1.0, "C": 0.5, "A": 0.0}.get(p2 or "")) if s is not None
            ]
            labels.update(judge_raw=f"{raws[0]} ||| {raws[1]}", label_verdict=f"{p1 or '?'},{p2 or '?'}")
            quality = sum(scores) / len(scores) if scores else None
        if quality is None:
            summary.unparseable += 1
            labels["label_error"] = "unparseable verdict"
            if unparseable is not None:
                quality = float(unparseable)
        if quality is not None:
            labels["quality"] = float(quality)
            summary.labelled += 1
        for k in LABEL_COLUMNS:
            row.pop(k, None)
        row.update(labels)
        if "quality_source" in row:
            row["quality_source"] = "label" if quality is not None else "unlabelled"
        if on_done:
            on_done()

    try:
        if executor is None or isinstance(executor, LocalExecutor):
            _drive(
                _ask_here(
                    judge,
                    judge_name,
                    max_tokens,
                    retries,
                    concurrency,
                    [(i, texts(rows[i])) for i in todo],
                    lambda i, raws: label(rows[i], raws),
                )
            )
        else:
            if build is None:
                raise ConfigError(
                    "a cluster run needs a picklable judge factory", key="--ray", fix="pass build=provider_factory([judge], config)"
                )
            _ask_on(
                executor,
                build,
                judge_name,
                max_tokens,
                retries,
                concurrency,
                [(i, texts(rows[i])) for i in todo],
                lambda i, raws: label(rows[i], raws),
            )
    finally:  # keep every verdict obtained, even when a judge call failed for good
        log.save_labelled(rows)
    return _summarise(rows, summary)


async def _ask_here(
    judge: Provider,
    judge_name: str,
    max_tokens: int,
    retries: int,
    concurrency: int,
    work: list[tuple[int, list[str]]],
    done: Callable[[int, list[str]], None],
) -> None:
    """Ask the judge in this process, ``concurrency`` calls at a time; a call that fails for good raises."""
    sem = asyncio.Semaphore(concurrency)

    async def ask(text: str) -> str:
        async with sem:
            comp = await complete_with_retries(judge, _request(text, judge_name, max_tokens), retries=retries)
        return comp.text or ""

    async def one(i: int, texts: list[str]) -> None:
        done(i, [await ask(t) for t in texts])

    await asyncio.gather(*(one(i, texts) for i, texts in work))


def _ask_on(
    executor: Any,
    build: Callable[[], Any],
    judge_name: str,
    max_tokens: int,
    retries: int,
    concurrency: int,
    work: list[tuple[int, list[str]]],
    done: Callable[[int, list[str]], None],
) -> None:
    """Ask the judge on ``executor``'s workers (batches of ``4 × concurrency`` calls); each row is
    labelled here once all its replies are back. The first call that failed for good is raised after
    every other batch has been recorded."""
    for i, texts in work:
        if not texts:
            done(i, [])
    calls = [((i, k), judge_name, _request(t, judge_name, max_tokens)) for i, texts in work for k, t in enumerate(texts)]
    need = {i: len(texts) for i, texts in work if texts}
    got: dict[int, dict[int, str]] = {}
    failure: str | None = None
    job = CallJob(build, retries=retries, concurrency=concurrency)
    for _, outcomes in executor.map_unordered(answer_batch, job, batched(calls, 4 * concurrency)):
        for (i, k), comp, error in outcomes:
            if comp is None:
                failure = failure or error
                continue
            got.setdefault(i, {})[k] = comp.text or ""
            if len(got[i]) == need[i]:
                done(i, [got[i][j] for j in range(need[i])])
    if failure is not None:
        raise ProviderError(f"a judge call failed for good: {failure}", provider=judge_name)
