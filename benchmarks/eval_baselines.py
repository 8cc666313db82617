"""Wall time of ``thrifty eval`` with the baseline policies on the full shared benchmark (805 × 56).

Runs the real CLI in a fresh interpreter (imports, loading, 5-fold fit/replay, bootstrap, plots,
metrics.json — everything a user waits for) for ``oracle``, ``random`` and ``single:<best model>``,
each alone and all three side by side, on the pool ``all`` and ``--exclude FuseChat``. Target: each
run < 20 s. Prints a table and writes JSON (``--json PATH``).

    python benchmarks/eval_baselines.py [--data DIR] [--json results/eval_baselines.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 20.0


def run_eval(data: str, policies: list[str], exclude: str | None, out: Path) -> tuple[float, dict]:
    argv = [
        sys.executable,
        "-c",
        "import sys; from thrifty.cli.main import main; sys.exit(main())",
        "eval",
        "--data",
        data,
        "--out",
        str(out),
        "--json",
    ]
    for p in policies:
        argv += ["--policy", p]
    if exclude:
        argv += ["--exclude", exclude]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"thrifty eval failed ({proc.returncode}):\n{proc.stderr}")
    return wall, json.loads(proc.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="routing-table folder (default: the shared benchmark)")
    ap.add_argument("--json", default=str(ROOT / "results" / "eval_baselines.json"), help="where to write the JSON results")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from rich.console import Console
    from rich.table import Table

    from thrifty.data.table_io import benchmark_dir, load_table

    data = args.data or str(benchmark_dir())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pool, exclude in (("all", None), ("no-fusechat", "FuseChat")):
            best = load_table(data, exclude=exclude).best_single().model
            runs = [["oracle"], ["random"], [f"single:{best}"], ["oracle", "random", f"single:{best}"]]
            for i, pols in enumerate(runs):
                wall, doc = run_eval(data, pols, exclude, Path(tmp) / f"{pool}-{i}")
                docs = doc["policies"] if "policies" in doc else [doc]
                for d in docs:
                    rows.append(
                        {
                            "pool": pool,
                            "run": "+".join(pols),
                            "wall_s": wall,
                            "policy": d["policy"],
                            "n_prompts": d["data"]["n_prompts"],
                            "n_models": len(d["pool"]),
                            "best_single": d["best_single"],
                            "quality_at_best_single_cost": d["quality_at_best_single_cost"],
                            "savings_at_parity": d["savings_at_parity"],
                            "oracle_gap_closed": d["oracle_gap_closed"],
                            "aiq": d["aiq"],
                            "hull_quality_at_best_single_cost": d["hull_quality_at_best_single_cost"],
                            "oracle_quality_at_best_single_cost": d["oracle_quality_at_best_single_cost"],
                            "ci95": d["ci95"],
                            "timing": d["timing"],
                        }
                    )
    t = Table(title=f"thrifty eval wall time (target < {TARGET_S:.0f} s per run)")
    for c in ("pool", "run", "policy", "wall s", "q @ best cost", "savings", "gap closed", "oracle q @ best cost"):
        t.add_column(c)

    def f(x, pct=False):
        return "—" if x is None else (f"{100 * x:.1f}%" if pct else f"{x:.4f}")

    for r in rows:
        t.add_row(
            r["pool"],
            r["run"],
            r["policy"],
            f"{r['wall_s']:.2f}",
            f(r["quality_at_best_single_cost"]),
            f(r["savings_at_parity"], True),
            f(r["oracle_gap_closed"], True),
            f(r["oracle_quality_at_best_single_cost"]),
        )
    Console(width=160).print(t)
    worst = max(r["wall_s"] for r in rows)
    print(f"slowest run: {worst:.2f} s ({'OK' if worst < TARGET_S else 'OVER'} the {TARGET_S:.0f} s target)")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"target_s": TARGET_S, "slowest_s": worst, "python": sys.version.split()[0], "runs": rows}, indent=1), encoding="utf-8"
    )
    print(f"wrote {out}")
    return 0 if worst < TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
