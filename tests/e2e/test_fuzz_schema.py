"""Schema fuzzing: schemathesis generates requests from the gateway's own OpenAPI schema.

The real gateway (uvicorn subprocess, a fast healthy upstream behind it) must never answer 5xx:
valid requests (half of them re-targeted at a model that exists, so they reach the engine and the
upstream) get 200; schema-violating ones (schemathesis' negative mode) get a 4xx whose body is
OpenAI-style ``{"error": {...}}``. Bounded: a fixed number of examples per operation and mode.
"""

from __future__ import annotations

from typing import Iterator

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="pip install 'thrifty[test]'")
from fault_upstream import FaultUpstream  # noqa: E402
from gateway_proc import GatewayProcess, read_db, toml_provider  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

pytestmark = pytest.mark.slow

EXAMPLES = {"POST /v1/chat/completions": 80}
DEFAULT_EXAMPLES = 10
MODELS = ["fast", "thrifty/default", "thrifty/pair"]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    data = tmp_path_factory.mktemp("fuzz")
    with FaultUpstream() as up, FaultUpstream(label="strong") as strong:
        cfg = (
            f'[server]\ndata_dir = "{data}"\nrequest_timeout_s = 10\nmax_body_bytes = 200000\n\n'
            + toml_provider("fast", up.base_url("normal"), timeout_s=5)
            + toml_provider("strong", strong.base_url("normal"), timeout_s=5)
            + '[profiles.default]\ntiers = ["fast"]\n\n'
            + '[profiles.pair]\ntiers = ["fast", "strong"]\nthresholds = [0.99]\n'
        )
        with GatewayProcess(cfg, data) as proc:
            yield proc


def _operations(gw: GatewayProcess) -> list:
    schema = schemathesis.openapi.from_url(gw.base_url + "/openapi.json")
    ops = [r.ok() for r in schema.get_all_operations()]
    assert any(op.method.upper() == "POST" and op.path == "/v1/chat/completions" for op in ops)
    return ops


def test_no_5xx_from_schema_fuzzing(gw: GatewayProcess) -> None:
    seen: dict[str, set[int]] = {}
    for op in _operations(gw):
        label = f"{op.method.upper()} {op.path}"
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategy = op.as_strategy(generation_mode=mode)

            @settings(
                max_examples=EXAMPLES.get(label, DEFAULT_EXAMPLES),
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy, retarget=st.sampled_from([None, *MODELS]))
            def run(case, retarget) -> None:
                if retarget and isinstance(case.body, dict) and mode is schemathesis.GenerationMode.POSITIVE:
                    case.body["model"] = retarget  # reach the engine, not just the model lookup
                response = case.call(base_url=gw.base_url, timeout=15)
                seen.setdefault(label, set()).add(response.status_code)
                assert response.status_code < 500, (
                    f"{label} [{mode.value}] → {response.status_code}: {response.text[:300]}\n{case.body!r:.500}"
                )
                if response.status_code >= 400 and op.path.startswith("/v1/"):
                    body = response.json()
                    assert isinstance(body, dict) and isinstance(body.get("error"), dict) and body["error"].get("message"), response.text[
                        :300
                    ]

            try:
                run()
            except Unsatisfiable:  # nothing to violate (an operation without parameters or body)
                assert mode is schemathesis.GenerationMode.NEGATIVE, label
    chat = seen.get("POST /v1/chat/completions", set())
    assert 200 in chat and any(400 <= s < 500 for s in chat), f"the fuzzing never reached both outcomes: {chat}"
    assert read_db(gw.db_path, "SELECT COUNT(*) FROM requests WHERE status >= 500")[0][0] == 0
    assert "Traceback" not in gw.output()
