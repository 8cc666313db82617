"""From the gateway's logs to a fitted cascade: serve → logs export → label (LLM judge) → fit.

A real gateway process runs a two-tier local profile (SmolLM2 → Gemma-3, 1 thread each); its SQLite
log is exported as a routing table whose answers are live-scored estimates or pending; a real local
judge labels them all, and ``thrifty fit`` fits on the result.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed (pip install 'thrifty[local]')"
)

sys.path.insert(0, str(Path(__file__).parent))
from gateway_proc import GatewayProcess  # noqa: E402

QUESTIONS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "What colour is the sky on a clear day?",
    "What is 3 + 4?",
    "Name a large animal that lives in the sea.",
    "What do bees make?",
]
TOML = (
    '[providers.small]\nkind = "llamacpp"\nmodel_path = "builtin:smollm2"\nmax_tokens = 12\nprices = { input = 0.0135, output = 0.0135 }\n\n'
    '[providers.big]\nkind = "llamacpp"\nmodel_path = "builtin:gemma3"\nmode = "completion"\nmax_tokens = 12\n'
    "prices = { input = 0.027, output = 0.027 }\n\n"
    '[profiles.qa]\ntiers = ["small", "big"]\nthresholds = [0.99]\n'
)


def test_serve_export_label_fit(tmp_path, capsys):
    from thrifty.cli.main import main
    from thrifty.data.outcomes_log import OutcomeLog
    from thrifty.data.table_io import load_table

    with GatewayProcess(TOML, tmp_path / "gw") as gw:
        for q in QUESTIONS:
            r = httpx.post(
                gw.base_url + "/v1/chat/completions",
                timeout=120,
                json={"model": "thrifty/qa", "messages": [{"role": "user", "content": q}], "max_tokens": 12},
            )
            assert r.status_code == 200, r.text
        db = gw.db_path
    out = tmp_path / "export"
    assert main(["logs", "--db", str(db), "export", "--out", str(out)]) == 0
    before = OutcomeLog(out).for_labelling()
    assert len(before) >= len(QUESTIONS)  # every request answered at least at tier 0
    assert all(r.get("quality") is None or r.get("quality_source") == "score" for r in before)  # nothing judged yet

    assert main(["label", str(out), "--judge", "gemma3-270m", "--rubric", "absolute", "--concurrency", "1"]) == 0
    rows = OutcomeLog(out).outcomes()
    assert len(rows) == len(before) and not (out / "pending.jsonl.gz").exists()
    for r in rows:
        assert r["judge"] == "gemma3-270m" and r["rubric_version"] == "absolute-v1" and r["quality_source"] == "label"
        assert 0.0 <= r["quality"] <= 1.0 and r["judge_raw"]
    table = load_table(out)
    assert table.n_prompts == len(QUESTIONS) and set(table.models) <= {"small", "big"}
    assert np.isfinite(table.quality[:, table.models.index("small")]).all()  # tier 0 answered every request

    capsys.readouterr()
    assert main(["fit", "--data", str(out), "--out", str(tmp_path / "artefact"), "--json"]) == 0
    fitted = capsys.readouterr().out
    manifest = json.loads(fitted[fitted.index("{") :])
    assert manifest["data"]["n_prompts"] == len(QUESTIONS)
    assert set(manifest["selected"]["tiers"]) <= {"small", "big"}
