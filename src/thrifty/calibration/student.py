"""A distilled student tier: a linear classifier on local MiniLM embeddings of the query.

For classification-style profiles (a fixed set of answers, e.g. HEADLINES' up/down/neutral/none) the
student is multinomial logistic regression on the 384-d all-MiniLM-L6-v2 embedding of the bare
query, trained either on the strong tier's answers (distillation: the teacher's labels) or on gold.
It costs no tokens, so it can sit at tier 0 of a cascade.

- :func:`train_student` fits it (scikit-learn, seconds on a CPU) and :meth:`Student.save` writes a
  small JSON artefact (weights, classes, prefix/template to strip, provenance); loading and serving
  need only numpy and the embedder, never scikit-learn or pickle.
- :class:`StudentProvider` (in :mod:`thrifty.serving.providers.student`, with the model) is a :class:`~thrifty.types.Provider`: it answers with the predicted
  label; ``Completion.raw`` carries ``{"confidence": max probability, "probs": {...}}``.
- :func:`student_data` turns a collection folder into (texts, labels) from a teacher model's answers
  (parsed to the first allowed label word) or from a gold column; :func:`export_finetune` writes the
  teacher's answers as chat JSONL for OpenAI fine-tuning or open-source SFT trainers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from thrifty.calibration.label import parse_choice
from thrifty.data.outcomes_log import OutcomeLog
from thrifty.data.prompts_file import render_prompt
from thrifty.errors import ConfigError, DataError
from thrifty.serving.providers.student import ARTEFACT_KIND, ConfidenceScorer, Student, StudentProvider, student_embedder

__all__ = ["Student", "StudentProvider", "ConfidenceScorer", "train_student", "student_data", "export_finetune", "ARTEFACT_KIND"]
# the serve-time half (model, provider, scorer) lives in serving.providers.student


def train_student(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    c: float = 1.0,
    prefix: str | None = None,
    template: str | None = None,
    meta: dict[str, Any] | None = None,
) -> Student:
    """Fit multinomial logistic regression (L2, strength ``1/c``, class-balanced off) on the embeddings."""
    if len(texts) != len(labels):
        raise DataError(f"{len(texts)} texts but {len(labels)} labels", field="labels", expected="one label per text")
    if not (isinstance(c, (int, float)) and np.isfinite(c) and c > 0):
        raise ConfigError(
            f"the inverse regularisation strength must be a positive number, got {c!r}",
            key="--c",
            fix="pass --c 1 (smaller: stronger regularisation)",
        )
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise DataError(
            f"need at least 2 distinct labels to train a student, got {classes}", field="labels", expected="examples of two or more answers"
        )
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError as exc:  # pragma: no cover - depends on extras
        raise ConfigError("training a student needs scikit-learn", key="student", fix="pip install 'thrifty[lab]'") from exc
    emb = student_embedder()
    x = emb.embed(list(texts))
    y = np.asarray(labels)
    clf = LogisticRegression(C=c, max_iter=2000)
    clf.fit(x, y)
    order = [list(clf.classes_).index(k) for k in classes]
    coef = clf.coef_ if len(classes) > 2 else np.vstack([-clf.coef_[0] / 2, clf.coef_[0] / 2])
    icpt = clf.intercept_ if len(classes) > 2 else np.array([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
    info = dict(meta or {})
    info.update(
        n_train=len(texts),
        train_accuracy=round(float((clf.predict(x) == y).mean()), 4),
        c=c,
        label_counts={k: int((y == k).sum()) for k in classes},
    )
    return Student(
        tuple(classes),
        np.asarray(coef)[order].astype(np.float32),
        np.asarray(icpt)[order].astype(np.float32),
        embedder=emb.name,
        prefix=prefix,
        template=template,
        meta=info,
    )


def _folder_rows(folder: str | os.PathLike) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:

    log = OutcomeLog(folder)
    prompts = log.prompts()
    if not prompts:
        raise DataError("no prompts", file=str(log.prompts_path), expected="a folder written by thrifty collect")
    return prompts, log.outcomes()


def student_data(
    folder: str | os.PathLike,
    *,
    teacher: str | None = None,
    gold: str | None = None,
    choices: Sequence[str] | None = None,
    prompt_ids: set[str] | None = None,
) -> tuple[list[str], list[str], dict[str, Any]]:
    """(bare queries, labels, info) from a collection folder: the teacher's parsed answers or gold."""

    if (teacher is None) == (gold is None):
        raise ConfigError("choose the labels: a teacher model or a gold column", key="--teacher/--gold", fix="pass exactly one of them")
    prompts, outcomes = _folder_rows(folder)
    by_id = {str(r["prompt_id"]): r for r in prompts if prompt_ids is None or str(r["prompt_id"]) in prompt_ids}
    prefixes = {r.get("prefix") for r in by_id.values()}
    templates = {r.get("template") for r in by_id.values()}
    info: dict[str, Any] = {
        "prefix": prefixes.pop() if len(prefixes) == 1 else None,
        "template": templates.pop() if len(templates) == 1 else None,
    }
    texts: list[str] = []
    labels: list[str] = []
    if gold is not None:
        for r in by_id.values():
            if r.get(gold) is not None:
                texts.append(str(r.get("instruction") or ""))
                labels.append(str(r[gold]).strip())
        info["source"] = f"gold:{gold}"
    else:
        if choices is not None:
            allowed = list(dict.fromkeys(c.strip() for c in choices if c.strip()))  # "" would match any answer
        else:
            allowed = sorted({str(r["gold"]).strip() for r in prompts if r.get("gold") is not None} - {""})
        if not allowed:
            raise ConfigError("the teacher's answers need a label set", key="--choices", fix="pass --choices a,b,c")
        answers = {str(r["prompt_id"]): r.get("output") for r in outcomes if r.get("model") == teacher}
        if not answers:
            have = sorted({str(r.get("model")) for r in outcomes})
            raise ConfigError(f"no answers of teacher {teacher!r}", key="--teacher", fix=f"use one of: {', '.join(have)}")
        dropped = 0
        for pid, r in by_id.items():
            pick = parse_choice(answers.get(pid) or "", allowed) if pid in answers else None
            if pick is None:
                dropped += pid in answers
                continue
            texts.append(str(r.get("instruction") or ""))
            labels.append(pick)
        info.update(source=f"teacher:{teacher}", unparsed_dropped=dropped)
    if not texts:
        raise DataError("no training examples", file=str(folder), expected="labelled prompts")
    return texts, labels, info


def export_finetune(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    *,
    teacher: str,
    min_quality: float | None = None,
    system: str | None = None,
) -> int:
    """Write the teacher's answers as chat-format JSONL (``{"messages": [...]}`` per line); returns rows."""

    if min_quality is not None and not (isinstance(min_quality, (int, float)) and 0.0 <= min_quality <= 1.0):
        raise ConfigError(f"a quality is in [0, 1], got {min_quality!r}", key="--min-quality", fix="pass --min-quality 0.8")
    prompts, outcomes = _folder_rows(folder)
    by_id = {str(r["prompt_id"]): r for r in prompts}
    n = 0
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for row in outcomes:
            if row.get("model") != teacher or not (row.get("output") or "").strip():
                continue
            q = row.get("quality")
            if q is not None and (isinstance(q, bool) or not isinstance(q, (int, float))):
                raise DataError(
                    f"got {q!r} for prompt {row['prompt_id']!r}",
                    file=str(Path(folder) / "outcomes.jsonl"),
                    field="quality",
                    expected="a number in [0, 1] (written by thrifty label)",
                )
            if min_quality is not None and (q is None or q < min_quality):
                continue
            p = by_id.get(str(row["prompt_id"]))
            if p is None:
                continue
            if p.get("messages"):
                msgs = [m for m in p["messages"]]
            else:
                msgs = [{"role": "system", "content": p["system"]}] if p.get("system") else []
                msgs.append({"role": "user", "content": render_prompt(str(p.get("instruction") or ""), p.get("prefix"), p.get("template"))})
            if system and not any(m.get("role") == "system" for m in msgs):
                msgs.insert(0, {"role": "system", "content": system})
            msgs.append({"role": "assistant", "content": str(row["output"]).strip()})
            fh.write(json.dumps({"messages": msgs}, ensure_ascii=False) + "\n")
            n += 1
    if n == 0:
        raise DataError(
            f"no answers of {teacher!r} to export" + (f" with quality ≥ {min_quality}" if min_quality is not None else ""),
            file=str(folder),
            field="model",
            expected="a teacher model collected in the folder",
        )
    return n
