"""``thrifty label DIR``: grade collected answers exactly (gold column) or with an LLM judge."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command's imports stay lazy (start-up time)
    from thrifty.calibration.label import LabelSummary

__all__ = ["register"]


def _print_summary(summary: LabelSummary, folder: str) -> None:
    print(
        f"labelled {summary.labelled} outcomes ({summary.skipped} already labelled"
        + (f", {summary.unparseable} unparseable verdicts" if summary.unparseable else "")
        + f") in {folder}"
    )
    for model, n, q in summary.table_rows():
        print(f"  {model:30s} n={n:5d}  mean quality {q:.4f}")


def run(args: argparse.Namespace) -> int:
    from thrifty.cli.collect_cmd import comma_list
    from thrifty.errors import ConfigError

    if args.ray and args.judge is None:
        raise ConfigError("--ray spreads judge calls; exact grading runs here", key="--ray", fix="drop --ray, or label with --judge MODEL")
    if (args.judge is None) == (args.match is None):
        raise ConfigError(
            "choose a grading method", key="--match/--judge", fix="pass --gold COLUMN --match exact|regex|numeric|choice, or --judge MODEL"
        )
    if args.match:
        from thrifty.calibration.label import label_folder

        summary = label_folder(args.dir, gold=args.gold, match=args.match, choices=comma_list(args.choices), tol=args.tol, force=args.force)
        _print_summary(summary, args.dir)
        return 0
    from thrifty.calibration.collect import provider_factory, resolve_providers
    from thrifty.calibration.executors import make_executor
    from thrifty.calibration.judge import judge_folder

    executor = make_executor(args.ray)  # joins the cluster now: a bad --ray fails before any work
    try:
        judge = resolve_providers([args.judge], args.config)[args.judge]
        build = provider_factory([args.judge], args.config) if args.ray else None
        summary = judge_folder(
            args.dir,
            judge,
            judge_name=args.judge,
            rubric=args.rubric,
            reference=args.reference,
            concurrency=args.concurrency,
            max_tokens=args.max_tokens,
            force=args.force,
            unparseable=args.unparseable,
            models=comma_list(args.models),
            executor=executor,
            build=build,
        )
    finally:
        executor.close()
    _print_summary(summary, args.dir)
    if summary.unparseable and args.unparseable is None:
        print(
            f"thrifty: {summary.unparseable} verdicts could not be parsed; those rows stay unlabelled "
            "(rerun with another --judge, or --unparseable 0|0.5 to fill them)",
            file=sys.stderr,
        )
        return 4
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "label",
        help="grade collected answers: exact match against gold, or an LLM judge",
        description="Write quality (and the label's provenance) into DIR/outcomes.jsonl.",
    )
    p.add_argument("dir", help="a folder written by thrifty collect")
    g = p.add_argument_group("exact grading")
    g.add_argument("--gold", default="gold", help="gold column of the prompts (default gold)")
    g.add_argument("--match", choices=["exact", "regex", "numeric", "choice"])
    g.add_argument("--choices", help="allowed answers for --match choice (default: the distinct gold values)")
    g.add_argument("--tol", type=float, default=1e-6, help="tolerance for --match numeric")
    j = p.add_argument_group("LLM judge")
    j.add_argument("--judge", help="judge model: a config provider or profile, smollm2, gemma3-270m")
    j.add_argument("--rubric", choices=["absolute", "pairwise"], default="absolute")
    j.add_argument("--reference", help="reference model for --rubric pairwise (a model in DIR)")
    j.add_argument("--models", help="only label these models (comma-separated)")
    j.add_argument("--config", help="thrifty TOML config (default: $THRIFTY_CONFIG)")
    j.add_argument("--concurrency", type=int, default=2, help="judge calls in flight (default 2; with --ray: per worker task)")
    j.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run the judge calls on a Ray cluster: HOST:PORT of its head, or auto "
        "(pip install 'thrifty[ray]'); this process still writes the labels",
    )
    j.add_argument("--max-tokens", type=int, default=16, help="judge reply budget (default 16)")
    j.add_argument("--unparseable", type=float, help="quality given to an unparseable verdict (default: leave unlabelled)")
    p.add_argument("--force", action="store_true", help="relabel rows that already have a quality")
    p.set_defaults(func=run)
