"""A distilled student tier: a linear classifier on local MiniLM embeddings of the query.

For classification-style profiles (a fixed set of answers, e.g. HEADLINES' up/down/neutral/none) the
student is multinomial logistic regression on the 384-d all-MiniLM-L6-v2 embedding of the bare
query, trained either on the strong tier's answers (distillation: the teacher's labels) or on gold.
It costs no tokens, so it can sit at tier 0 of a cascade.

- :func:`train_student` fits it (scikit-learn, seconds on a CPU) and :meth:`Student.save` writes a
  small JSON artefact (weights, classes, prefix/template to strip, provenance); loading and serving
  need only numpy and the embedder, never scikit-learn or pickle.
- :class:`StudentProvider` is a :class:`~thrifty.types.Provider`: it answers with the predicted
  label; ``Completion.raw`` carries ``{"confidence": max probability, "probs": {...}}``.
- :func:`student_data` turns a collection folder into (texts, labels) from a teacher model's answers
  (parsed to the first allowed label word) or from a gold column; :func:`export_finetune` writes the
  teacher's answers as chat JSONL for OpenAI fine-tuning or open-source SFT trainers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from thrifty.errors import ConfigError, DataError
from thrifty.types import ChatRequest, Completion, Usage

__all__ = ["Student", "StudentProvider", "ConfidenceScorer", "train_student", "student_data", "export_finetune", "ARTEFACT_KIND"]

ARTEFACT_KIND = "thrifty.student/v1"


def _embedder(name: str | None = None) -> Any:
    """The embedder every student trains and predicts with: the process-wide cached MiniLM
    (:func:`thrifty.scoring.embedding.get_embedder`). ``name`` (a student's ``embedder``), when
    given, must be that embedder's name: a student's weights only mean something on its own vectors."""
    from thrifty.scoring.embedding import get_embedder

    emb = get_embedder()
    if name is not None and name != emb.name:
        raise ConfigError(f"the student was trained on {name!r} embeddings, but students embed with {emb.name!r}",
                          key="student.embedder", fix="retrain it: thrifty student train DIR --out student.json")
    return emb


@dataclass
class Student:
    """Softmax(W·e(q) + b) over ``classes``; ``e`` = the cached MiniLM embedder."""

    classes: tuple[str, ...]
    coef: np.ndarray  # (C, D)
    intercept: np.ndarray  # (C,)
    embedder: str = "all-MiniLM-L6-v2"  # the name of the embedder ``coef`` was fitted on (see :func:`_embedder`)
    prefix: str | None = None  # stripped from a request's text before embedding
    template: str | None = None  # "{prompt}" placeholder: the query is extracted from it
    meta: dict[str, Any] = field(default_factory=dict)  # teacher / gold, n_train, train accuracy …

    def query_of(self, text: str) -> str:
        """The bare query inside a rendered prompt (template and prefix removed when present)."""
        if self.template:
            head, _, tail = self.template.partition("{prompt}")
            m = re.fullmatch(re.escape(head) + r"(.*)" + re.escape(tail), text, re.DOTALL)
            if m:
                text = m.group(1)
        if self.prefix and text.startswith(self.prefix):
            text = text[len(self.prefix):]
        return text

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(n, C) class probabilities for bare queries."""
        z = _embedder(self.embedder).embed(list(texts)) @ self.coef.T + self.intercept
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """Predicted labels and their confidences (max probability)."""
        p = self.predict_proba(texts)
        idx = p.argmax(axis=1)
        return [self.classes[i] for i in idx], p[np.arange(len(idx)), idx]

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "kind": ARTEFACT_KIND, "embedder": self.embedder, "classes": list(self.classes),
            "coef": np.round(self.coef, 7).tolist(), "intercept": np.round(self.intercept, 7).tolist(),
            "prefix": self.prefix, "template": self.template, "meta": self.meta,
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Student":
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read student artefact {str(path)!r}: {exc.strerror or exc}", key="student",
                              fix="train one with: thrifty student train DIR --out student.json") from None
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg}", file=str(path), line=exc.lineno) from None
        except UnicodeDecodeError:
            raise DataError("not UTF-8 text", file=str(path), expected="a student artefact (JSON)") from None
        if not isinstance(doc, dict) or doc.get("kind") != ARTEFACT_KIND:
            raise DataError("not a student artefact", file=str(path), field="kind", expected=ARTEFACT_KIND)
        raw = doc.get("classes")
        if not isinstance(raw, list) or len(raw) < 2 or not all(isinstance(c, str) and c for c in raw) or len(set(raw)) != len(raw):
            raise DataError(f"got {raw!r}", file=str(path), field="classes", expected="a list of two or more distinct labels")
        classes = tuple(raw)
        coef, icpt = _weights(doc, "coef", path, 2), _weights(doc, "intercept", path, 1)
        if coef.shape[0] != len(classes) or icpt.shape != (len(classes),):
            raise DataError("weights do not match the classes", file=str(path), field="coef", expected="(classes × dim) weights")
        for key in ("prefix", "template"):
            if doc.get(key) is not None and not isinstance(doc[key], str):
                raise DataError(f"got {type(doc[key]).__name__}", file=str(path), field=key, expected="text or null")
        if doc.get("meta") is not None and not isinstance(doc["meta"], dict):
            raise DataError(f"got {type(doc['meta']).__name__}", file=str(path), field="meta", expected="an object or null")
        name, emb = doc.get("embedder", cls.embedder), _embedder()
        if name != emb.name or coef.shape[1] != emb.dim:
            raise DataError(f"weights for {name!r} ({coef.shape[1]}-d) embeddings", file=str(path), field="embedder",
                            expected=f"a student trained on {emb.name!r} ({emb.dim}-d): retrain it with thrifty student train")
        return cls(classes, coef, icpt, name, doc.get("prefix"), doc.get("template"), doc.get("meta") or {})


def _weights(doc: dict[str, Any], key: str, path: Path, ndim: int) -> np.ndarray:
    """``doc[key]`` as a finite float32 array of ``ndim`` dimensions, else a DataError naming the field."""
    what = "a list of numbers" if ndim == 1 else "a list of equal-length lists of numbers"
    try:
        arr = np.asarray(doc[key], dtype=np.float32)
    except KeyError:
        raise DataError("missing", file=str(path), field=key, expected=what) from None
    except (TypeError, ValueError):
        raise DataError("not numeric weights", file=str(path), field=key, expected=what) from None
    if arr.ndim != ndim or arr.size == 0 or not np.isfinite(arr).all():
        raise DataError(f"{arr.ndim}-d array of {arr.size} values, finite: {bool(np.isfinite(arr).all())}",
                        file=str(path), field=key, expected=f"{what}, all finite")
    return arr


def train_student(
    texts: Sequence[str], labels: Sequence[str], *, c: float = 1.0, prefix: str | None = None,
    template: str | None = None, meta: dict[str, Any] | None = None,
) -> Student:
    """Fit multinomial logistic regression (L2, strength ``1/c``, class-balanced off) on the embeddings."""
    if len(texts) != len(labels):
        raise DataError(f"{len(texts)} texts but {len(labels)} labels", field="labels", expected="one label per text")
    if not (isinstance(c, (int, float)) and np.isfinite(c) and c > 0):
        raise ConfigError(f"the inverse regularisation strength must be a positive number, got {c!r}", key="--c",
                          fix="pass --c 1 (smaller: stronger regularisation)")
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise DataError(f"need at least 2 distinct labels to train a student, got {classes}", field="labels",
                        expected="examples of two or more answers")
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError as exc:  # pragma: no cover - depends on extras
        raise ConfigError("training a student needs scikit-learn", key="student", fix="pip install 'thrifty[lab]'") from exc
    emb = _embedder()
    x = emb.embed(list(texts))
    y = np.asarray(labels)
    clf = LogisticRegression(C=c, max_iter=2000)
    clf.fit(x, y)
    order = [list(clf.classes_).index(k) for k in classes]
    coef = clf.coef_ if len(classes) > 2 else np.vstack([-clf.coef_[0] / 2, clf.coef_[0] / 2])
    icpt = clf.intercept_ if len(classes) > 2 else np.array([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
    info = dict(meta or {})
    info.update(n_train=len(texts), train_accuracy=round(float((clf.predict(x) == y).mean()), 4), c=c,
                label_counts={k: int((y == k).sum()) for k in classes})
    return Student(tuple(classes), np.asarray(coef)[order].astype(np.float32), np.asarray(icpt)[order].astype(np.float32),
                   embedder=emb.name, prefix=prefix, template=template, meta=info)


class StudentProvider:
    """A Provider answering with the student's label; costs ``cost_per_call`` (default 0) USD."""

    streams = False
    tools = False
    vision = False
    price_in = 0.0
    price_out = 0.0

    def __init__(self, student: Student, *, name: str = "student", cost_per_call: float = 0.0) -> None:
        self.student = student
        self.name = name
        self.model = name
        self.cost_per_call = float(cost_per_call)

    @classmethod
    def load(cls, path: str | os.PathLike, *, name: str | None = None, cost_per_call: float = 0.0) -> "StudentProvider":
        return cls(Student.load(path), name=name or f"student:{path}", cost_per_call=cost_per_call)

    async def warm(self) -> float:
        """Load the embedder (one throwaway prediction) ahead of the first request; seconds taken."""
        t0 = time.perf_counter()
        await asyncio.to_thread(self.answer, "warm-up")
        return time.perf_counter() - t0

    def answer(self, text: str) -> tuple[str, float, dict[str, float]]:
        probs = self.student.predict_proba([self.student.query_of(text)])[0]
        k = int(probs.argmax())
        return self.student.classes[k], float(probs[k]), {c: round(float(p), 5) for c, p in zip(self.student.classes, probs)}

    async def complete(self, request: ChatRequest) -> Completion:
        t0 = time.perf_counter()
        label, conf, probs = await asyncio.to_thread(self.answer, request.prompt_text)
        return Completion(text=label, model=self.name, usage=Usage(0, 0), cost_usd=self.cost_per_call,
                          latency_s=time.perf_counter() - t0, raw={"confidence": conf, "probs": probs})


class ConfidenceScorer:
    """A cascade scorer for profiles with a student tier: the student's own confidence (its max class
    probability) when the answer carries one, else the heuristic surface score. In a profile:
    ``scorer = "thrifty.student:ConfidenceScorer"``."""

    def __init__(self) -> None:
        self._fallback: Any = None

    def score(self, request: ChatRequest, completion: Completion | None, model: str = "") -> float:
        raw = getattr(completion, "raw", None)
        if isinstance(raw, dict) and isinstance(raw.get("confidence"), (int, float)):
            return float(raw["confidence"])
        if self._fallback is None:
            from thrifty.scoring.heuristic import HeuristicScorer

            self._fallback = HeuristicScorer()
        return float(self._fallback.score(request, completion, model))


def _folder_rows(folder: str | os.PathLike) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from thrifty.outcomes_log import OutcomeLog

    log = OutcomeLog(folder)
    prompts = log.prompts()
    if not prompts:
        raise DataError("no prompts", file=str(log.prompts_path), expected="a folder written by thrifty collect")
    return prompts, log.outcomes()


def student_data(
    folder: str | os.PathLike, *, teacher: str | None = None, gold: str | None = None,
    choices: Sequence[str] | None = None, prompt_ids: set[str] | None = None,
) -> tuple[list[str], list[str], dict[str, Any]]:
    """(bare queries, labels, info) from a collection folder: the teacher's parsed answers or gold."""
    from thrifty.label import parse_choice

    if (teacher is None) == (gold is None):
        raise ConfigError("choose the labels: a teacher model or a gold column", key="--teacher/--gold", fix="pass exactly one of them")
    prompts, outcomes = _folder_rows(folder)
    by_id = {str(r["prompt_id"]): r for r in prompts if prompt_ids is None or str(r["prompt_id"]) in prompt_ids}
    prefixes = {r.get("prefix") for r in by_id.values()}
    templates = {r.get("template") for r in by_id.values()}
    info: dict[str, Any] = {"prefix": prefixes.pop() if len(prefixes) == 1 else None,
                            "template": templates.pop() if len(templates) == 1 else None}
    texts: list[str] = []
    labels: list[str] = []
    if gold is not None:
        for pid, r in by_id.items():
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
    folder: str | os.PathLike, out: str | os.PathLike, *, teacher: str, min_quality: float | None = None,
    system: str | None = None,
) -> int:
    """Write the teacher's answers as chat-format JSONL (``{"messages": [...]}`` per line); returns rows."""
    from thrifty.prompts_file import render_prompt

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
                raise DataError(f"got {q!r} for prompt {row['prompt_id']!r}", file=str(Path(folder) / "outcomes.jsonl"),
                                field="quality", expected="a number in [0, 1] (written by thrifty label)")
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
        raise DataError(f"no answers of {teacher!r} to export" + (f" with quality ≥ {min_quality}" if min_quality is not None else ""),
                        file=str(folder), field="model", expected="a teacher model collected in the folder")
    return n
