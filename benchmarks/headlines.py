"""HEADLINES, the worked example of calibrating thrifty on your own traffic (FrugalGPT's dataset).

What it does, end to end, with the real local models on the CPU (1 thread each):

1. samples ``--n`` headlines of the HEADLINES *test* split (and ``--n-teacher`` of the *train* split),
   and writes them as a prompts file with FrugalGPT's 8-shot prefix;
2. trains two embedding-classifier students (MiniLM + logistic regression): ``student-gold`` on all
   5,000 gold-labelled training headlines, and ``student-distil`` on the teacher's (Gemma-3-270M's)
   answers to the ``--n-teacher`` sampled training headlines — distillation without gold;
3. ``collect``s SmolLM2-135M-Instruct (chat), Gemma-3-270M (raw completion of the 8-shot prompt) and
   both students on the test sample, with real token counts and latencies;
4. ``label``s every answer exactly against gold (the first label word of the answer);
5. evaluates held-out with the harness (k-fold: fit the cascade on 4/5, replay on 1/5): the cascade
   over the two LLMs, and over LLMs + students;
6. prints the table, writes JSON (``--json``) and a plot (``--plot``).

Costs: local models cost nothing per token, so the table prices them notionally at USD 0.10 per 1M
tokens per billion parameters (SmolLM2 0.0135, Gemma 0.027 USD per 1M tokens, input and output);
the students cost 0 (no tokens). The data (CC BY-NC) stays in ../shared; the run folder
(``runs/headlines``) is outside git. Rerunning resumes: answered pairs are skipped.

    PYTHONPATH=src .venv/bin/python benchmarks/headlines.py --n 300 --json docs/headlines.json --plot docs/headlines.png
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PRICES = {"smollm2": (0.0135, 0.0135), "gemma3-270m": (0.027, 0.027)}  # notional USD per 1M tokens
LABELS = ("up", "down", "neutral", "none")


def data_dir() -> Path:
    env = os.environ.get("THRIFTY_HEADLINES_DIR")
    if env:
        return Path(env)
    from thrifty.data.table_io import benchmark_dir

    return benchmark_dir().parent / "headlines"


def read_split(path: Path) -> list[tuple[str, str, str]]:
    """(query, gold, id) rows of a HEADLINES CSV (no header)."""
    with open(path, encoding="utf-8", newline="") as fh:
        return [(q, g.strip(), i) for q, g, i in csv.reader(fh)]


def write_prompts(path: Path, rows: list[tuple[str, str, str]], prefix: str, tag: str) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for q, g, i in rows:
            fh.write(json.dumps({"prompt_id": f"{tag}{i}", "prompt": q, "gold": g, "prefix": prefix}) + "\n")
    return path


def step(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300, help="test headlines to collect (default 300)")
    ap.add_argument("--n-teacher", type=int, default=200, help="train headlines answered by the teacher for the distilled student")
    ap.add_argument("--n-gold-train", type=int, default=5000, help="gold-labelled train headlines for student-gold (default all 5,000)")
    ap.add_argument("--teacher", default="gemma3-270m")
    ap.add_argument("--out", default="runs/headlines", help="run folder (outside git)")
    ap.add_argument("--json", help="write the results JSON here")
    ap.add_argument("--plot", help="write the plot PNG here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=6)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--noise", type=float, nargs="*", default=[0.0, 0.1, 0.2, 0.3], help="label-noise levels for the sensitivity study")
    args = ap.parse_args(argv)

    from thrifty.calibration.collect import collect, resolve_providers
    from thrifty.calibration.label import label_folder
    from thrifty.calibration.student import student_data, train_student
    from thrifty.data.prompts_file import read_prompts
    from thrifty.data.table_io import load_table

    src = data_dir()
    if not (src / "test.csv").exists():
        print(f"HEADLINES data not found in {src} (set THRIFTY_HEADLINES_DIR)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prefix = (src / "prefix_e8.txt").read_text(encoding="utf-8")
    train, test = read_split(src / "train.csv"), read_split(src / "test.csv")
    rng = np.random.default_rng(args.seed)
    test_s = [test[i] for i in sorted(rng.choice(len(test), size=args.n, replace=False))]
    train_s = [train[i] for i in sorted(rng.choice(len(train), size=args.n_teacher, replace=False))]
    params = {"temperature": 0.0, "max_tokens": args.max_tokens, "stop": ["\n\n", "\nQ:"]}
    timings: dict[str, float] = {}

    # 1. the gold student: the gold-labelled training headlines
    t0 = time.perf_counter()
    gold_train = train[: args.n_gold_train]
    step(f"training student-gold on {len(gold_train)} gold-labelled training headlines (MiniLM embeddings are cached)")
    sg = train_student(
        [q for q, _, _ in gold_train],
        [g for _, g, _ in gold_train],
        c=4.0,
        prefix=prefix,
        meta={"source": "gold:HEADLINES train", "n": len(gold_train)},
    )
    sg.save(out / "student-gold.json")
    timings["student_gold_train_s"] = time.perf_counter() - t0

    # 2. the distilled student: the teacher's answers on a training sample (no gold used)
    t0 = time.perf_counter()
    step(f"collecting teacher {args.teacher} on {len(train_s)} training headlines")
    tr_items = read_prompts(write_prompts(out / "train_prompts.jsonl", train_s, prefix, "tr"))
    teacher = resolve_providers([args.teacher])
    res = collect(
        tr_items, teacher, out / "train", params=params, concurrency=1, prices={m: PRICES[m] for m in teacher}, progress=sys.stderr.isatty()
    )
    timings["teacher_collect_s"] = res.seconds
    xs, ys, info = student_data(out / "train", teacher=args.teacher, choices=LABELS)
    sd = train_student(xs, ys, c=4.0, prefix=prefix, meta={"source": f"teacher:{args.teacher}", "n": len(xs)})
    sd.save(out / "student-distil.json")
    timings["student_distil_total_s"] = time.perf_counter() - t0

    # 3. collect every tier on the test sample
    step(f"collecting {len(test_s)} test headlines × (smollm2, gemma3-270m, 2 students)")
    te_items = read_prompts(write_prompts(out / "test_prompts.jsonl", test_s, prefix, "te"))
    providers = resolve_providers(["smollm2", "gemma3-270m"])
    from thrifty.calibration.student import Student, StudentProvider

    providers["student-gold"] = StudentProvider(Student.load(out / "student-gold.json"), name="student-gold")
    providers["student-distil"] = StudentProvider(Student.load(out / "student-distil.json"), name="student-distil")
    res = collect(
        te_items, providers, out / "test", params=params, concurrency=args.concurrency, prices=PRICES, progress=sys.stderr.isatty()
    )
    timings["test_collect_s"] = res.seconds
    if res.failed:
        step(f"{res.failed} pairs failed: {res.errors[:3]} — rerun to retry")

    # 4. label exactly: the first label word of each answer against gold
    summary = label_folder(out / "test", gold="gold", match="choice", choices=LABELS)
    step(f"labelled {summary.labelled} answers")
    table = load_table(out / "test")
    rows = OutcomeRows(out / "test")

    # 5. held-out evaluation with the harness
    from thrifty.offline.evaluate import evaluate

    reports = {}
    for name, pool in (
        ("cascade (LLMs only)", ["smollm2", "gemma3-270m"]),
        ("cascade (LLMs + distilled student)", ["student-distil", "smollm2", "gemma3-270m"]),
        ("cascade (LLMs + both students)", list(table.models)),
    ):
        t0 = time.perf_counter()
        sub = table.select_models(pool)
        try:
            rep = evaluate(sub, "cascade", n_folds=args.folds, seed=args.seed, progress=False, n_boot=0)
            reports[name] = rep.to_json()
        except Exception as exc:  # noqa: BLE001 - report what exists, do not hide it
            reports[name] = {"error": f"{type(exc).__name__}: {exc}"}
        timings[f"eval {name} s"] = time.perf_counter() - t0

    # 6. judge-noise sensitivity: fit on training labels flipped with probability p, replay on clean labels
    from thrifty.offline.noise import NoisyLabels
    from thrifty.offline.registry import get_policy

    noise_pool = ["student-distil", "smollm2", "gemma3-270m"]
    noise = []
    for p in args.noise:
        rep = evaluate(
            table.select_models(noise_pool),
            NoisyLabels(get_policy("cascade"), p, seed=args.seed) if p else "cascade",
            n_folds=args.folds,
            seed=args.seed,
            progress=False,
            n_boot=0,
        ).to_json()
        pts = _front(rep)
        noise.append(
            {
                "p": p,
                "quality_at_best_single_cost": rep.get("quality_at_best_single_cost"),
                "best_point": max(pts, key=lambda cq: (cq[1], -cq[0])) if pts else None,
            }
        )
        step(f"label noise p={p}: held-out accuracy at Gemma's cost {_fmt(noise[-1]['quality_at_best_single_cost'])}")
    reports_noise = {"pool": noise_pool, "points": noise}
    timings["teacher_collect_wall_s"] = collection_wall_s(out / "train")  # from row timestamps: stable across resumes
    timings["test_collect_wall_s"] = collection_wall_s(out / "test")
    result = summarise(table, rows, reports, args, timings, sd, sg)
    result["label_noise"] = reports_noise
    print_table(result)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    if args.plot:
        plot(result, args.plot)
    return 0


def collection_wall_s(folder: Path) -> float:
    """Seconds from the first to the last collected answer in ``folder`` (row timestamps)."""
    from datetime import datetime

    from thrifty.data.outcomes_log import OutcomeLog

    stamps = sorted(datetime.fromisoformat(r["collected_at"]) for r in OutcomeLog(folder).outcomes())
    return (stamps[-1] - stamps[0]).total_seconds() if stamps else 0.0


class OutcomeRows:
    """Per-model latency and parse rate from the collected rows (not part of the routing table)."""

    def __init__(self, folder: Path) -> None:
        from thrifty.data.outcomes_log import OutcomeLog

        self.rows = OutcomeLog(folder).outcomes()

    def per_model(self) -> dict[str, dict[str, float]]:
        acc: dict[str, list[dict]] = {}
        for r in self.rows:
            acc.setdefault(r["model"], []).append(r)
        return {
            m: {
                "latency_s": float(np.mean([r["latency_s"] for r in rs])),
                "parsed": float(np.mean([bool(r.get("label_verdict")) for r in rs])),
                "output_tokens": float(np.mean([r["output_tokens"] for r in rs])),
                "input_tokens": float(np.mean([r["input_tokens"] for r in rs])),
            }
            for m, rs in acc.items()
        }


def _front(rep: dict) -> list[tuple[float, float]]:
    """The held-out operating points (mean cost, accuracy) of a harness report, cheapest first."""
    return sorted((float(p["cost"]), float(p["quality"])) for p in rep.get("points", []))


def summarise(table, rows: OutcomeRows, reports: dict, args, timings: dict, sd, sg) -> dict:  # type: ignore[no-untyped-def]
    per = rows.per_model()
    tiers = []
    for s in table.model_stats():
        tiers.append(
            {
                "model": s.model,
                "n": s.n,
                "accuracy": round(s.quality, 4),
                "mean_cost_usd": s.cost,
                **{k: round(v, 4) for k, v in per.get(s.model, {}).items()},
            }
        )
    teacher = args.teacher
    fidelity = None
    if teacher in table.models and "student-distil" in table.models and table.answers is not None:
        from thrifty.calibration.label import parse_choice

        j, k = table.models.index(teacher), table.models.index("student-distil")
        agree = [parse_choice(table.answers[p, j] or "", LABELS) == table.answers[p, k] for p in range(table.n_prompts)]
        fidelity = round(float(np.mean(agree)), 4)
    return {
        "dataset": "HEADLINES (FrugalGPT; gold-price news headlines → up/down/neutral/none)",
        "n_test": table.n_prompts,
        "n_teacher_train": args.n_teacher,
        "seed": args.seed,
        "folds": args.folds,
        "prices_usd_per_1m_tokens": PRICES,
        "tiers": tiers,
        "student_distil": {"teacher": teacher, "n_train": sd.meta.get("n"), "agreement_with_teacher_on_test": fidelity},
        "student_gold": {"n_train": sg.meta.get("n")},
        "cascades": reports,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"HEADLINES, {result['n_test']} test headlines (held-out)")
    for col in ("tier", "accuracy", "mean cost (USD)", "latency (s)", "parsed"):
        t.add_column(col)
    for r in result["tiers"]:
        t.add_row(
            r["model"],
            f"{r['accuracy']:.3f}",
            f"{r['mean_cost_usd']:.3g}",
            f"{r.get('latency_s', float('nan')):.3f}",
            f"{r.get('parsed', float('nan')):.2f}",
        )
    Console(stderr=False).print(t)
    for name, rep in result["cascades"].items():
        if "error" in rep:
            print(f"{name}: {rep['error']}")
            continue
        best = rep["best_single"]
        print(
            f"{name}: best single {best['model']} (accuracy {best['quality']:.3f} at ${best['cost']:.3g}); held-out cascade "
            f"accuracy at that cost {_fmt(rep.get('quality_at_best_single_cost'))}, savings at parity {_fmt(rep.get('savings_at_parity'))}, "
            f"oracle gap closed {_fmt(rep.get('oracle_gap_closed'))}"
        )
        pts = _front(rep)
        if pts:
            top = max(pts, key=lambda cq: (cq[1], -cq[0]))
            print(f"    best held-out point: accuracy {top[1]:.3f} at ${top[0]:.3g}/query ({len(pts)} operating points)")

    ln = result.get("label_noise")
    if ln:
        print(
            f"label noise (pool {', '.join(ln['pool'])}): "
            + "; ".join(f"p={pt['p']:g} → accuracy at Gemma's cost {_fmt(pt['quality_at_best_single_cost'])}" for pt in ln["points"])
        )


def _fmt(x: object) -> str:  # noqa: D103
    return f"{x:.3f}" if isinstance(x, (int, float)) else str(x)


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for r in result["tiers"]:
        c = r["mean_cost_usd"] * 1e6
        ax.scatter([c], [r["accuracy"]], s=45, zorder=3, color="black" if "student" not in r["model"] else "tab:green")
        ax.annotate(r["model"], (c, r["accuracy"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    for name, rep in result["cascades"].items():
        pts = _front(rep)
        if pts:
            ax.plot([c * 1e6 for c, _ in pts], [q for _, q in pts], marker=".", ms=4, label=f"{name}, held-out")
    ax.set_xlabel("mean cost per query (µUSD; notional local prices, students cost 0)")
    ax.set_ylabel("accuracy vs gold")
    ax.set_title(f"HEADLINES: {result['n_test']} test headlines, local models on 1 CPU thread", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper right", bbox_to_anchor=(1.0, 0.72))
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
