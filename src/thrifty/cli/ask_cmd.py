"""``thrifty ask "…"``: answer one prompt through a cascade and show which tier answered and what it cost.

With no configuration this runs the embedded local default (SmolLM2-135M → Gemma-3-270M, see
:mod:`thrifty.serving.local`). With ``--config`` / ``$THRIFTY_CONFIG`` it runs ``--profile`` from that file
(or a provider name, straight through) — the same engines ``thrifty serve`` builds.

The answer goes to stdout; the tier table goes to stderr (so ``thrifty ask … > answer.txt`` keeps
only the answer). ``--json`` prints one JSON object (the trace) to stdout instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, cast

__all__ = ["register", "run"]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "ask",
        help="answer one prompt through a cascade; show tiers tried, scores, cost",
        description="Answer one prompt with the cheapest good-enough model. Without a config file this runs "
        "the embedded local cascade (SmolLM2-135M, then Gemma-3-270M).",
    )
    p.add_argument("prompt", help="the question or instruction")
    p.add_argument("--profile", default="default", help="profile (or provider name) from the config file (default: default)")
    p.add_argument("--config", metavar="PATH", help="TOML config file (default: $THRIFTY_CONFIG; none: embedded local default)")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--max-tokens", type=int, default=None, metavar="N", help="answer length limit in tokens")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--threshold", type=float, default=None, help="embedded default only: accept tier 0 when its score ≥ this")
    p.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    p.add_argument("--json", action="store_true", help="print the trace as one JSON object on stdout")
    p.set_defaults(func=run)


def _engine(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The engine to run and the profile's system prompt (None for the embedded default)."""
    from thrifty.config.settings import config_path
    from thrifty.errors import ConfigError

    path = config_path(args.config)
    if path is None:
        if args.profile != "default":
            raise ConfigError(
                f"no config file, so profile {args.profile!r} does not exist",
                key="--profile",
                fix="pass --config PATH (or set THRIFTY_CONFIG), or omit --profile",
            )
        from thrifty.serving.engine import Engine
        from thrifty.serving.local import DEFAULT_THRESHOLD, embedded_default

        threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
        from thrifty.types import Policy, Provider

        policy, providers = embedded_default(threshold=threshold)
        by_tier: dict[int | str, Provider] = dict(providers.items())
        return Engine(
            cast(Policy, policy), by_tier, name="thrifty/default"
        ), None  # CascadePolicy.tiers is a tuple; types.Policy declares a mutable Sequence attribute
    if args.threshold is not None:
        raise ConfigError(
            "--threshold applies to the embedded default only", key="--threshold", fix="set thresholds in the profile instead"
        )
    from thrifty.config.settings import load_settings
    from thrifty.gateway.build import build_routes

    routes, _providers = build_routes(load_settings(path))
    model_id = args.profile if args.profile.startswith("thrifty/") else f"thrifty/{args.profile}"
    route = routes.get(model_id) or routes.get(args.profile)
    if route is None:
        known = ", ".join(sorted(routes))
        raise ConfigError(f"unknown profile {args.profile!r}", key="--profile", fix=f"use one of: {known}")
    return route.engine, route.system


def _request(args: argparse.Namespace, system: str | None) -> Any:
    from thrifty.errors import RequestError
    from thrifty.serving.profiles import system_prompt
    from thrifty.types import ChatRequest

    if not args.prompt.strip():
        raise RequestError("the prompt is empty", param="prompt")
    params: dict[str, Any] = {}
    if args.max_tokens is not None:
        if args.max_tokens < 1:
            raise RequestError("--max-tokens must be at least 1", param="max_tokens")
        params["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        params["temperature"] = args.temperature
    messages: list[dict[str, Any]] = []
    sys_text = args.system or (system_prompt(system, args.profile) if system else None)
    if sys_text:
        messages.append({"role": "system", "content": sys_text})
    messages.append({"role": "user", "content": args.prompt})
    return ChatRequest(messages=tuple(messages), model=f"thrifty/{args.profile}", params=params)


async def _run(engine: Any, request: Any, stream: bool) -> Any:
    from thrifty.serving.trace import TextDelta, Trace

    try:
        if not stream:
            return await engine.run(request)
        trace = None
        async for event in engine.stream(request):
            if isinstance(event, TextDelta):
                sys.stdout.write(event.text)
                sys.stdout.flush()
            elif isinstance(event, Trace):
                trace = event
        sys.stdout.write("\n")
        return trace
    finally:
        await engine.aclose()


def _table(trace: Any) -> Any:
    from rich.table import Table

    table = Table(title=None, show_edge=False, pad_edge=False)
    for col, justify in (
        ("tier", "right"),
        ("model", "left"),
        ("score", "right"),
        ("τ", "right"),
        ("verdict", "left"),
        ("tok in/out", "right"),
        ("cost $", "right"),
        ("s", "right"),
    ):
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for s in trace.steps:
        answer = trace.answer_for(s.tier)
        verdict = "[red]failed[/]" if s.error else ("[green]answered[/]" if s.accepted else "[yellow]escalated[/]")
        table.add_row(
            str(s.tier),
            s.model,
            "—" if s.score is None else f"{s.score:.3f}",
            "—" if s.threshold is None else f"{s.threshold:.3f}",
            verdict,
            f"{answer.usage.input_tokens}/{answer.usage.output_tokens}" if answer else "—",
            f"{s.cost_usd:.6f}",
            f"{s.latency_s:.2f}",
        )
    return table


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    err = Console(stderr=True)
    if not err.is_terminal:
        err = Console(stderr=True, width=120)  # piped: do not squeeze the table into 80 columns
    engine, system = _engine(args)
    request = _request(args, system)
    stream = args.stream and not args.json
    trace = asyncio.run(_run(engine, request, stream))
    if args.json:
        print(json.dumps(trace.to_dict(), ensure_ascii=False))
        return 0
    if not stream:
        print(trace.completion.text)
        if trace.completion.tool_calls:
            print(json.dumps([dict(c) for c in trace.completion.tool_calls], ensure_ascii=False))
    sys.stdout.flush()  # the answer before the table, also when both go to one terminal
    err.print(_table(trace))
    err.print(
        f"answered by [bold]{trace.model}[/] (tier {trace.tier}) · tried {', '.join(trace.tiers_tried)} · "
        f"cost ${trace.cost_usd:.6f} · {trace.latency_s:.2f} s · {trace.request_id}",
        highlight=False,
    )
    for s in trace.steps:
        if s.error:
            err.print(f"[red]tier {s.tier} ({s.model}) failed:[/] {s.error}", highlight=False)
    return 0
