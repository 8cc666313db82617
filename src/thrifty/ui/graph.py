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


def _shot_ids(step: Mapping[str, Any]) -> list[str] | None:
    """The ids of the shots a tier's prompt got (``steps.shots``, JSON), None when not adapted."""
    raw = step.get("shots")
    if raw is None:
        return None
    try:
        ids = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return None
    return [str(i) for i in ids] if isinstance(ids, list) else None


def _shots_node(
    nodes: list[dict[str, Any]],
    steps: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any] | None,
    texts: Mapping[str, tuple[str, str]],
) -> str | None:
    """The prompt-adaptation node: the shots logged for the request's tiers, else (a row from before
    0012_dash_shots, a cached answer, a request with history) the profile's settings, saying so."""
    used = [(s, ids) for s in steps if (ids := _shot_ids(s)) is not None]
    if used:
        ids = used[0][1]
        blocks = []
        for i, sid in enumerate(ids, 1):
            pair = texts.get(sid)
            blocks.append(
                f"shot {i} [{sid}]\nQ: {pair[0]}\nA: {pair[1]}" if pair else f"shot {i} [{sid}] (not in the examples file in service)"
            )
        differ = [f"tier {s.get('tier')}: {len(x)} shots" for s, x in used if x != ids]
        text = "\n\n".join(blocks) if blocks else "no example fitted the token budget: the prompt went unchanged"
        if differ:
            text += "\n\nother tiers got other shots: " + ", ".join(differ)
        return _node(
            nodes,
            "shots",
            "shots",
            f"prompt adaptation: {len(ids)} shot{'s' if len(ids) != 1 else ''}",
            text,
            shots=len(ids),
            shot_ids=ids,
            tiers=[s.get("tier") for s, _ in used],
            **{k: v for k, v in (settings or {}).items() if k in ("k", "layout")},
        )
    if not settings:
        return None
    return _node(
        nodes,
        "shots",
        "shots",
        f"prompt adaptation: ≤{settings.get('k')} shots (none logged)",
        f"the profile selects up to {settings.get('k')} few-shot examples per request (layout {settings.get('layout')}); no shots are "
        "logged for this request: an answer from the cache, a request with history, tools or images (not adapted), or a row "
        "logged before shots were recorded",
        **{k: v for k, v in settings.items() if k in ("k", "layout")},
    )


def request_graph(
    detail: Mapping[str, Any],
    *,
    profile: Mapping[str, Any] | None = None,
    audit: Mapping[str, Any] | None = None,
    audit_answers: Sequence[Mapping[str, Any]] = (),
    shot_texts: Mapping[str, tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """``shot_texts``: example id → (input, output) of the profile's examples file, to show each
    logged shot's text (an id not found there — the file changed since — is shown as the id alone)."""
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
    steps = list(detail.get("steps") or [])
    shots_node = _shots_node(nodes, steps, (profile or {}).get("prompt_adaptation"), shot_texts or {})
    if shots_node is not None:
        _edge(edges, last, shots_node, "adapt")
        last = shots_node
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
            shots=len(_shot_ids(s) or ()) if _shot_ids(s) is not None else None,
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
