"""Fine-tuned MiniLM answer scorer vs the default cheap-feature scorer, held-out on AlpacaEval.

For each outer fold of ``splits.json`` (``--folds`` of the 5; fewer when CPU time is short) both
scorers are fitted on the training prompts' (query, answer) pairs of the candidate ``--models`` and
score the held-out prompts' answers:

- ``features``: the cascade's default scorer (:func:`thrifty.scoring.answer_scorer.fit_answer_scorer`,
  cheap features, per-model + shared ridge heads, Platt-calibrated);
- ``finetuned``: :func:`thrifty.scoring.finetuned.fit_finetuned` (MiniLM fine-tuned end to end
  with one output per model; ``--with-features`` also feeds it the cheap features);
- ``blend``: the mean of the two scores' within-fold ranks (no extra training).

Reported per model: Spearman correlation of held-out score with quality, pooled over the folds'
held-out prompts (out-of-fold), and the mean of the per-fold values; training seconds per fold.
``--cascade`` also runs the harness (:func:`thrifty.offline.evaluate.evaluate`) on the same folds
with ``--policy cascade`` restricted to the same candidate models, ``scorer=features``, ``blend``
and ``finetuned`` (thresholds need inner out-of-fold scores: ≈ 2× the fine-tuning time per fold;
blend and finetuned share one fine-tuning per fold), each with ``select=last`` and ``best``;
``--cascade-only`` skips the Spearman part.

Run::

    PYTHONPATH=src .venv/bin/python benchmarks/finetuned_scorer.py --folds 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

DEFAULT_MODELS = "FuseChat-Llama-3.2-3B-Instruct,FuseChat-Llama-3.1-8B-Instruct,FuseChat-Gemma-2-9B-Instruct"


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan")
    return float(spearmanr(x[ok], y[ok]).statistic)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from thrifty.data.table_io import benchmark_dir, load_table
    from thrifty.scoring.answer_scorer import fit_answer_scorer, table_inputs
    from thrifty.scoring.finetuned import FineTuneConfig, fit_finetuned, table_pairs
    from thrifty.scoring.heads import single_threaded

    table = load_table(benchmark_dir())
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    cfg = FineTuneConfig(
        epochs=args.epochs,
        max_length=args.max_length,
        batch_size=args.batch_size,
        threads=args.threads,
        features=args.with_features,
        seed=args.seed,
        max_steps=args.max_steps,
    )
    P, K = table.n_prompts, len(models)
    cols = [table.model_index(m) for m in models]
    S = {"features": np.full((P, K), np.nan), "finetuned": np.full((P, K), np.nan), "blend": np.full((P, K), np.nan)}
    folds_out = []
    out: dict[str, Any] = {"models": models, "config": cfg.__dict__, "folds_total": len(table.fold_indices()), "folds": folds_out}
    for k, train, test, rows in table.splits():
        if k >= args.folds or args.cascade_only:
            break
        t0 = time.perf_counter()
        with single_threaded():
            kw = {"inputs": "answer", "embed": "none"}
            sc, _ = fit_answer_scorer(train, table_inputs(train, models, **kw), mode="answer", embed="none", knn=0)
            S["features"][rows] = sc.score_table(table_inputs(test, models, **kw))
        t_feat = time.perf_counter() - t0
        qs, ans, names, r, c = table_pairs(train, models)
        y = np.array([train.quality[p, train.model_index(m)] for p, m in zip(r, names)])
        t0 = time.perf_counter()
        ft = fit_finetuned(qs, ans, y, names, cfg, models)
        t_ft = time.perf_counter() - t0
        t0 = time.perf_counter()
        S["finetuned"][rows] = ft.score_rows(test, models)
        t_pred = time.perf_counter() - t0
        from scipy.stats import rankdata

        for j in range(K):  # blend: mean of the two scores' within-fold ranks (no extra training)
            S["blend"][rows, j] = (rankdata(S["features"][rows, j]) + rankdata(S["finetuned"][rows, j])) / (2 * len(rows))
        Qt = test.quality[:, [test.model_index(m) for m in models]]
        per = {name: {m: spearman(S[name][rows, j], Qt[:, j]) for j, m in enumerate(models)} for name in S}
        folds_out.append(
            {
                "fold": k,
                "train_pairs": len(y),
                "features_fit_s": t_feat,
                "finetune_s": t_ft,
                "finetuned_score_s": t_pred,
                "final_loss": ft.info["final_loss"],
                "spearman": per,
            }
        )
        print(
            f"fold {k}: fine-tune {t_ft:.0f} s ({ft.info['steps']} steps, {len(y)} pairs), score {t_pred:.0f} s; features fit {t_feat:.1f} s; "
            + "; ".join(
                f"{m[:24]} feat {per['features'][m]:+.3f} ft {per['finetuned'][m]:+.3f} blend {per['blend'][m]:+.3f}" for m in models
            ),
            flush=True,
        )
        _summarise(out, S, table.quality[:, cols], models, folds_out)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(out, fh, indent=2)
    if args.cascade:
        out["cascade"] = _cascade(table, models, args)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(out, fh, indent=2)
    return out


def _summarise(out: dict[str, Any], S: dict[str, np.ndarray], Q: np.ndarray, models: list[str], folds: list[dict]) -> None:
    summary = {}
    for name, M in S.items():
        summary[name] = {
            m: {
                "oof_spearman": spearman(M[:, j], Q[:, j]),
                "mean_fold_spearman": float(np.nanmean([f["spearman"][name][m] for f in folds])),
            }
            for j, m in enumerate(models)
        }
    out["summary"] = summary
    out["folds_done"] = len(folds)
    out["mean_finetune_s_per_fold"] = float(np.mean([f["finetune_s"] for f in folds])) if folds else float("nan")


def _cascade(table, models: list[str], args: argparse.Namespace) -> dict[str, Any]:
    from thrifty.offline.cascade_policy import CascadeOffline
    from thrifty.offline.evaluate import evaluate

    sub = table.select_models(models)
    res = {}
    for scorer in ("features", "blend", "finetuned"):
        for select in ("last", "best"):
            opts = {
                "scorer": scorer,
                "select": select,
                "max_candidates": "all",
                "ft_epochs": args.epochs,
                "ft_max_length": args.max_length,
                "ft_features": args.with_features,
                "ft_max_steps": args.max_steps,
            }
            t0 = time.perf_counter()
            rep = evaluate(sub, CascadeOffline(**opts), n_boot=0)
            m = rep.metrics
            key = f"{scorer},select={select}"
            res[key] = {k: m.get(k) for k in ("quality_at_best_single_cost", "savings_at_parity", "oracle_gap_closed")} | {
                "budget_violations": len(rep.budget_violations),
                "wall_s": time.perf_counter() - t0,
            }
            print(f"cascade scorer={key}: {res[key]}", flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=DEFAULT_MODELS, help="comma list of candidate models")
    ap.add_argument("--folds", type=int, default=5, help="outer folds to run (of the table's 5)")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=None, help="cap optimiser steps (smoke runs)")
    ap.add_argument("--with-features", action="store_true", help="feed the cheap features to the fine-tuned output layer too")
    ap.add_argument("--cascade", action="store_true", help="also run the cascade harness with each scorer (slow)")
    ap.add_argument("--cascade-only", action="store_true", help="only the cascade harness (implies --cascade)")
    ap.add_argument("--json", help="write the results here (rewritten after every fold)")
    args = ap.parse_args(argv)
    args.cascade = args.cascade or args.cascade_only
    out = run(args)
    if args.cascade_only:
        return 0
    print(
        f"\nheld-out Spearman(score, quality), {out['folds_done']} of {out['folds_total']} folds"
        f" (fine-tuning {out['mean_finetune_s_per_fold']:.0f} s per fold, {args.threads} threads, max_length {args.max_length}, {args.epochs:g} epoch)"
    )
    print(
        f"{'model':34} {'features OOF':>12} {'fine-tuned OOF':>14} {'blend OOF':>9} {'features fold-mean':>18} {'fine-tuned fold-mean':>20} {'blend fold-mean':>15}"
    )
    for m in out["models"]:
        f, t, b = (out["summary"][n][m] for n in ("features", "finetuned", "blend"))
        print(
            f"{m:34} {f['oof_spearman']:>12.3f} {t['oof_spearman']:>14.3f} {b['oof_spearman']:>9.3f} {f['mean_fold_spearman']:>18.3f} {t['mean_fold_spearman']:>20.3f} {b['mean_fold_spearman']:>15.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
