"""Versioned cascade artefact: what ``thrifty fit`` writes and the gateway / ``thrifty eval`` load.

An artefact is a directory::

    manifest.json   format, version, created, thrifty version, data (source, hash, prompts), pool,
                    scorer settings, the selected cascade, every budgeted cascade, the training
                    Pareto front, training metrics (per-head inner-CV error, nested-CV choices)
    heads.pkl       the fitted per-model scoring heads (pickle; its sha256 is in the manifest)

``load_artefact`` checks ``format`` and ``version`` first and refuses anything it does not know
with a :class:`~thrifty.errors.ConfigError` that says which versions it reads; a heads file whose
hash differs from the manifest is refused too (pickles are only loaded from artefacts you made).
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thrifty.errors import ConfigError

__all__ = ["FORMAT", "VERSION", "Artefact", "write_artefact", "load_artefact", "json_number"]

FORMAT = "thrifty-cascade"
VERSION = 1
SUPPORTED_VERSIONS = (1,)


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

    @property
    def tiers(self) -> tuple[str, ...]:
        return tuple(self.manifest["selected"]["tiers"])

    @property
    def thresholds(self) -> tuple[float, ...]:
        return tuple(_float(t) for t in self.manifest["selected"]["thresholds"])

    def scorer(self, embedder=None):
        from thrifty.scoring.answer_scorer import AnswerScorer

        sc = self.manifest["scorer"]
        return AnswerScorer(self.heads, inputs=sc["inputs"], embed=sc["embed"], embedder=embedder)

    def cascade_for(self, budget: float | None = None) -> tuple[tuple[str, ...], tuple[float, ...]]:
        """Tiers and thresholds of the selected cascade, or of the front's best at mean cost ≤ budget."""
        if budget is None:
            return self.tiers, self.thresholds
        front = self.manifest["front"]
        ok = [p for p in front if p["train_cost"] <= budget] or front[:1]
        p = ok[-1]
        return tuple(p["tiers"]), tuple(_float(t) for t in p["thresholds"])

    def policy(self, budget: float | None = None, embedder=None):
        """A live :class:`~thrifty.policy.cascade.CascadePolicy` for this artefact."""
        from thrifty.policy.cascade import CascadePolicy

        tiers, thr = self.cascade_for(budget)
        return CascadePolicy(tiers, thr, self.scorer(embedder) if len(tiers) > 1 else None)


def write_artefact(path: str | Path, manifest: dict[str, Any], heads: dict[str, Any]) -> Path:
    """Write ``manifest`` (format/version/created are added) and ``heads`` into directory ``path``."""
    from thrifty import __version__

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    blob = pickle.dumps(heads, protocol=pickle.HIGHEST_PROTOCOL)
    (out / "heads.pkl").write_bytes(blob)
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "thrifty_version": __version__,
        **manifest,
        "heads_file": {"name": "heads.pkl", "sha256": hashlib.sha256(blob).hexdigest()},
    }
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
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ConfigError(
            f"{mf} is not a thrifty cascade artefact (format {manifest.get('format') if isinstance(manifest, dict) else None!r})",
            key="artefact", fix=f"expected format {FORMAT!r}",
        )
    version = manifest.get("version")
    if version not in SUPPORTED_VERSIONS:
        raise ConfigError(
            f"artefact {root} has format version {version!r}; this thrifty reads version(s) {', '.join(map(str, SUPPORTED_VERSIONS))}",
            key="artefact", fix="re-create it with `thrifty fit`, or use the thrifty release that wrote it",
        )
    hf = manifest.get("heads_file") or {}
    blob_path = root / str(hf.get("name", "heads.pkl"))
    if not blob_path.is_file():
        raise ConfigError(f"artefact {root} lacks {blob_path.name}", key="artefact", fix="re-create it with `thrifty fit`")
    blob = blob_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != hf.get("sha256"):
        raise ConfigError(f"{blob_path} does not match the hash in its manifest", key="artefact", fix="re-create it with `thrifty fit`")
    heads = pickle.loads(blob)  # noqa: S301 - hash-checked file of our own format
    return Artefact(manifest, heads, root)
