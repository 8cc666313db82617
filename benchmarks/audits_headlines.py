"""Sampled audits on HEADLINES through the real gateway: what the audit report says, and how it
compares with the gold labels the gateway never sees.

Starts ``thrifty serve`` on the embedded local tiers (SmolLM2-135M chat → Gemma-3-270M raw 8-shot
completion, 1 llama.cpp thread each, answers capped at 3 tokens, ``--threshold`` on the heuristic score), sends ``--n`` test headlines
(sampled with ``--seed``, FrugalGPT's 8-shot prompt) one at a time, first with audits off
(``rate = 0``) and then on (``rate = 1``, ``match:agree`` with the four labels, reference Gemma),
and reports: the audit report's figures, the served answers' accuracy against gold, the share of
SmolLM2 answers that agree with Gemma vs that are right, and the client latency with audits off/on.

    PYTHONPATH=src .venv/bin/python benchmarks/audits_headlines.py --n 40 --json results/audits_headlines.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.measure import git_commit
from harness.servers import start_serve, stop

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

CHOICES = ["up", "down", "neutral", "none"]


def _config(data_dir: Path, rate: float, threshold: float) -> str:
    from thrifty.serving.local import gemma3_path, smollm2_path

    return (
        f'[server]\ndata_dir = "{data_dir}"\nrequest_timeout_s = 120\n\n'
        f'[providers.smollm2]\nkind = "llamacpp"\nmodel_path = "{smollm2_path()}"\nmode = "chat"\nmax_tokens = 3\n'
        "prices = { input = 0.0135, output = 0.0135 }\noptions = { n_ctx = 1024 }\n\n"
        f'[providers.gemma]\nkind = "llamacpp"\nmodel_path = "{gemma3_path()}"\nmode = "raw"\nmax_tokens = 3\n'
        "prices = { input = 0.027, output = 0.027 }\noptions = { n_ctx = 1024 }\n\n"
        f'[profiles.headlines]\ntiers = ["smollm2", "gemma"]\nthresholds = [{threshold}]\n\n'
        f'[profiles.headlines.audit]\nrate = {rate}\njudge = "match:agree"\nchoices = {json.dumps(CHOICES)}\n'
    )


def _run(items: list[tuple[str, str]], prefix: str, rate: float, work: Path, threshold: float) -> dict:
    import httpx

    from thrifty.calibration.audit import agree_key
    from thrifty.calibration.audit_report import audit_report
    from thrifty.store.logs import LogStore

    data = work / f"rate{rate:g}"
    proc, port = start_serve(data, _config(data, rate, threshold), timeout=300)
    base = f"http://127.0.0.1:{port}"
    try:
        latency, rids = [], []
        with httpx.Client(timeout=120) as client:
            for query, _ in items:
                t0 = time.perf_counter()
                r = client.post(
                    base + "/v1/chat/completions",
                    json={"model": "thrifty/headlines", "messages": [{"role": "user", "content": prefix + query}]},
                )
                latency.append(time.perf_counter() - t0)
                r.raise_for_status()
                rids.append(r.headers["x-thrifty-request-id"])
        t_sent = time.perf_counter()
        store = LogStore(data / "logs.sqlite3")
        if rate > 0:
            while store.iter_rows("SELECT COUNT(*) FROM audits WHERE status IN ('pending')")[0][0] and time.perf_counter() - t_sent < 600:
                time.sleep(0.5)
        drain_s = time.perf_counter() - t_sent
        gold = dict(zip(rids, (g for _, g in items)))
        served = {r["id"]: r["answer"] for r in store.iter_rows("SELECT id, answer FROM requests")}
        out = {
            "rate": rate,
            "n": len(items),
            "latency_p50_s": statistics.median(latency),
            "latency_p90_s": statistics.quantiles(latency, n=10)[-1],
            "served_accuracy": sum(agree_key(served[r], CHOICES) == gold[r] for r in rids) / len(rids),
        }
        if rate > 0:
            out["audits_drained_s_after_last_answer"] = drain_s
            rep = audit_report(store, "headlines")["profiles"]["headlines"]
            out["report"] = rep
            ans = {
                (r["request_id"], r["model"]): r["answer"] for r in store.iter_rows("SELECT request_id, model, answer FROM audit_answers")
            }
            for m in ("smollm2", "gemma"):
                out[f"{m}_accuracy"] = sum(agree_key(ans[(r, m)], CHOICES) == gold[r] for r in rids) / len(rids)
            agree = [agree_key(ans[(r, "smollm2")], CHOICES) == agree_key(ans[(r, "gemma")], CHOICES) for r in rids]
            right = [agree_key(ans[(r, "smollm2")], CHOICES) == gold[r] for r in rids]
            out["smollm2_agrees_with_gemma"] = sum(agree) / len(rids)
            out["smollm2_agreement_when_right"] = sum(a for a, ok in zip(agree, right) if ok) / max(1, sum(right))
        store.close()
        return out
    finally:
        stop(proc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", help="the HEADLINES folder (default $THRIFTY_HEADLINES_DIR, else next to the benchmark data)")
    ap.add_argument(
        "--threshold",
        type=float,
        default=0.2,
        help="cascade threshold on SmolLM2's heuristic score (default 0.2: SmolLM2's short answers score 0.3, so it serves"
        " them all and the audits must call Gemma; 0.75, the embedded default, escalates every one)",
    )
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    from thrifty.data.table_io import benchmark_dir

    data = Path(args.data or os.environ.get("THRIFTY_HEADLINES_DIR") or benchmark_dir().parent / "headlines")
    with open(data / "test.csv", newline="") as fh:
        rows = [(q, g) for q, g, _ in csv.reader(fh)]
    items = random.Random(args.seed).sample(rows, args.n)
    prefix = (data / "prefix_e8.txt").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        off = _run(items, prefix, 0.0, Path(tmp), args.threshold)
        on = _run(items, prefix, 1.0, Path(tmp), args.threshold)
    rep = on["report"]
    pct = lambda s, k: f"{100 * s[k]:.1f}% [{100 * s['low']:.1f}, {100 * s['high']:.1f}]"  # noqa: E731
    print(
        f"HEADLINES, {args.n} test headlines (seed {args.seed}), SmolLM2 → Gemma (threshold {args.threshold:g}), audits match:agree at rate 1 (reference Gemma)"
    )
    print(f"  served answers agreeing with Gemma (audit report): {pct(rep['served'], 'share')}")
    print(f"  saving against always calling Gemma:               {pct(rep['saving'], 'saving')}")
    print(f"  audit spend / serving spend:                       {100 * rep['audit_spend_share']:.1f}%")
    print(
        f"  accuracy vs gold — served {on['served_accuracy']:.3f}, SmolLM2 {on['smollm2_accuracy']:.3f}, Gemma {on['gemma_accuracy']:.3f}"
    )
    print(
        f"  SmolLM2 agrees with Gemma on {100 * on['smollm2_agrees_with_gemma']:.1f}% ({100 * on['smollm2_agreement_when_right']:.1f}% where SmolLM2 is right)"
    )
    print(
        f"  client latency p50 / p90: audits off {off['latency_p50_s']:.3f} / {off['latency_p90_s']:.3f} s,"
        f" on {on['latency_p50_s']:.3f} / {on['latency_p90_s']:.3f} s; audits drained {on['audits_drained_s_after_last_answer']:.1f} s after the last answer"
    )
    if args.json:
        commit = git_commit()
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                {"commit": commit, "n": args.n, "seed": args.seed, "threshold": args.threshold, "audits_off": off, "audits_on": on},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
