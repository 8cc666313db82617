"""Prompt adaptation on HEADLINES with the real local Gemma-3-270M base model (issue 8, item 2).

Conditions, all greedy completions through in-process llama.cpp (1 thread), N test headlines
(seeded sample of ``test.csv``), scored against the gold label:

- ``fixed-8``          FrugalGPT's 8-shot prefix (``prefix_e8.txt``) + the query — the baseline;
- ``zero-shot``        the instruction line only;
- ``select-B``         k <= 8 shots chosen from ``train.csv`` by MiniLM similarity to the query under a
                       budget of B prompt tokens for the shots (Gemma tokenizer), most similar last;
- ``concat-n``         n headlines per prompt (``thrifty.serving.prompt_adapt.batch_prompt``), the 8 prefix
                       examples as numbered demonstration batches; unparsed answers re-asked one by
                       one (those calls are counted).

Reported per condition: accuracy, prompt + completion tokens per query, tokens saved versus
``fixed-8`` and the USD per 1k queries at a reference price (``--price-in/--price-out``, USD per 1M
tokens; default: gpt-4o-mini's 0.15/0.60).

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/prompt_adaptation.py --n 200 --json results/prompt_adaptation.json``
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from thrifty.serving.prompt_adapt import Example, ShotSelector, complete_batched, few_shot_prompt, match_label  # noqa: E402
from thrifty.types import ChatRequest, Completion, Usage  # noqa: E402

LABELS = ("up", "down", "neutral", "none")


def headlines_dir() -> Path:
    from thrifty.data.table_io import benchmark_dir

    return benchmark_dir().parent / "headlines"


def headline(text: str) -> str:
    """``"Q: <headline>\\nA:"`` → ``<headline>``."""
    t = text.strip()
    t = t[2:] if t.startswith("Q:") else t
    t = t.rstrip()
    return (t[:-2] if t.endswith("A:") else t).strip()


def read_split(path: Path) -> list[Example]:
    """Rows ``"Q: <headline>\\nA:", label, id`` → Example(headline, label)."""
    with path.open(encoding="utf-8", newline="") as fh:
        return [Example(headline(row[0]), row[1].strip()) for row in csv.reader(fh) if len(row) >= 2]


def parse_prefix(text: str) -> tuple[str, list[Example]]:
    """Instruction line and examples of ``prefix_e8.txt``."""
    blocks = [b.strip() for b in text.strip().split("\n\n") if b.strip()]
    shots = []
    for b in blocks[1:]:
        q, a = b.split("\n", 1)
        shots.append(Example(q.removeprefix("Q:").strip(), a.removeprefix("A:").strip()))
    return blocks[0], shots


class GemmaCompletion:
    """The Gemma base model in completion mode as a Provider (prompt = the user message)."""

    name = "gemma-3-270m"

    def __init__(self, n_ctx: int = 2048) -> None:
        from llama_cpp import Llama

        from thrifty.serving.local import gemma3_path

        self.llm = Llama(str(gemma3_path()), n_ctx=n_ctx, n_threads=1, n_threads_batch=1, verbose=False, seed=0)
        self.calls = 0

    def tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    async def complete(self, request: ChatRequest) -> Completion:
        p = request.params
        t0 = time.perf_counter()
        out = self.llm.create_completion(
            request.prompt_text,
            max_tokens=int(p.get("max_tokens", 4)),
            temperature=0.0,
            stop=list(p.get("stop", ["\n"])),
        )
        self.calls += 1
        usage = out.get("usage", {})
        return Completion(
            text=out["choices"][0]["text"],
            model=self.name,
            usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
            latency_s=time.perf_counter() - t0,
            finish_reason=out["choices"][0].get("finish_reason") or "stop",
        )


@dataclass
class Row:
    condition: str
    n: int
    correct: int
    prompt_tokens: int
    completion_tokens: int
    calls: int
    seconds: float
    unparsed: int = 0

    def as_dict(self, base: "Row | None", price_in: float, price_out: float) -> dict:
        per_q_in, per_q_out = self.prompt_tokens / self.n, self.completion_tokens / self.n
        d = {
            "condition": self.condition,
            "n": self.n,
            "accuracy": self.correct / self.n,
            "prompt_tokens_per_query": per_q_in,
            "completion_tokens_per_query": per_q_out,
            "calls": self.calls,
            "unparsed_batch_answers": self.unparsed,
            "seconds": round(self.seconds, 1),
            "usd_per_1k_queries": 1000 * (per_q_in * price_in + per_q_out * price_out) / 1e6,
        }
        if base is not None:
            tot, base_tot = per_q_in + per_q_out, (base.prompt_tokens + base.completion_tokens) / base.n
            d["tokens_saved_vs_fixed8"] = 1 - tot / base_tot
            d["accuracy_change_vs_fixed8"] = d["accuracy"] - base.correct / base.n
        return d


async def run_single(model: GemmaCompletion, name: str, prompts: list[str], gold: list[str]) -> Row:
    t0 = time.perf_counter()
    row = Row(name, len(prompts), 0, 0, 0, 0, 0.0)
    for prompt, g in zip(prompts, gold):
        c = await model.complete(ChatRequest.from_prompt(prompt, max_tokens=3, stop=["\n"]))
        row.correct += match_label(c.text, LABELS) == g
        row.prompt_tokens += c.usage.input_tokens
        row.completion_tokens += c.usage.output_tokens
        row.calls += 1
    row.seconds = time.perf_counter() - t0
    return row


async def run_concat(model: GemmaCompletion, size: int, instruction: str, shots: list[Example], queries: list[str], gold: list[str]) -> Row:
    demos = [shots[i : i + size] for i in range(0, len(shots), size)]
    t0 = time.perf_counter()
    answers, paid = await complete_batched(model, instruction, queries, size=size, shots=demos, labels=LABELS)
    batches = (len(queries) + size - 1) // size
    row = Row(
        f"concat-{size}",
        len(queries),
        sum(a == g for a, g in zip(answers, gold)),
        sum(c.usage.input_tokens for c in paid),
        sum(c.usage.output_tokens for c in paid),
        len(paid),
        time.perf_counter() - t0,
        unparsed=len(paid) - batches,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="test headlines (seeded sample)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budgets", type=int, nargs="*", default=[40, 80, 120], help="shot token budgets for select-B")
    ap.add_argument("--concat", type=int, nargs="*", default=[4, 8])
    ap.add_argument("--price-in", type=float, default=0.15)
    ap.add_argument("--price-out", type=float, default=0.60)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    folder = headlines_dir()
    instruction, prefix_shots = parse_prefix((folder / "prefix_e8.txt").read_text(encoding="utf-8"))
    prefix_text = (folder / "prefix_e8.txt").read_text(encoding="utf-8")
    test = read_split(folder / "test.csv")
    train = read_split(folder / "train.csv")
    sample = random.Random(args.seed).sample(test, args.n)
    queries, gold = [e.input for e in sample], [e.output for e in sample]

    from thrifty.scoring.embedding import get_embedder

    t0 = time.time()
    emb = get_embedder()
    train_vecs = emb.embed([e.input for e in train])
    query_vecs = emb.embed(queries)
    embed_s = time.time() - t0
    model = GemmaCompletion()
    selector = ShotSelector(train, emb.embed, count_tokens=model.tokens, vectors=train_vecs)
    prefix_shot_tokens = model.tokens(prefix_text) - model.tokens(instruction)

    rows: list[Row] = []
    selected_k: dict[str, float] = {}

    async def go() -> None:
        rows.append(await run_single(model, "fixed-8", [prefix_text + f"Q: {q}\nA:" for q in queries], gold))
        rows.append(await run_single(model, "zero-shot", [few_shot_prompt(instruction, [], q) for q in queries], gold))
        for budget in args.budgets:
            picks = [selector.select(q, 8, budget, query_vector=v) for q, v in zip(queries, query_vecs)]
            selected_k[f"select-{budget}"] = sum(map(len, picks)) / len(picks)
            prompts = [few_shot_prompt(instruction, p, q) for p, q in zip(picks, queries)]
            rows.append(await run_single(model, f"select-{budget}", prompts, gold))
        for size in args.concat:
            rows.append(await run_concat(model, size, instruction, prefix_shots, queries, gold))

    asyncio.run(go())
    base = rows[0]
    result = {
        "n": args.n,
        "seed": args.seed,
        "model": "gemma-3-270m Q4_K_M (base), llama.cpp n_threads=1, greedy",
        "prefix_shot_tokens": prefix_shot_tokens,
        "embedding_seconds": round(embed_s, 1),
        "price_usd_per_1m": {"input": args.price_in, "output": args.price_out},
        "rows": [
            r.as_dict(base if r is not base else None, args.price_in, args.price_out)
            | ({"mean_shots": selected_k[r.condition]} if r.condition in selected_k else {})
            for r in rows
        ],
    }
    print(f"HEADLINES prompt adaptation, N={args.n} test headlines, Gemma-3-270M base (8-shot prefix shots = {prefix_shot_tokens} tokens)")
    print(f"{'condition':<12} {'acc':>6} {'Δacc':>7} {'in tok/q':>9} {'out tok/q':>9} {'saved':>7} {'$/1k q':>8} {'calls':>6} {'s':>6}")
    for d in result["rows"]:
        print(
            f"{d['condition']:<12} {d['accuracy']:>6.3f} {d.get('accuracy_change_vs_fixed8', 0):>+7.3f} {d['prompt_tokens_per_query']:>9.1f} {d['completion_tokens_per_query']:>9.1f} {d.get('tokens_saved_vs_fixed8', 0):>7.1%} {d['usd_per_1k_queries']:>8.4f} {d['calls']:>6} {d['seconds']:>6.1f}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
