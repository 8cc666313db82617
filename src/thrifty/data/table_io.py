"""Read and write routing tables in the shared layout.

A table is a folder holding

- ``outcomes.{jsonl,jsonl.gz,csv,csv.gz,parquet}`` — one row per (prompt, model): ``prompt_id``,
  ``model``, ``quality`` in [0, 1]; optional ``output`` (answer text), ``input_tokens``,
  ``output_tokens``, ``cost_usd`` (else cost = tokens × the model's prices);
- ``prompts.{…}`` (optional) — ``prompt_id`` and the prompt text (``instruction``/``prompt``/``text``);
  other columns (``dataset``, ``gold``, …) are kept as prompt metadata;
- ``models.{csv,jsonl,…}`` (optional) — ``model``, ``usd_per_1m_input``, ``usd_per_1m_output``;
- ``splits.json`` (optional) — ``{"folds": [[prompt_id, …], …]}``.

Every problem raises :class:`~thrifty.errors.DataError` naming the file, line and field.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from thrifty.data.rows import find_file, number_field, prompt_id_field, read_rows
from thrifty.data.table import RoutingTable
from thrifty.errors import DataError

__all__ = ["load_table", "write_table", "read_models", "write_models", "find_file", "benchmark_dir"]

PROMPT_TEXT_FIELDS = ("instruction", "prompt", "text", "query", "question")
ANSWER_FIELDS = ("output", "answer", "response", "completion")


def benchmark_dir() -> Path:
    """The shared AlpacaEval routing data: ``$THRIFTY_BENCHMARK_DIR`` or ``../shared/data/…``."""
    env = os.environ.get("THRIFTY_BENCHMARK_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for base in (Path.cwd(), *here.parents):
        cand = base.parent / "shared" / "data" / "alpaca_eval_routing"
        if cand.is_dir():
            return cand
    return Path.cwd().parent / "shared" / "data" / "alpaca_eval_routing"


def _load_models(path: Path | None) -> tuple[dict[str, tuple[float | None, float | None]], dict[str, int]]:
    prices: dict[str, tuple[float | None, float | None]] = {}
    lines: dict[str, int] = {}
    if path is None:
        return prices, lines
    for line, row in read_rows(path):
        name = row.get("model")
        if not name:
            raise DataError("missing value", file=str(path), line=line, field="model", expected="a model name")
        name = str(name)
        if name in prices:
            raise DataError(f"duplicate model {name!r} (first on line {lines[name]})", file=str(path), line=line, field="model")
        pin = number_field(row, "usd_per_1m_input", path, line, required=False, lo=0, what="a price ≥ 0 in USD per 1M tokens")
        pout = number_field(row, "usd_per_1m_output", path, line, required=False, lo=0, what="a price ≥ 0 in USD per 1M tokens")
        prices[name], lines[name] = (pin, pout), line
    return prices, lines


def _load_prompts(path: Path | None) -> tuple[list[str], list[str | None], dict[str, list], dict[str, int]]:
    ids: list[str] = []
    texts: list[str | None] = []
    meta: dict[str, list] = {}
    where: dict[str, int] = {}
    if path is None:
        return ids, texts, meta, where
    for line, row in read_rows(path):
        pid = prompt_id_field(row, path, line)
        if pid in where:
            raise DataError(f"duplicate prompt_id {pid!r} (first on line {where[pid]})", file=str(path), line=line, field="prompt_id")
        where[pid] = line
        text = next((row[k] for k in PROMPT_TEXT_FIELDS if row.get(k) is not None), None)
        if text is not None and not isinstance(text, str):
            raise DataError(f"got {type(text).__name__}", file=str(path), line=line, field="instruction", expected="text")
        ids.append(pid)
        texts.append(text)
        for k, v in row.items():
            if k == "prompt_id" or k in PROMPT_TEXT_FIELDS:
                continue
            meta.setdefault(k, [None] * (len(ids) - 1)).append(v)
        for col in meta.values():
            if len(col) < len(ids):
                col.append(None)
    return ids, texts, meta, where


def load_table(folder: str | os.PathLike, *, models: list[str] | None = None, exclude: str | None = None) -> RoutingTable:
    """Load and validate a routing table folder; optionally select the model pool."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("not a folder", file=str(folder), expected="a routing-table folder with outcomes.jsonl[.gz]")
    out_path = find_file(folder, "outcomes")
    assert out_path is not None
    prompts_path = find_file(folder, "prompts", required=False)
    models_path = find_file(folder, "models", required=False)
    prices, model_lines = _load_models(models_path)
    ids, texts, meta, _ = _load_prompts(prompts_path)
    pindex = {pid: i for i, pid in enumerate(ids)}
    known_models: dict[str, int] = {m: j for j, m in enumerate(prices)}
    model_order: list[str] = list(prices)

    cells: dict[tuple[int, int], int] = {}
    rec_p: list[int] = []
    rec_m: list[int] = []
    rec_q: list[float] = []
    rec_c: list[float] = []
    rec_in: list[float] = []
    rec_out: list[float] = []
    rec_ans: list[str | None] = []
    any_answer = False
    seen_cols: set[str] | None = None
    for line, row in read_rows(out_path):
        if seen_cols is None:
            seen_cols = set(row)
            for col in ("prompt_id", "model", "quality"):
                if col not in row:
                    raise DataError("missing column", file=str(out_path), line=line, field=col, expected=f"a '{col}' column")
        pid = prompt_id_field(row, out_path, line)
        name = row.get("model")
        if not name:
            raise DataError("missing value", file=str(out_path), line=line, field="model", expected="a model name")
        name = str(name)
        if pid not in pindex:
            if prompts_path is not None:
                raise DataError(
                    f"unknown prompt_id {pid!r}",
                    file=str(out_path),
                    line=line,
                    field="prompt_id",
                    expected=f"an id listed in {prompts_path.name}",
                )
            pindex[pid] = len(ids)
            ids.append(pid)
            texts.append(None)
        if name not in known_models:
            if models_path is not None:
                raise DataError(
                    f"unknown model {name!r}",
                    file=str(out_path),
                    line=line,
                    field="model",
                    expected=f"a model listed in {models_path.name}",
                )
            known_models[name] = len(model_order)
            model_order.append(name)
        p, m = pindex[pid], known_models[name]
        if (p, m) in cells:
            raise DataError(
                f"duplicate (prompt_id, model) = ({pid!r}, {name!r}) (first on line {cells[(p, m)]})",
                file=str(out_path),
                line=line,
                field="model",
            )
        cells[(p, m)] = line
        q = number_field(row, "quality", out_path, line, required=True, lo=0.0, hi=1.0, what="a number in [0, 1]")
        tin = number_field(row, "input_tokens", out_path, line, required=False, lo=0, what="a token count ≥ 0")
        tout = number_field(row, "output_tokens", out_path, line, required=False, lo=0, what="a token count ≥ 0")
        cost = number_field(row, "cost_usd", out_path, line, required=False, lo=0, what="a cost ≥ 0 in USD")
        if cost is None:
            pin, pout = prices.get(name, (None, None))
            if pin is None or pout is None:
                raise DataError(
                    f"model {name!r} has no price and the row has no cost_usd",
                    file=str(models_path or out_path),
                    line=model_lines.get(name, line),
                    field="usd_per_1m_input/usd_per_1m_output" if name in model_lines else "cost_usd",
                    expected="a cost_usd per row, or token counts plus the model's prices in models.csv",
                )
            if tin is None or tout is None:
                raise DataError(
                    "no cost_usd and no token counts to price the call",
                    file=str(out_path),
                    line=line,
                    field="cost_usd" if tin is not None else "input_tokens",
                    expected="cost_usd, or input_tokens and output_tokens",
                )
            cost = (tin * pin + tout * pout) / 1e6
        ans = next((row[k] for k in ANSWER_FIELDS if k in row), None)
        if ans is not None:
            if not isinstance(ans, str):
                raise DataError(f"got {type(ans).__name__}", file=str(out_path), line=line, field="output", expected="answer text")
            any_answer = True
        rec_p.append(p)
        rec_m.append(m)
        rec_q.append(q)
        rec_c.append(cost)
        rec_in.append(np.nan if tin is None else tin)
        rec_out.append(np.nan if tout is None else tout)
        rec_ans.append(ans)
    if seen_cols is None:
        raise DataError("no outcome rows", file=str(out_path), expected="at least one (prompt, model) row")

    # keep only models that have at least one outcome, in models-file order
    used = sorted(set(rec_m))
    remap = {old: new for new, old in enumerate(used)}
    names = tuple(model_order[j] for j in used)
    P, M = len(ids), len(names)
    quality = np.full((P, M), np.nan)
    cost_arr = np.full((P, M), np.nan)
    tin_arr = np.full((P, M), np.nan)
    tout_arr = np.full((P, M), np.nan)
    answers = np.full((P, M), None, dtype=object) if any_answer else None
    pr = np.asarray(rec_p)
    mr = np.asarray([remap[j] for j in rec_m])
    quality[pr, mr] = rec_q
    cost_arr[pr, mr] = rec_c
    tin_arr[pr, mr] = rec_in
    tout_arr[pr, mr] = rec_out
    if answers is not None:
        for p, m, a in zip(rec_p, mr, rec_ans):
            answers[p, m] = a
    folds = _load_folds(folder / "splits.json", pindex)
    hashed = [p for p in (out_path, prompts_path, models_path, folder / "splits.json") if p and p.exists()]
    table = RoutingTable(
        prompt_ids=tuple(ids),
        prompts=tuple(texts),
        models=names,
        quality=quality,
        cost=cost_arr,
        answers=answers,
        input_tokens=tin_arr,
        output_tokens=tout_arr,
        prices={n: prices.get(n, (None, None)) for n in names},
        folds=folds,
        prompt_meta={k: tuple(v) for k, v in meta.items()},
        source=str(folder),
        data_hash=_hash_files(hashed),
    )
    return table.select_models(models, exclude) if (models or exclude) else table


def _load_folds(path: Path, pindex: dict[str, int]) -> tuple[np.ndarray, ...] | None:
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"invalid JSON: {exc}", file=str(path)) from None
    folds = doc.get("folds") if isinstance(doc, dict) else None
    if not isinstance(folds, list) or not folds or not all(isinstance(f, list) for f in folds):
        raise DataError("no fold lists", file=str(path), field="folds", expected="a list of lists of prompt ids")
    seen: dict[str, int] = {}
    out = []
    for k, fold in enumerate(folds):
        idx = []
        for pid in fold:
            key = str(int(pid)) if isinstance(pid, float) and pid.is_integer() else str(pid)
            if key not in pindex:
                raise DataError(f"unknown prompt_id {key!r} in fold {k}", file=str(path), field="folds", expected="ids of the prompts file")
            if key in seen:
                raise DataError(
                    f"prompt_id {key!r} is in folds {seen[key]} and {k}", file=str(path), field="folds", expected="disjoint folds"
                )
            seen[key] = k
            idx.append(pindex[key])
        out.append(np.array(sorted(idx), dtype=int))
    return tuple(out)


def _hash_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def read_models(path: Path) -> dict[str, tuple[float | None, float | None]]:
    """Prices per model from a ``models.csv`` (validated: a bad value is a DataError naming its line)."""
    return _load_models(path if path.exists() else None)[0]


def write_models(path: Path, prices: dict[str, tuple[float | None, float | None]]) -> None:
    """Write ``models.csv`` (model, USD per 1M input / output tokens) atomically."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["model", "usd_per_1m_input", "usd_per_1m_output"])
    for name, (pin, pout) in prices.items():
        w.writerow([name, "" if pin is None else pin, "" if pout is None else pout])
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, path)


def write_table(table: RoutingTable, folder: str | os.PathLike) -> Path:
    """Write ``table`` in the shared layout (gzip JSONL + models.csv + splits.json when folded)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "prompts.jsonl.gz", "wt", encoding="utf-8") as fh:
        for i, pid in enumerate(table.prompt_ids):
            row: dict[str, Any] = {"prompt_id": pid, "instruction": table.prompts[i]}
            for k, col in table.prompt_meta.items():
                row[k] = col[i]
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    with gzip.open(folder / "outcomes.jsonl.gz", "wt", encoding="utf-8") as fh:
        for p, pid in enumerate(table.prompt_ids):
            for m, name in enumerate(table.models):
                if np.isnan(table.quality[p, m]):
                    continue
                row = {"prompt_id": pid, "model": name, "quality": float(table.quality[p, m]), "cost_usd": float(table.cost[p, m])}
                for key, arr in (("input_tokens", table.input_tokens), ("output_tokens", table.output_tokens)):
                    if arr is not None and not np.isnan(arr[p, m]):
                        row[key] = int(arr[p, m])
                if table.answers is not None:
                    row["output"] = table.answers[p, m]
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    write_models(folder / "models.csv", {name: table.prices.get(name, (None, None)) for name in table.models})
    if table.folds is not None:
        doc = {"folds": [[table.prompt_ids[i] for i in f] for f in table.folds]}
        (folder / "splits.json").write_text(json.dumps(doc), encoding="utf-8")
    return folder
