"""A logged request as a node graph: request → cache lookup → prompt adaptation → each tier tried
(answer, score, threshold, decision) → the answer or the error where it stopped → audit → verdicts.

Pure: takes the rows :func:`thrifty.ui.queries.request_detail` read (plus the profile in service and
the request's audit rows, when there are any) and returns ``{"nodes": [...], "edges": [...]}`` ready for
Cytoscape.js and for the accessible list the page prints next to it.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

__all__ = ["request_graph"]


def _node(nodes: list[dict[str, Any]], id_: str, kind: str, label: str, text: str | None = None, **meta: Any) -> str:
    nodes.append({"id": id_, "kind": kind, "label": label, "text": text or "", "meta": {k: v for k, v in meta.items() if v is not None}})
    return id_


def _edge(edges: list[dict[str, Any]], source: str, target: str, label: str = "") -> None:
    edges.append({"id": f"{source}->{target}", "source": source, "target": target, "label": label})


def _fmt(x: Any) -> str:
    return "–" if x is None else f"{float(x):.3g}"


def _prompt_text(detail: Mapping[str, Any]) -> str:
    if detail.get("prompt"):
        return str(detail["prompt"])
    try:
        body = json.loads(detail.get("request_json") or "{}")
    except ValueError:
        return ""
    msgs = body.get("messages") or []
    return "\n\n".join(f"{m.get('role')}: {m.get('content')}" for m in msgs if isinstance(m, dict))


def request_graph(
    detail: Mapping[str, Any],
    *,
    profile: Mapping[str, Any] | None = None,
    audit: Mapping[str, Any] | None = None,
    audit_answers: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    status = int(detail["status"])
    last = _node(
        nodes,
        "request",
        "request",
        f"request → {detail.get('model_requested')}",
        _prompt_text(detail),
        key=detail.get("key_name"),
        profile=detail.get("profile"),
        stream=bool(detail.get("stream")),
    )
    if detail.get("cache") is not None:
        cache = _node(
            nodes,
            "cache",
            "cache",
            f"cache: {detail['cache']}",
            "the answer was served from the cache"
            if detail["cache"] in ("hit", "semantic")
            else f"cache status {detail['cache']}: the tiers were called",
            status=detail["cache"],
        )
        _edge(edges, last, cache, "lookup")
        last = cache
    adaptation = (profile or {}).get("prompt_adaptation")
    if adaptation:
        shots = _node(
            nodes,
            "shots",
            "shots",
            f"prompt adaptation: ≤{adaptation.get('k')} shots",
            f"few-shot examples chosen per request (layout {adaptation.get('layout')}); the number used is "
            "sent in the x-thrifty-shots header",
            **dict(adaptation),
        )
        _edge(edges, last, shots, "adapt")
        last = shots
    steps = list(detail.get("steps") or [])
    prev_label = "call"
    answered = None
    for s in steps:
        decision = s.get("decision")
        label = f"tier {s.get('tier')}: {s.get('model')} · {decision}"
        if s.get("score") is not None:
            label += f"\nscore {_fmt(s.get('score'))}" + (
                f" / threshold {_fmt(s.get('threshold'))}" if s.get("threshold") is not None else ""
            )
        text = s.get("answer") or s.get("error") or ""
        node = _node(
            nodes,
            f"tier{s['idx']}",
            "tier-" + str(decision),
            label,
            text,
            decision=decision,
            score=s.get("score"),
            threshold=s.get("threshold"),
            cost_usd=s.get("cost_usd"),
            latency_s=s.get("latency_s"),
            cache=s.get("cache"),
            error=s.get("error"),
        )
        _edge(edges, last, node, prev_label)
        last = node
        if decision == "accepted":
            answered = node
            prev_label = "accepted"
        elif decision == "escalated":
            prev_label = f"escalated: score {_fmt(s.get('score'))} < {_fmt(s.get('threshold'))}"
        else:
            prev_label = "failed: next tier"
    if status < 400:
        answer_text = detail.get("answer") or ""
        label = "answer (streamed)" if detail.get("stream") else "answer"
        end = _node(
            nodes,
            "answer",
            "answer",
            f"{label} · {status}",
            answer_text,
            model=detail.get("final_model"),
            cost_usd=detail.get("cost_usd"),
            latency_s=detail.get("latency_s"),
        )
        _edge(edges, answered or last, end, "accepted" if answered else "served")
    else:
        partial = detail.get("answer")
        where = "stopped mid-stream" if detail.get("stream") and partial else "stopped"
        text = (detail.get("error") or "") + (f"\n\npartial answer sent before the failure:\n{partial}" if partial else "")
        end = _node(nodes, "error", "error", f"error {status} ({where})", text, error=detail.get("error"))
        _edge(edges, last, end, "stopped here" if steps else "stopped before any tier")
    if audit:
        a = _node(
            nodes,
            "audit",
            "audit",
            f"audit vs {audit.get('reference', 'reference')}",
            json.dumps({k: v for k, v in audit.items() if k not in ("request_id",)}, default=str, indent=1),
            audit_cost_usd=audit.get("audit_cost_usd"),
        )
        _edge(edges, end, a, "sampled")
        for i, v in enumerate(audit_answers):
            good = v.get("at_least_as_good")
            verdict = "no verdict" if good is None else ("≥ reference" if good else "< reference")
            j = _node(
                nodes,
                f"verdict{i}",
                "verdict",
                f"judge: {v.get('model')} {verdict}",
                v.get("answer") or v.get("error") or "",
                quality=v.get("quality"),
                at_least_as_good=good,
            )
            _edge(edges, a, j, "judged")
    return {"nodes": nodes, "edges": edges}
