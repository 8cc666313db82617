"""HEADLINES through the gateway's own wiring: a profile without and with ``[prompt_adaptation]``.

Where ``benchmarks/prompt_adaptation.py`` measures the pure functions (budgets in Gemma tokens), this
runs what ``thrifty serve`` runs: settings parsed from a config document, :func:`thrifty.serving.profiles.build_profile`
(``AdaptedProvider`` + ``FewShotAdapter``, budgets in approximate tokens), the Engine, and the
real Gemma-3-270M base model in ``mode = "raw"`` (llama.cpp, 1 thread, greedy). Every request is what
a FrugalGPT client sends — ``prefix_e8.txt`` + ``Q: <headline>`` / ``A:`` — and the adapted profiles
strip the 8 fixed shots (``strip_prefix``) and insert the most similar training headlines.

Reported per profile: accuracy against the gold label, prompt tokens per query as llama.cpp counted
them, mean shots and the gateway's ``tokens_saved`` estimate (approximate tokens). The 5,000 training
headlines are written to a temporary examples file (the data stays outside the repository).

    PYTHONPATH=src .venv/bin/python benchmarks/prompt_adaptation_gateway.py --n 100 --json docs/prompt_adaptation_gateway.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from prompt_adaptation import LABELS, headlines_dir, read_split  # noqa: E402

from thrifty.config.settings import parse_settings  # noqa: E402
from thrifty.serving.prompt_adapt import match_label  # noqa: E402
from thrifty.types import ChatRequest  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100, help="test headlines (seeded sample, same as prompt_adaptation.py)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budgets", type=int, nargs="*", default=[40, 80], help="budget_tokens of the adapted profiles")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from thrifty.serving.local import gemma3_path
    from thrifty.serving.profiles import build_profile, build_providers

    folder = headlines_dir()
    prefix = (folder / "prefix_e8.txt").read_text(encoding="utf-8")
    train = read_split(folder / "train.csv")
    sample = random.Random(args.seed).sample(read_split(folder / "test.csv"), args.n)
    with tempfile.TemporaryDirectory() as tmp:
        shots = Path(tmp) / "train.jsonl"
        shots.write_text("".join(json.dumps({"input": e.input, "output": e.output}) + "\n" for e in train))
        profiles: dict = {"fixed-8": {"tiers": ["gemma"]}}
        for b in args.budgets:
            profiles[f"adapted-{b}"] = {
                "tiers": ["gemma"],
                "prompt_adaptation": {
                    "examples": str(shots),
                    "strip_prefix": str(folder / "prefix_e8.txt"),
                    "layout": "text",
                    "k": 8,
                    "budget_tokens": b,
                },
            }
        settings = parse_settings(
            {
                "providers": {"gemma": {"kind": "llamacpp", "model_path": str(gemma3_path()), "mode": "raw", "max_tokens": 3}},
                "profiles": profiles,
            }
        )
        providers = build_providers(settings)
        rows = []

        async def run(name: str) -> dict:
            engine = build_profile(settings, settings.profiles[name], providers).engine
            t0, correct, tokens, shots_n, saved = time.perf_counter(), 0, 0, 0, 0
            for ex in sample:
                req = ChatRequest.from_prompt(f"{prefix}Q: {ex.input}\nA:", temperature=0, max_tokens=3, stop=["\n"])
                c = (await engine.run(req)).completion
                assert c is not None
                correct += match_label(c.text, LABELS) == ex.output
                tokens += c.usage.input_tokens
                shots_n += (c.adaptation or {}).get("shots", 0)
                saved += (c.adaptation or {}).get("tokens_saved", 0)
            return {
                "profile": name,
                "n": len(sample),
                "accuracy": correct / len(sample),
                "prompt_tokens_per_query": tokens / len(sample),
                "mean_shots": shots_n / len(sample),
                "approx_tokens_saved_per_query": saved / len(sample),
                "seconds": round(time.perf_counter() - t0, 1),
            }

        async def go() -> None:
            for name in profiles:
                rows.append(await run(name))

        asyncio.run(go())
    base = rows[0]["prompt_tokens_per_query"]
    print(f"HEADLINES via the gateway wiring, N={args.n}, Gemma-3-270M raw completion (1 thread, greedy)")
    print(f"{'profile':<12} {'acc':>6} {'prompt tok/q':>13} {'vs fixed-8':>11} {'shots':>6} {'saved (approx)':>15} {'s':>6}")
    for r in rows:
        r["prompt_tokens_vs_fixed8"] = r["prompt_tokens_per_query"] / base - 1
        print(
            f"{r['profile']:<12} {r['accuracy']:>6.3f} {r['prompt_tokens_per_query']:>13.1f} {r['prompt_tokens_vs_fixed8']:>+11.1%} "
            f"{r['mean_shots']:>6.1f} {r['approx_tokens_saved_per_query']:>15.1f} {r['seconds']:>6.1f}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"n": args.n, "seed": args.seed, "rows": rows}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
