"""A distilled student tier at serve time: the model (:class:`Student`, a softmax over MiniLM
embeddings of the query, loaded from its small JSON artefact with numpy alone), the
:class:`StudentProvider` that answers with its label, and the :class:`ConfidenceScorer` that trusts
its probability. Training, data extraction and fine-tuning export live in
:mod:`thrifty.calibration.student`.
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
from thrifty.scoring.heuristic import HeuristicScorer
from thrifty.types import ChatRequest, Completion, Usage

__all__ = ["ARTEFACT_KIND", "Student", "StudentProvider", "ConfidenceScorer", "student_embedder"]

ARTEFACT_KIND = "thrifty.student/v1"


def student_embedder(name: str | None = None) -> Any:
    """The embedder every student trains and predicts with: the process-wide cached MiniLM
    (:func:`thrifty.scoring.embedding.get_embedder`). ``name`` (a student's ``embedder``), when
    given, must be that embedder's name: a student's weights only mean something on its own vectors."""
    from thrifty.scoring.embedding import get_embedder  # loads torch: only when a student answers

    emb = get_embedder()
    if name is not None and name != emb.name:
        raise ConfigError(
            f"the student was trained on {name!r} embeddings, but students embed with {emb.name!r}",
            key="student.embedder",
            fix="retrain it: thrifty student train DIR --out student.json",
        )
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
            text = text[len(self.prefix) :]
        return text

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(n, C) class probabilities for bare queries."""
        z = student_embedder(self.embedder).embed(list(texts)) @ self.coef.T + self.intercept
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        probs: np.ndarray = e / e.sum(axis=1, keepdims=True)
        return probs

    def predict(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """Predicted labels and their confidences (max probability)."""
        p = self.predict_proba(texts)
        idx = p.argmax(axis=1)
        return [self.classes[i] for i in idx], p[np.arange(len(idx)), idx]

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "kind": ARTEFACT_KIND,
            "embedder": self.embedder,
            "classes": list(self.classes),
            "coef": np.round(self.coef, 7).tolist(),
            "intercept": np.round(self.intercept, 7).tolist(),
            "prefix": self.prefix,
            "template": self.template,
            "meta": self.meta,
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Student":
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(
                f"cannot read student artefact {str(path)!r}: {exc.strerror or exc}",
                key="student",
                fix="train one with: thrifty student train DIR --out student.json",
            ) from None
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
        name, emb = doc.get("embedder", cls.embedder), student_embedder()
        if name != emb.name or coef.shape[1] != emb.dim:
            raise DataError(
                f"weights for {name!r} ({coef.shape[1]}-d) embeddings",
                file=str(path),
                field="embedder",
                expected=f"a student trained on {emb.name!r} ({emb.dim}-d): retrain it with thrifty student train",
            )
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
        raise DataError(
            f"{arr.ndim}-d array of {arr.size} values, finite: {bool(np.isfinite(arr).all())}",
            file=str(path),
            field=key,
            expected=f"{what}, all finite",
        )
    return arr


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
    def load(cls, path: str | os.PathLike[str], *, name: str | None = None, cost_per_call: float = 0.0) -> "StudentProvider":
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
        return Completion(
            text=label,
            model=self.name,
            usage=Usage(0, 0),
            cost_usd=self.cost_per_call,
            latency_s=time.perf_counter() - t0,
            raw={"confidence": conf, "probs": probs},
        )


class ConfidenceScorer:
    """A cascade scorer for profiles with a student tier: the student's own confidence (its max class
    probability) when the answer carries one, else the heuristic surface score. In a profile:
    ``scorer = "thrifty.serving.providers.student:ConfidenceScorer"``."""

    def __init__(self) -> None:
        self._fallback: Any = None

    def score(self, request: ChatRequest, completion: Completion | None, model: str = "") -> float:
        raw = getattr(completion, "raw", None)
        if isinstance(raw, dict) and isinstance(raw.get("confidence"), (int, float)):
            return float(raw["confidence"])
        if self._fallback is None:
            self._fallback = HeuristicScorer()
        return float(self._fallback.score(request, completion, model))
