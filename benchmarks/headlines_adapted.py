"""Prompt-adapted columns for the HEADLINES routing table (input of ``thrifty eval --contributions``).

``benchmarks/headlines.py`` collects SmolLM2, Gemma-3-270M (FrugalGPT's fixed 8-shot prefix) and two
students on a seeded sample of HEADLINES test headlines into ``<run>/test``. This script adds, for
the same headlines, Gemma-3-270M answering a *prompt-adapted* request — the instruction plus the
training examples most similar to the headline that fit a budget of ``B`` prompt tokens
(:class:`thrifty.serving.prompt_adapt.ShotSelector`, MiniLM similarity, Gemma's tokenizer) — as one more
model column named ``gemma3-270m@select-B`` with its real token counts, notional cost and exact label.
It then writes the joint table ``<run>/joint`` (every column of ``<run>/test`` plus the adapted
ones, one row per headline), on which one held-out replay measures every strategy together.

Collection is resumable (answered pairs are skipped), runs Gemma on 1 llama.cpp thread, and the
outputs (answers of our own local models to HEADLINES prompts) stay outside git, under ``--run``.

    PYTHONPATH=src .venv/bin/python benchmarks/headlines_adapted.py --run runs/headlines --budgets 40 80
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

LABELS = ("up", "down", "neutral", "none")
PRICE = 0.027  # notional USD per 1M tokens for Gemma-3-270M, as in benchmarks/headlines.py
PARAMS = {"temperature": 0.0, "max_tokens": 6, "stop": ["\n\n", "\nQ:"]}


def adapted_items(test_dir: Path, data: Path, budget: int, count_tokens) -> list:  # type: ignore[no-untyped-def]
    """One :class:`PromptItem` per collected test headline: instruction + selected shots + query."""
    from prompt_adaptation import headline, parse_prefix, read_split

    from thrifty.data.prompts_file import PromptItem
    from thrifty.scoring.embedding import get_embedder
    from thrifty.serving.prompt_adapt import ShotSelector, few_shot_prompt

    instruction, _ = parse_prefix((data / "prefix_e8.txt").read_text(encoding="utf-8"))
    pool = read_split(data / "train.csv")
    rows = [json.loads(line) for line in (test_dir / "prompts.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    queries = [headline(r["instruction"]) for r in rows]
    emb = get_embedder()
    selector = ShotSelector(pool, emb.embed, count_tokens=count_tokens, vectors=np.asarray(emb.embed([e.input for e in pool])))
    qv = np.asarray(emb.embed(queries))
    return [
        PromptItem(r["prompt_id"], few_shot_prompt(instruction, selector.select(q, 8, budget, query_vector=v), q), meta={"gold": r["gold"]})
        for r, q, v in zip(rows, queries, qv)
    ]


def join_columns(base, extra):  # type: ignore[no-untyped-def]
    """``base`` with ``extra``'s model columns appended (rows matched by prompt id; missing → NaN)."""
    row = {pid: i for i, pid in enumerate(extra.prompt_ids)}
    idx = np.array([row.get(pid, -1) for pid in base.prompt_ids])

    def cols(arr, fill):  # type: ignore[no-untyped-def]
        out = np.full((base.n_prompts, extra.n_models), fill, dtype=arr.dtype)
        out[idx >= 0] = arr[idx[idx >= 0]]
        return out

    def cat(a, b, fill):  # type: ignore[no-untyped-def]
        return None if a is None or b is None else np.concatenate([a, cols(b, fill)], axis=1)

    return replace(
        base,
        models=base.models + extra.models,
        quality=cat(base.quality, extra.quality, np.nan),
        cost=cat(base.cost, extra.cost, np.nan),
        answers=cat(base.answers, extra.answers, None),
        input_tokens=cat(base.input_tokens, extra.input_tokens, np.nan),
        output_tokens=cat(base.output_tokens, extra.output_tokens, np.nan),
        prices={**base.prices, **extra.prices},
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=Path("runs/headlines"), help="run folder of benchmarks/headlines.py")
    ap.add_argument("--budgets", type=int, nargs="+", default=[40, 80], help="shot token budgets (one column each)")
    args = ap.parse_args(argv)

    from headlines import data_dir
    from llama_cpp import Llama

    from thrifty.calibration.collect import builtin_local, collect
    from thrifty.calibration.label import make_grader
    from thrifty.data.table_io import load_table, write_table
    from thrifty.serving.local import gemma3_path

    test_dir = args.run / "test"
    if not (test_dir / "prompts.jsonl").exists():
        print(f"{test_dir} has no prompts.jsonl: run benchmarks/headlines.py --out {args.run} first", file=sys.stderr)
        return 2
    vocab = Llama(str(gemma3_path()), vocab_only=True, verbose=False)

    def count_tokens(text: str) -> int:
        return len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    gemma = builtin_local("gemma3-270m")
    grader = make_grader("choice", choices=LABELS)
    joint = load_table(test_dir)
    for budget in args.budgets:
        name = f"gemma3-270m@select-{budget}"
        items = adapted_items(test_dir, data_dir(), budget, count_tokens)
        out = args.run / f"adapted-{budget}"
        t0 = time.perf_counter()
        res = collect(
            items,
            {name: gemma},
            out,
            params=PARAMS,
            concurrency=1,
            prices={name: (PRICE, PRICE)},
            grader=grader,
            progress=sys.stderr.isatty(),
        )
        print(
            f"{name}: {res.answered} answered, {res.skipped} already there, {res.failed} failed, {time.perf_counter() - t0:.0f} s",
            file=sys.stderr,
        )
        joint = join_columns(joint, load_table(out))
    write_table(joint, args.run / "joint")
    for s in joint.model_stats():
        print(f"{s.model:<24} n={s.n:<4} accuracy {s.quality:.3f}  mean cost ${s.cost:.3g}")
    print(f"wrote {args.run / 'joint'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
