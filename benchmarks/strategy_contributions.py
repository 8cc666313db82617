"""Each FrugalGPT strategy's contribution on HEADLINES, in one joint held-out replay (issue 8, item 4).

A thin wrapper around ``thrifty eval --contributions`` (:mod:`thrifty.offline.contributions`):

1. makes sure the joint routing table ``<run>/joint`` exists and is complete —
   ``benchmarks/headlines.py`` collected SmolLM2, Gemma-3-270M (FrugalGPT's fixed 8-shot prompt) and
   the students on the sampled test headlines into ``<run>/test``; ``benchmarks/headlines_adapted.py``
   adds Gemma-3-270M with *selected* few-shot prompts as the columns ``gemma3-270m@select-B``
   (resumable: only missing answers are collected);
2. runs ``thrifty eval --contributions`` on it: the cascade over SmolLM2 → Gemma alone, + the cache
   (exact + the live semantic matcher, replayed over the held-out stream), + the prompt-adapted
   columns in the pool, + the distilled student — each fitted on the training folds and replayed
   on the held-out folds of the same table;
3. with ``--guards``, reruns the cache stage with looser lexical guards to show what they would
   serve (``thrifty eval --contributions --cache-guard G``);
4. copies the metrics JSON and the plot to ``--json`` / ``--plot``.

Run (after ``benchmarks/headlines.py --n 400 --n-teacher 300``):

    PYTHONPATH=src .venv/bin/python benchmarks/strategy_contributions.py --run runs/headlines \\
        --json docs/strategy_contributions.json --plot docs/strategy_contributions.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))


def eval_args(joint: Path, out: Path, args: argparse.Namespace, guard: str) -> list[str]:
    adapted = ",".join(f"gemma3-270m@select-{b}" for b in args.budgets)
    argv = [
        "eval",
        "--data",
        str(joint),
        "--contributions",
        "--models",
        args.base,
        "--out",
        str(out),
        "--bootstrap",
        str(args.bootstrap),
        "--folds",
        str(args.folds),
        "--seed",
        str(args.seed),
        "--cache-guard",
        guard,
        "--choices",
        "up,down,neutral,none",
        "--json",
    ]
    argv += ["--adapted", adapted] if adapted else []
    argv += ["--student", args.student] if args.student else []
    return argv


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=Path("runs/headlines"), help="run folder of benchmarks/headlines.py")
    ap.add_argument("--budgets", type=int, nargs="*", default=[40, 80], help="selected-shot token budgets (adapted columns)")
    ap.add_argument("--base", default="smollm2,gemma3-270m", help="the plain cascade's pool")
    ap.add_argument("--student", default="student-distil", help="student column(s), comma-separated")
    ap.add_argument("--guards", nargs="*", default=[], help="also replay the cache with these looser guards (lexical, off)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", type=Path)
    args = ap.parse_args(argv)

    import headlines_adapted

    if args.budgets and headlines_adapted.main(["--run", str(args.run), "--budgets", *map(str, args.budgets)]) != 0:
        return 2
    joint = args.run / "joint"
    if not (joint / "outcomes.jsonl.gz").exists():
        print(f"{joint} missing: run benchmarks/headlines_adapted.py --run {args.run}", file=sys.stderr)
        return 2

    from contextlib import redirect_stdout
    from io import StringIO

    from thrifty.cli.main import main as thrifty

    docs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for guard in ["strict", *args.guards]:
            out = Path(tmp) / guard
            buf = StringIO()
            with redirect_stdout(buf):
                rc = thrifty(eval_args(joint, out, args, guard))
            if rc != 0:
                return rc
            docs[guard] = json.loads(buf.getvalue())
            if guard == "strict" and args.plot:
                args.plot.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(out / "contributions.png", args.plot)
    doc = docs["strict"]
    doc["command"] = "thrifty " + " ".join(eval_args(joint, Path("OUT"), args, "strict"))
    doc["looser_cache_guards"] = {
        g: {"cache": d["cache"], "stage": next(s for s in d["stages"] if s["stage"] == "+ cache")} for g, d in docs.items() if g != "strict"
    }
    for g, d in doc["looser_cache_guards"].items():
        st, c = d["stage"], d["cache"]
        print(
            f"cache guard {g}: {c['semantic_hits']} semantic + {c['exact_hits']} exact hits / {c['n']}; "
            f"+ cache best point {st['best']['quality']:.3f} at ${st['best']['cost']:.3g}, "
            f"quality @ reference cost {st['quality_at_ref_cost']}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
