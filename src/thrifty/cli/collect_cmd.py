"""``thrifty collect``: answers of several models on a prompts file → a routing-table folder."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def comma_list(text: str | None) -> list[str] | None:
    """The non-empty, stripped items of a comma-separated option (``None`` when the option is absent)."""
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


def _prices(specs: list[str]) -> dict[str, tuple[float | None, float | None]]:
    import math

    from thrifty.errors import ConfigError

    out: dict[str, tuple[float | None, float | None]] = {}
    for spec in specs:
        name, _, val = spec.partition("=")
        try:
            pin, pout = (float(x) for x in val.split(","))
        except ValueError:
            raise ConfigError(
                f"bad price {spec!r}", key="--price", fix="write MODEL=IN,OUT in USD per 1M tokens, e.g. smollm2=0.01,0.02"
            ) from None
        if not name.strip() or not (math.isfinite(pin) and math.isfinite(pout)) or pin < 0 or pout < 0:
            raise ConfigError(f"bad price {spec!r}", key="--price", fix="write MODEL=IN,OUT with finite prices ≥ 0")
        if name.strip() in out:
            raise ConfigError(f"model {name.strip()!r} is priced twice", key="--price", fix="give each model one --price")
        out[name.strip()] = (pin, pout)
    return out


def _params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {"temperature": args.temperature}
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens
    if args.stop:
        params["stop"] = args.stop
    if args.seed is not None:
        params["seed"] = args.seed
    return params


def run(args: argparse.Namespace) -> int:
    from thrifty.calibration.executors import make_executor
    from thrifty.errors import ConfigError

    models = comma_list(args.models)
    if not models:
        raise ConfigError("no models given", key="--models", fix="pass --models a,b,c")
    executor = make_executor(args.ray)  # joins the cluster now: a bad --ray fails before any work
    try:
        return _collect(args, models, executor)
    finally:
        executor.close()


def _collect(args: argparse.Namespace, models: list[str], executor: Any) -> int:
    from pathlib import Path

    from thrifty.calibration.collect import collect, provider_factory, resolve_providers
    from thrifty.data.prompts_file import read_prompts
    from thrifty.errors import DataError

    prices = _prices(args.price or [])
    prefix = None
    if args.prefix_file:
        try:
            prefix = Path(args.prefix_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(
                f"cannot read the prefix file: {getattr(exc, 'strerror', None) or exc}",
                file=args.prefix_file,
                expected="a UTF-8 text file (the few-shot block prepended to every prompt)",
            ) from None
    items = read_prompts(args.prompts, prefix=prefix, template=args.template, limit=args.limit)
    grader = None
    if args.grade:
        from thrifty.calibration.label import make_grader

        grader = make_grader(args.grade, choices=comma_list(args.choices), golds=[it.meta.get(args.gold) for it in items])
    providers = resolve_providers(models, args.config)
    build = provider_factory(models, args.config) if args.ray else None
    res = collect(
        items,
        providers,
        args.out,
        params=_params(args),
        concurrency=args.concurrency,
        retries=args.retries,
        prices=prices,
        grader=grader,
        gold=args.gold,
        progress=not args.no_progress and sys.stderr.isatty(),
        executor=executor,
        build=build,
    )
    print(f"collected {res.answered} answers in {res.seconds:.1f}s ({res.skipped} pairs already done, {res.failed} failed) → {args.out}")
    for model, st in res.per_model.items():
        n = int(st["n"])
        print(f"  {model:30s} n={n:5d}  mean latency {st['latency_s'] / n:.3f}s  total cost ${st['cost_usd']:.6f}")
    if res.failed:
        for e in res.errors[:5]:
            print(f"  error: {e}", file=sys.stderr)
        print(f"thrifty: {res.failed} pairs failed (see {args.out}/errors.jsonl); rerun the same command to retry them", file=sys.stderr)
        return 5
    if not args.grade:
        print(f"next: thrifty label {args.out} --gold gold --match exact   (or --judge MODEL)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "collect",
        help="run prompts through several models into a routing-table folder (resumable)",
        description="Answer every (prompt, model) pair not yet in --out; rerunning resumes where it stopped.",
    )
    p.add_argument("--prompts", required=True, help="JSONL or CSV with prompt_id, prompt, optional gold/prefix/template/system")
    p.add_argument("--models", required=True, help="comma-separated: config providers or profiles, smollm2, gemma3-270m, student:PATH")
    p.add_argument("--out", required=True, help="output folder (a routing table; created or resumed)")
    p.add_argument("--config", help="thrifty TOML config (default: $THRIFTY_CONFIG)")
    p.add_argument("--concurrency", type=int, default=4, help="calls in flight at once (default 4; with --ray: per worker task)")
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run the calls on a Ray cluster: HOST:PORT of its head, or auto "
        "(pip install 'thrifty[ray]'); this process still writes the folder",
    )
    p.add_argument("--retries", type=int, default=3, help="retries of a retryable provider error (default 3)")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--stop", action="append", help="stop sequence (repeatable)")
    p.add_argument("--seed", type=int)
    p.add_argument("--prefix-file", help="text file prepended to every prompt that has no prefix of its own (few-shot block)")
    p.add_argument("--template", help="format applied to every prompt without its own, with a {prompt} placeholder")
    p.add_argument("--limit", type=int, help="only the first N prompts")
    p.add_argument("--price", action="append", metavar="MODEL=IN,OUT", help="USD per 1M tokens; overrides the provider's cost (repeatable)")
    p.add_argument("--grade", choices=["exact", "regex", "numeric", "choice"], help="grade inline against --gold (writes quality)")
    p.add_argument("--gold", default="gold", help="gold column for --grade (default gold)")
    p.add_argument("--choices", help="allowed answers for --grade choice (default: the distinct gold values)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
