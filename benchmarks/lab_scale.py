"""Lab scale: how long the router / hybrid fit + 5-fold held-out evaluation takes on large tables.

Synthetic tables with a stated structure (no data set is copied or needed):

- every prompt has a latent topic t ∈ {0..31} and a latent difficulty d ~ N(0, 1); its text is a
  few words drawn from its topic's 40-word vocabulary plus shared filler words (length 8–120 words);
- its embedding (for the "once embedded" runs) is normalise(centroid[t] + 0.8·noise + 0.3·d·u), so
  the topic — and a little of the difficulty — is readable from it;
- model m has a skill s_m (evenly spaced in [-1, 1.5]), a topic affinity a[m, t] ~ N(0, 0.6²) and a
  price per call c_m log-spaced over 30× (per prompt × a log-normal length factor);
- 2-model tables: binary correctness ~ Bernoulli(σ(s_m − d + a[m, t])) (a "correct?" table);
  20-model tables: graded quality = σ(s_m − d + a[m, t] + N(0, 0.5²)) (a judge-score table);
- answers: short texts whose length grows with the quality (so answer features carry signal).

Runs (each a fresh process is not needed: every run builds its own table):

- ``100k x 2``, ``20k x 20``: router (``mf``) and hybrid fit + 5-fold evaluation with the prompt
  embeddings precomputed (the "once embedded" case: an embedder that looks vectors up);
- ``14k x 2 cold``: the same router evaluation through the real static embedder, from an empty
  embedding cache (``THRIFTY_CACHE_DIR`` a fresh folder) and no distilled token table: the rows
  the prompts need are distilled on the way (``--reuse-static``: reuse this machine's table);
- embedding throughput of the static embedder and (if installed) MiniLM through torch.

    PYTHONPATH=src python benchmarks/lab_scale.py [--runs 100k2,20k20,14k2cold,embed] [--policies router,hybrid]
        [--json results/lab_scale.json] [--profile out.prof]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N_TOPICS, VOCAB_PER_TOPIC, DIM = 32, 40, 384
_FILLER = (
    "the a of to and in for on with as by is be it this that please can you how what why which about "
    "explain write describe give list make tell me my your our an or not from at"
).split()


def _words(rng: np.random.Generator) -> list[list[str]]:
    syll = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "si", "pe", "du", "ga", "zo"]
    out = []
    for t in range(N_TOPICS):
        out.append(["".join(rng.choice(syll, size=3)) + str(t) for _ in range(VOCAB_PER_TOPIC)])
    return out


def synthetic_table(n: int, m: int, *, graded: bool, seed: int = 0, answers: bool = True):
    """A RoutingTable of ``n`` prompts × ``m`` models with the structure of the module docstring,
    and the (n, 384) float32 embedding of each prompt."""
    from thrifty.data.table import RoutingTable

    rng = np.random.default_rng(seed)
    vocab = _words(rng)
    topic = rng.integers(0, N_TOPICS, n)
    diff = rng.normal(0, 1, n)
    n_words = np.clip(rng.lognormal(3.0, 0.6, n).astype(int), 8, 120)
    filler = np.array(_FILLER)
    prompts = []
    for i in range(n):
        k = n_words[i]
        tw = rng.choice(vocab[topic[i]], size=max(2, k // 3))
        fw = filler[rng.integers(0, len(filler), k - len(tw))]
        words = np.concatenate([tw, fw])
        rng.shuffle(words)
        prompts.append(f"q{i} " + " ".join(words) + ("?" if i % 3 == 0 else "."))
    centroids = rng.normal(0, 1, (N_TOPICS, DIM))
    u = rng.normal(0, 1, DIM)
    emb = centroids[topic] + 0.8 * rng.normal(0, 1, (n, DIM)) * np.sqrt(1.0 / 1.0) + 0.3 * diff[:, None] * u[None, :]
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)

    skill = np.linspace(-1.0, 1.5, m)
    affinity = rng.normal(0, 0.6, (m, N_TOPICS))
    price = np.logspace(np.log10(2e-4), np.log10(6e-3), m)
    logit = skill[None, :] - diff[:, None] + affinity[:, topic].T
    if graded:
        quality = 1 / (1 + np.exp(-(logit + rng.normal(0, 0.5, (n, m)))))
    else:
        quality = (rng.random((n, m)) < 1 / (1 + np.exp(-logit))).astype(float)
    length = rng.lognormal(0, 0.3, (n, 1))
    cost = price[None, :] * length * (1 + 0.1 * rng.random((n, m)))
    ans = None
    if answers:
        ans = np.empty((n, m), dtype=object)
        n_ans = np.clip((20 + 60 * quality + rng.normal(0, 10, (n, m))).astype(int), 1, 200)
        for i in range(n):
            for j in range(m):
                ans[i, j] = " ".join(filler[(i + j + np.arange(n_ans[i, j])) % len(filler)])
    table = RoutingTable(
        tuple(f"p{i}" for i in range(n)),
        tuple(prompts),
        tuple(f"model-{j}" for j in range(m)),
        quality,
        cost,
        answers=ans,
        source=f"synthetic:{n}x{m}:{'graded' if graded else 'binary'}",
    )
    return table, emb


class LookupEmbedder:
    """The "already embedded" case: vectors precomputed for every prompt text, looked up by text."""

    name, dim = "lookup", DIM

    def __init__(self, texts, emb) -> None:
        self._row = {t: i for i, t in enumerate(texts)}
        self._emb = emb

    def embed(self, texts):
        return self._emb[[self._row.get(t or "", 0) for t in texts]]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_s(who: int = resource.RUSAGE_SELF) -> float:
    """User + system CPU seconds of this process (or of its waited-for children): unlike wall time,
    hardly moved by the other jobs on a shared machine."""
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def run_policy(table, emb, policy: str, progress: bool) -> dict:
    from thrifty.offline.evaluate import evaluate

    embedder = LookupEmbedder(table.prompts, emb)
    opts = {"embedder": embedder}
    if policy == "hybrid":
        opts["embed"] = "none"  # the answer scorer's cheap features (the cascade's measured default)
    t0, c0 = time.perf_counter(), _cpu_s()
    rep = evaluate(table, policy, options=opts, progress=progress, n_boot=50)
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    m = rep.metrics
    return {
        "policy": policy,
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "timing": {k: round(v, 2) for k, v in rep.timing.items()},
        "quality_at_best_single_cost": m["quality_at_best_single_cost"],
        "oracle_gap_closed": m["oracle_gap_closed"],
        "best_single_quality": rep.best_single.quality,
        "max_rss_mb": round(_rss_mb()),
    }


def _real_texts(path: str, n: int) -> list[str]:
    """``n`` distinct texts from the first column of the CSV files at ``path`` (a file or a folder,
    e.g. HEADLINES' train.csv + test.csv): real vocabulary for the cold run's embedding. When the
    files hold fewer, the rest are two of them joined ("A / B"), still only real words."""
    import csv

    files = sorted(Path(path).glob("*.csv")) if Path(path).is_dir() else [Path(path)]
    seen: dict[str, None] = {}
    for f in files:
        with f.open(newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                text = row[0].strip() if row else ""
                if text and text not in seen:
                    seen[text] = None
    texts = list(seen)
    if not texts:
        raise SystemExit(f"--cold-text {path}: no texts in the first column")
    k = len(texts)
    out, i = texts[:n], 0
    while len(out) < n:
        out.append(f"{texts[i % k]} / {texts[(7 * i + 1) % k]}")
        i += 1
    return out


def run_cold(n: int, progress: bool, reuse_static: bool = False, text_from: str | None = None) -> dict:
    """14k × 2 router evaluation end to end through the CLI, static embedder, empty embedding cache
    and (unless ``reuse_static``) no distilled token table: the rows the prompts need are distilled
    on the way (:mod:`thrifty.scoring.static_embedding`)."""
    import tempfile

    from thrifty.data.table_io import write_table

    table, _ = synthetic_table(n, 2, graded=False, seed=3, answers=False)
    if text_from:  # the same outcomes, real prompt texts: the token table rows real vocabulary needs
        table = dataclasses.replace(table, prompts=tuple(_real_texts(text_from, n)), source=f"{table.source}+text:{text_from}")
    tmp = Path(tempfile.mkdtemp(prefix="lab_scale_"))
    path = tmp / "table"
    write_table(table, path)
    env = dict(os.environ, THRIFTY_CACHE_DIR=str(tmp / "cache"), PYTHONPATH=os.environ.get("PYTHONPATH", "src"))
    static = Path(_default_cache()) / "static_minilm_v1.npy"
    reused = reuse_static and static.exists()
    if reused:  # the distilled token table is per machine, not per table: reuse it (stated in the JSON)
        (tmp / "cache").mkdir()
        os.symlink(static, tmp / "cache" / "static_minilm_v1.npy")
    cmd = [
        sys.executable,
        "-m",
        "thrifty",
        "eval",
        "--data",
        str(path),
        "--policy",
        "router",
        "--opt",
        "embedder=static",
        "--no-plots",
        "--out",
        str(tmp / "out"),
        "--json",
    ]
    t0, c0 = time.perf_counter(), _cpu_s(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=None if progress else subprocess.PIPE, text=True)
    wall, cpu = time.perf_counter() - t0, _cpu_s(resource.RUSAGE_CHILDREN) - c0
    if proc.returncode != 0:
        raise SystemExit(f"cold run failed: {proc.stderr or ''}")
    partial = tmp / "cache" / "static_minilm_v1.partial.npz"
    rows = int(np.load(partial)["done"].sum()) if partial.exists() else None
    doc = json.loads(proc.stdout)
    doc = doc[0] if isinstance(doc, list) else doc.get("policies", [doc])[0] if "policies" in doc else doc
    return {
        "run": f"{n // 1000}k x 2 cold" + (" (real text)" if text_from else ""),
        "prompt_text": text_from or "synthetic",
        "command": " ".join(cmd[1:]),
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0),
        "static_table_reused": reused,
        "static_rows_distilled": rows,
        "quality_at_best_single_cost": doc.get("quality_at_best_single_cost"),
    }


def _default_cache() -> str:
    from thrifty.scoring.embedding import cache_dir

    return str(cache_dir())


def run_embed(n: int) -> list[dict]:
    table, _ = synthetic_table(n, 2, graded=False, seed=5, answers=False)
    texts = list(table.prompts)
    out = []
    from thrifty.scoring.static_embedding import StaticMiniLMEmbedder

    kinds = [("static", StaticMiniLMEmbedder)]
    try:
        import sentence_transformers  # noqa: F401

        from thrifty.scoring.embedding import MiniLMEmbedder

        kinds.append(("minilm-torch", MiniLMEmbedder))
    except ImportError:
        pass
    for name, cls in kinds:
        e = cls()
        e.embed(texts[:8])  # load outside the timing
        k = n if name == "static" else min(n, 1000)
        t0, c0 = time.perf_counter(), _cpu_s()
        e.embed(texts[:k])
        dt, cpu = time.perf_counter() - t0, _cpu_s() - c0
        out.append({"embedder": name, "prompts": k, "seconds": round(dt, 2), "cpu_seconds": round(cpu, 2), "prompts_per_s": round(k / dt)})
    return out


RUNS = {"100k2": (100_000, 2, False), "20k20": (20_000, 20, True), "14k2": (14_000, 2, False)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="100k2,20k20,14k2cold,embed")
    ap.add_argument("--policies", default="router,hybrid")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every table size (smoke runs)")
    ap.add_argument("--json", default="results/lab_scale.json")
    ap.add_argument("--profile", default=None, help="write a cProfile of the fit runs here")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--reuse-static", action="store_true", help="14k2cold: reuse this machine's distilled token table")
    ap.add_argument("--cold-text", default=None, help="14k2cold: real prompt texts from this CSV file or folder (first column)")
    args = ap.parse_args()
    rows: list[dict] = []
    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
    for run in args.runs.split(","):
        if run in RUNS:
            n, m, graded = RUNS[run]
            n = int(n * args.scale)
            t0 = time.perf_counter()
            table, emb = synthetic_table(n, m, graded=graded, seed=1)
            built = time.perf_counter() - t0
            for pol in args.policies.split(","):
                if prof:
                    prof.enable()
                r = run_policy(table, emb, pol, args.progress)
                if prof:
                    prof.disable()
                r.update(run=f"{n} x {m}", table_build_s=round(built, 1), load_average=os.getloadavg())
                rows.append(r)
                print(
                    f"{r['run']:>12} {pol:>7}: {r['seconds']:7.1f} s wall, {r['cpu_seconds']:7.1f} s CPU  (fit+replay {r['timing']['fit_replay_s']:.1f} s)  "
                    f"q@best={r['quality_at_best_single_cost']:.3f}  rss={r['max_rss_mb']:.0f} MB",
                    flush=True,
                )
        elif run == "14k2cold":
            r = run_cold(int(14_000 * args.scale), args.progress, args.reuse_static, args.cold_text)
            r["load_average"] = os.getloadavg()
            rows.append(r)
            print(f"{r['run']:>12}  router: {r['seconds']:7.1f} s wall, {r['cpu_seconds']:.1f} s CPU end to end", flush=True)
        elif run == "embed":
            for r in run_embed(int(5000 * args.scale)):
                rows.append({"run": "embedding", **r})
                print(f"{'embedding':>12} {r['embedder']:>12}: {r['prompts_per_s']} prompts/s", flush=True)
        else:
            raise SystemExit(f"unknown run {run!r}")
    if prof:
        prof.dump_stats(args.profile)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    doc = {"commit": commit, "cpus": os.cpu_count(), "load_average_at_end": os.getloadavg(), "rows": rows}
    Path(args.json).write_text(json.dumps(doc, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
