"""The calibration loop end to end with the real local models: collect → label (exact) → fit → eval.

Eight gold-labelled headline prompts (written for this test), SmolLM2-135M (chat) and Gemma-3-270M
(completion of a few-shot prompt), 1 thread each, answers capped at 4 tokens.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from thrifty.cli.main import main
from thrifty.data.outcomes_log import OutcomeLog
from thrifty.data.table_io import load_table

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed (pip install 'thrifty[local]')"
)

PREFIX = (
    "Say whether each headline reports the gold price going up or down.\n\n"
    "Q: gold climbs 1% as the dollar weakens\nA: up\n\nQ: gold slides to a two-week low\nA: down\n\n"
)
HEADLINES = [
    ("gold jumps $15 on safe-haven buying", "up"),
    ("gold falls as yields rise", "down"),
    ("gold hits a record high", "up"),
    ("gold drops 2% on strong jobs data", "down"),
    ("gold rallies for a third day", "up"),
    ("gold sinks below $1,800", "down"),
    ("gold edges higher in asian trade", "up"),
    ("gold tumbles as the dollar firms", "down"),
]


def test_collect_label_fit_eval(tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    with open(prompts, "w") as fh:
        for i, (h, g) in enumerate(HEADLINES):
            fh.write(json.dumps({"prompt_id": f"h{i}", "prompt": f"Q: {h}\nA:", "gold": g, "prefix": PREFIX}) + "\n")
    run = tmp_path / "run"
    rc = main(
        [
            "collect",
            "--prompts",
            str(prompts),
            "--models",
            "smollm2,gemma3-270m",
            "--out",
            str(run),
            "--max-tokens",
            "4",
            "--stop",
            "\n",
            "--concurrency",
            "2",
            "--no-progress",
            "--price",
            "smollm2=0.0135,0.0135",
            "--price",
            "gemma3-270m=0.027,0.027",
        ]
    )
    assert rc == 0, capsys.readouterr()
    rows = OutcomeLog(run).outcomes()
    assert len(rows) == 16 and all("quality" not in r for r in rows)  # unlabelled until `thrifty label`
    for r in rows:
        assert r["input_tokens"] > 20 and 0 < r["output_tokens"] <= 4
        assert r["cost_usd"] == pytest.approx(
            (r["input_tokens"] + r["output_tokens"]) * (0.0135 if r["model"] == "smollm2" else 0.027) / 1e6
        )
        assert r["latency_s"] > 0

    assert main(["label", str(run), "--gold", "gold", "--match", "choice"]) == 0
    table = load_table(run)
    assert table.models == ("smollm2", "gemma3-270m") and table.n_prompts == 8
    assert set(np.unique(table.quality)) <= {0.0, 1.0}
    labelled = OutcomeLog(run).outcomes()
    assert all(r["label_method"] == "choice" and r["label_verdict"] in ("up", "down", "") for r in labelled)
    # Gemma (a base model) continues the few-shot prompt verbatim, so each answer is a label word
    assert all(r["label_verdict"] in ("up", "down") for r in labelled if r["model"] == "gemma3-270m")
    for r in labelled:  # quality is exactly "first label word == gold"
        gold = dict((f"h{i}", g) for i, (_, g) in enumerate(HEADLINES))[r["prompt_id"]]
        assert r["quality"] == float(r["label_verdict"] == gold)

    artefact = tmp_path / "artefact"
    capsys.readouterr()
    assert main(["fit", "--data", str(run), "--out", str(artefact), "--json"]) == 0
    fitted = capsys.readouterr()
    manifest = json.loads(fitted.out[fitted.out.index("{") :]) if "{" in fitted.out else pytest.fail(f"no JSON from fit: {fitted}")
    assert manifest["data"]["n_prompts"] == 8
    assert artefact.is_dir() and any(artefact.iterdir())

    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "--data",
                str(run),
                "--policy",
                "cascade",
                "--folds",
                "4",
                "--bootstrap",
                "0",
                "--no-plots",
                "--json",
                "--out",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["data"]["n_prompts"] == 8 and set(report["pool"]) == {"smollm2", "gemma3-270m"}
    assert report["points"] and all(0.0 <= p["quality"] <= 1.0 for p in report["points"])
