"""Versioned policy artefact: what ``thrifty fit`` writes and the gateway / ``thrifty eval`` load.

An artefact is a directory::

    manifest.json   format, version, kind, created, thrifty version, data (source, hash, prompts),
                    pool, the selected operating point, the training front of operating points
                    (each with its training mean cost and quality), training metrics, and per kind:
                    ``scorer`` (cascade, hybrid: answer-scorer settings), ``router`` (router, hybrid:
                    models, expected costs, head variant, the query embedder's name)
    heads.pkl       the fitted objects (pickle; its sha256 is in the manifest): cascade —
                    ``{"scorer"}`` (version 1: the per-model scoring heads); router — ``{"predictor"}``;
                    hybrid — ``{"predictor", "scorer"}``
    *.pt            optional weight files (torch state dicts of a fine-tuned scorer), listed with
                    their sha256 under ``files`` in the manifest; the scorer loads them on first use

``kind`` is ``cascade`` | ``router`` | ``hybrid``. Version 1 (format ``thrifty-cascade``, no ``kind``)
is read as a cascade artefact; version 2 adds ``kind``. :meth:`Artefact.policy` returns the live
sans-I/O policy — :class:`~thrifty.policy.cascade.CascadePolicy`,
:class:`~thrifty.policy.router.RouterPolicy` or :class:`~thrifty.policy.hybrid.HybridPolicy` — for
the selected point or for a budget. A router needs query embeddings live: the embedder the fit used
(``minilm``, ``static`` or ``module:Factory``) is rebuilt lazily on the first request; a missing extra
is a :class:`~thrifty.errors.ConfigError` when the policy is built.

``load_artefact`` checks ``format``, ``version`` and ``kind`` first and refuses anything it does not
know with a :class:`~thrifty.errors.ConfigError` that says what it reads; a heads file whose hash
differs from the manifest is refused too (pickles are only loaded from artefacts you made), and so
is a listed weight file that is missing or whose hash differs.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thrifty import __version__
from thrifty.errors import ConfigError
from thrifty.policy.cascade import CascadePolicy
from thrifty.policy.hybrid import HybridPolicy
from thrifty.policy.router import RouterPolicy
from thrifty.scoring.answer_scorer import AnswerScorer
from thrifty.scoring.embedders import LazyEmbedder
from thrifty.scoring.router_heads import QueryEncoder

__all__ = ["FORMAT", "VERSION", "KINDS", "Artefact", "write_artefact", "load_artefact", "json_number"]

FORMAT = "thrifty-artefact"
FORMATS = (FORMAT, "thrifty-cascade")  # version 1 was written as "thrifty-cascade"
VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
KINDS = ("cascade", "router", "hybrid")


def _num(x: float) -> float | str:
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


json_number = _num


def _float(x: Any) -> float:
    return float(x)  # also reads the "inf" / "-inf" strings that _num writes


@dataclass
class Artefact:
    manifest: dict[str, Any]
    heads: dict[str, Any]
    path: Path
    _embedder: LazyEmbedder | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def kind(self) -> str:
        return str(self.manifest.get("kind", "cascade"))

    @property
    def tiers(self) -> tuple[str, ...]:
        """The models the selected policy may call (a router: every model it routes between)."""
        return tuple(self.manifest["selected"]["tiers"])

    @property
    def thresholds(self) -> tuple[float, ...]:
        return tuple(_float(t) for t in self.manifest["selected"].get("thresholds", ()))

    def point(self, budget: float | None = None) -> dict[str, Any]:
        """The selected operating point, or the front's best at training mean cost ≤ ``budget``
        (the cheapest point when none fits)."""
        if budget is None:
            return dict(self.manifest["selected"])
        front = self.manifest["front"]
        ok = [p for p in front if p["train_cost"] <= budget] or front[:1]
        return dict(ok[-1])

    def scorer(self, embedder: Any = None) -> Any:
        """The fitted answer scorer (query embeddings, if it uses them, from ``embedder``, else the
        router's embedder for a hybrid and the default MiniLM for a cascade)."""
        sc = self.heads.get("scorer") if isinstance(self.heads, dict) else None
        if sc is not None and hasattr(sc, "load_files"):  # weights in hash-checked files beside the manifest
            sc.load_files(self.path)
            return sc
        if sc is not None and hasattr(sc, "score"):  # version 2: the whole scorer (k-NN memory included)
            if getattr(sc, "embed", "none") != "none":
                sc._embedder = embedder if embedder is not None else (self._lazy_embedder() if self.kind == "hybrid" else None)
            return sc

        sc = self.manifest["scorer"]
        return AnswerScorer(self.heads, inputs=sc["inputs"], embed=sc["embed"], embedder=embedder)

    def cascade_for(self, budget: float | None = None) -> tuple[tuple[str, ...], tuple[float, ...]]:
        """Tiers and thresholds of the selected cascade, or of the front's best at mean cost ≤ budget."""
        p = self.point(budget)
        return tuple(p["tiers"]), tuple(_float(t) for t in p.get("thresholds", ()))

    def select_for(self, budget: float | None = None) -> str:
        """The answer-selection rule of that cascade (``last`` unless the point says ``best``)."""
        return str(self.point(budget).get("select", "last"))

    def _lazy_embedder(self) -> LazyEmbedder:
        spec = str(self.manifest["router"]["embedder"])
        if self._embedder is None or self._embedder.spec != spec:
            self._embedder = LazyEmbedder(spec)
        return self._embedder

    def predictor(self, embedder: Any = None) -> Any:
        """The fitted query-quality predictor (router, hybrid) with its query embedder attached
        (``embedder`` or, lazily, the one named in the manifest)."""
        from dataclasses import replace

        if self.kind not in ("router", "hybrid"):
            raise ConfigError(f"a {self.kind} artefact has no router", key="artefact")
        return replace(self.heads["predictor"], encoder=QueryEncoder(embedder if embedder is not None else self._lazy_embedder()))

    def policy(self, budget: float | None = None, embedder: Any = None) -> Any:
        """The live sans-I/O policy of this artefact for the selected point (or ``budget``)."""

        p = self.point(budget)
        if self.kind == "router":
            r = self.manifest["router"]
            return RouterPolicy(
                tuple(r["models"]),
                self.predictor(embedder),
                [float(c) for c in r["expected_cost"]],
                lam=_float(p["lam"]),
                target=p.get("target"),
            )
        tiers, thr = self.cascade_for(budget)
        cascade = CascadePolicy(tiers, thr, self.scorer(embedder) if len(tiers) > 1 else None, select=self.select_for(budget))
        if self.kind == "cascade":
            return cascade

        r = self.manifest["router"]
        cost = {m: float(c) for m, c in zip(r["models"], r["expected_cost"])}
        return HybridPolicy(cascade, self.predictor(embedder), tuple(r["models"]), cost, _float(p["lam"]))


def write_artefact(
    path: str | Path, manifest: dict[str, Any], heads: dict[str, Any], kind: str = "cascade", files: dict[str, bytes] | None = None
) -> Path:
    """Write ``manifest`` (format/version/kind/created are added), ``heads`` (the kind's fitted
    objects, see the module docstring) and ``files`` (name → bytes, e.g. a scorer's state dict) into
    directory ``path``."""

    if kind not in KINDS:
        raise ValueError(f"unknown artefact kind {kind!r}")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    blob = pickle.dumps(heads, protocol=pickle.HIGHEST_PROTOCOL)
    (out / "heads.pkl").write_bytes(blob)
    listed = {}
    for name, data in (files or {}).items():
        if Path(name).name != name or name in ("heads.pkl", "manifest.json"):
            raise ValueError(f"bad artefact file name {name!r}")
        (out / name).write_bytes(data)
        listed[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "thrifty_version": __version__,
        **manifest,
        "heads_file": {"name": "heads.pkl", "sha256": hashlib.sha256(blob).hexdigest()},
    }
    if listed:
        doc["files"] = listed
    (out / "manifest.json").write_text(json.dumps(doc, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return out


def _json_default(x: Any) -> Any:
    try:
        import numpy as np

        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, np.ndarray):
            return x.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def load_artefact(path: str | Path) -> Artefact:
    """Load and check an artefact directory (see the module docstring)."""
    root = Path(path)
    mf = root / "manifest.json"
    if not mf.is_file():
        raise ConfigError(f"no manifest.json in {root}", key="artefact", fix="pass the directory written by `thrifty fit --out`")
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{mf} is not valid JSON: {exc}", key="artefact") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in FORMATS:
        raise ConfigError(
            f"{mf} is not a thrifty artefact (format {manifest.get('format') if isinstance(manifest, dict) else None!r})",
            key="artefact",
            fix=f"expected format {FORMAT!r}",
        )
    version = manifest.get("version")
    if version not in SUPPORTED_VERSIONS:
        raise ConfigError(
            f"artefact {root} has format version {version!r}; this thrifty reads version(s) {', '.join(map(str, SUPPORTED_VERSIONS))}",
            key="artefact",
            fix="re-create it with `thrifty fit`, or use the thrifty release that wrote it",
        )
    kind = manifest.get("kind", "cascade")
    if kind not in KINDS or (version == 1 and kind != "cascade"):
        raise ConfigError(
            f"artefact {root} has kind {kind!r}; this thrifty reads {', '.join(KINDS)} (version 1: cascade only)",
            key="artefact",
            fix="re-create it with `thrifty fit --policy cascade|router|hybrid`",
        )
    hf = manifest.get("heads_file") or {}
    blob_path = root / str(hf.get("name", "heads.pkl"))
    if not blob_path.is_file():
        raise ConfigError(f"artefact {root} lacks {blob_path.name}", key="artefact", fix="re-create it with `thrifty fit`")
    blob = blob_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != hf.get("sha256"):
        raise ConfigError(f"{blob_path} does not match the hash in its manifest", key="artefact", fix="re-create it with `thrifty fit`")
    for name, meta in (manifest.get("files") or {}).items():
        f = root / Path(name).name
        if not f.is_file():
            raise ConfigError(f"artefact {root} lacks {f.name}", key="artefact", fix="re-create it with `thrifty fit`")
        if hashlib.sha256(f.read_bytes()).hexdigest() != meta.get("sha256"):
            raise ConfigError(f"{f} does not match the hash in its manifest", key="artefact", fix="re-create it with `thrifty fit`")
    heads = pickle.loads(blob)  # noqa: S301 - hash-checked file of our own format
    return Artefact(manifest, heads, root)
