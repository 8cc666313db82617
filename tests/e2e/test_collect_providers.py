"""``thrifty collect`` through configured providers and profiles over real HTTP (fault-injecting upstream):
retries of transient failures, failures recorded and retried on the next run, tokens and cost recorded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from thrifty.cli.main import main
from thrifty.data.outcomes_log import OutcomeLog

sys.path.insert(0, str(Path(__file__).parent))
from fault_upstream import FaultUpstream  # noqa: E402
from gateway_proc import toml_provider  # noqa: E402


def _provider(name: str, url: str) -> str:
    return toml_provider(name, url, model=f"m-{name}", timeout_s=5)


def test_collect_over_http_with_retries_failures_and_a_profile(tmp_path, capsys):
    prompts = tmp_path / "p.csv"
    prompts.write_text("prompt_id,prompt,gold\n" + "".join(f"q{i},question {i},x\n" for i in range(4)))
    with FaultUpstream() as up:
        cfg = tmp_path / "thrifty.toml"
        body = (
            _provider("ok", up.base_url("normal"))
            + _provider("flaky", up.base_url("flaky2-503"))
            + _provider("broken", up.base_url("500"))
            + '[profiles.duo]\ntiers = ["ok", "flaky"]\nthresholds = [0.5]\n'
        )
        cfg.write_text(body)
        out = tmp_path / "run"
        args = [
            "collect",
            "--prompts",
            str(prompts),
            "--models",
            "ok,flaky,broken,duo",
            "--out",
            str(out),
            "--config",
            str(cfg),
            "--concurrency",
            "4",
            "--retries",
            "2",
            "--no-progress",
        ]
        assert main(args) == 5  # the broken provider's pairs failed after retries
        err = capsys.readouterr().err
        assert "4 pairs failed" in err and "rerun the same command" in err
        rows = OutcomeLog(out).outcomes()
        assert {(r["model"]) for r in rows} == {"ok", "flaky", "duo"} and len(rows) == 12
        assert up.calls["flaky2-503"] >= 4 + 2  # the two injected 503s were retried, every flaky pair answered
        for r in rows:
            assert (r["input_tokens"], r["output_tokens"]) == (10, 5)
            assert r["cost_usd"] == pytest.approx((10 * 1.0 + 5 * 2.0) / 1e6)
            assert r["output"].startswith("answer from")
        errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
        assert {e["model"] for e in errors} == {"broken"} and len(errors) == 4 and "500" in errors[0]["error"]

        # the upstream is fixed: rerunning answers only the failed pairs
        cfg.write_text(body.replace(up.base_url("500"), up.base_url("normal")))
        before = dict(up.calls)
        assert main(args) == 0
        assert "collected 4 answers" in capsys.readouterr().out
        assert up.calls["normal"] - before.get("normal", 0) == 4  # nothing else was called again
        assert len(OutcomeLog(out).done_pairs()) == 16
    assert main(["label", str(out), "--gold", "gold", "--match", "exact"]) == 0
