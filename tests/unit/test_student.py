"""The distilled student tier: trains on embeddings, round-trips its artefact, serves as a Provider."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("sklearn")

from thrifty.calibration.student import Student, StudentProvider, export_finetune, student_data, train_student  # noqa: E402
from thrifty.data.outcomes_log import OutcomeLog  # noqa: E402
from thrifty.data.prompts_file import render_prompt  # noqa: E402
from thrifty.errors import ConfigError, DataError  # noqa: E402
from thrifty.types import ChatRequest  # noqa: E402

UP = [
    "gold rises 2% on weak dollar",
    "gold climbs to record high",
    "gold prices surge as investors seek safety",
    "gold jumps $20 an ounce",
    "bullion gains on inflation fears",
    "gold futures end the week higher",
]
DOWN = [
    "gold falls 2% as dollar strengthens",
    "gold slips to three-week low",
    "gold prices drop on profit taking",
    "gold tumbles $30 an ounce",
    "bullion loses ground as yields rise",
    "gold futures end the week lower",
]
PREFIX = "Classify the direction.\n\n"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("THRIFTY_CACHE_DIR", str(tmp_path / "cache"))
    import thrifty.scoring.embedding as emb

    monkeypatch.setattr(emb, "_DEFAULT", {})


def _folder(tmp_path):
    log = OutcomeLog(tmp_path / "f")
    texts = [f"Q: {t}\nA:" for t in UP + DOWN]
    golds = ["up"] * len(UP) + ["down"] * len(DOWN)
    log.merge_prompts([{"prompt_id": str(i), "instruction": t, "gold": g, "prefix": PREFIX} for i, (t, g) in enumerate(zip(texts, golds))])
    for i, g in enumerate(golds):  # the teacher is right except on prompt 0; prompt 1's answer has no label word
        ans = {0: " down", 1: " unsure"}.get(i, f" {g}\n")
        log.append({"prompt_id": str(i), "model": "teacher", "output": ans, "cost_usd": 1e-5, "quality": float(ans.strip() == g)})
    log.close()
    return tmp_path / "f", texts, golds


def test_train_save_load_and_serve(tmp_path):
    folder, texts, golds = _folder(tmp_path)
    xs, ys, info = student_data(folder, teacher="teacher")
    assert len(xs) == len(texts) - 1 and info["unparsed_dropped"] == 1
    assert ys[0] == "down"  # the teacher's label, not gold
    assert info["prefix"] == PREFIX
    student = train_student(xs, ys, c=10.0, prefix=info["prefix"], meta={"source": info["source"]})
    assert student.classes == ("down", "up")
    path = student.save(tmp_path / "s.json")
    assert path.stat().st_size < 50_000
    loaded = Student.load(path)
    assert np.allclose(loaded.predict_proba(["gold soars"]), student.predict_proba(["gold soars"]), atol=1e-4)
    prov = StudentProvider(loaded, name="student")
    # the request carries the few-shot prefix; the student strips it and answers with a label + confidence
    req = ChatRequest.from_prompt(render_prompt("Q: gold prices rally to a six-month high\nA:", PREFIX), model="student", max_tokens=3)
    comp = asyncio.run(prov.complete(req))
    assert comp.text == "up" and comp.cost_usd == 0.0
    assert 0.5 < comp.raw["confidence"] <= 1.0 and set(comp.raw["probs"]) == {"up", "down"}
    label, conf, _ = prov.answer("Q: gold sinks as the dollar firms\nA:")
    assert label == "down" and conf > 0.5


def test_gold_source_and_errors(tmp_path):
    folder, texts, golds = _folder(tmp_path)
    xs, ys, info = student_data(folder, gold="gold")
    assert ys == golds and info["source"] == "gold:gold"
    with pytest.raises(ConfigError):
        student_data(folder)
    with pytest.raises(ConfigError, match="no answers of teacher"):
        student_data(folder, teacher="nobody")
    with pytest.raises(DataError, match="2 distinct labels"):
        train_student(["a", "b"], ["up", "up"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "something else"}))
    with pytest.raises(DataError, match="not a student artefact"):
        Student.load(bad)


def test_export_finetune_chat_jsonl(tmp_path):
    folder, texts, golds = _folder(tmp_path)
    out = tmp_path / "ft.jsonl"
    n = export_finetune(folder, out, teacher="teacher", min_quality=1.0, system="You label headlines.")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert n == len(rows) == len(texts) - 2  # the two wrong/unparseable answers are filtered out
    msgs = rows[0]["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
    assert msgs[1]["content"].startswith(PREFIX) and msgs[2]["content"] in ("up", "down")
    with pytest.raises(DataError):
        export_finetune(folder, out, teacher="nobody")


def test_artefact_names_its_embedder_and_load_checks_it(tmp_path):
    from thrifty.scoring.embedding import get_embedder

    folder, _, _ = _folder(tmp_path)
    xs, ys, _ = student_data(folder, gold="gold")
    path = train_student(xs, ys).save(tmp_path / "s.json")
    doc = json.loads(path.read_text())
    assert doc["embedder"] == get_embedder().name == Student.load(path).embedder
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**doc, "embedder": "text-embedding-3-small"}))
    with pytest.raises(DataError, match="field 'embedder'.*text-embedding-3-small"):
        Student.load(other)
    short = tmp_path / "short.json"  # right name, but weights of another width
    short.write_text(json.dumps({**doc, "coef": [row[:10] for row in doc["coef"]]}))
    with pytest.raises(DataError, match="10-d"):
        Student.load(short)
    student = Student.load(path)
    student.embedder = "text-embedding-3-small"  # built in code with a foreign embedder: refused, not mis-scored
    with pytest.raises(ConfigError, match="student.embedder"):
        student.predict(["gold soars"])


@pytest.mark.parametrize(
    "change, field",
    [
        ({"classes": ["up"]}, "classes"),
        ({"classes": ["up", "up"]}, "classes"),
        ({"classes": "up,down"}, "classes"),
        ({"coef": None}, "coef"),
        ({"coef": [[1.0, "x"], [0.0, 1.0]]}, "coef"),
        ({"coef": [[1.0], [2.0, 3.0]]}, "coef"),
        ({"intercept": [0.0, float("nan")]}, "intercept"),
        ({"intercept": [0.0]}, "coef"),
        ({"prefix": 3}, "prefix"),
        ({"meta": [1]}, "meta"),
    ],
)
def test_a_damaged_artefact_is_a_data_error_naming_the_field(tmp_path, change, field):
    good = {
        "kind": "thrifty.student/v1",
        "embedder": "all-MiniLM-L6-v2",
        "classes": ["down", "up"],
        "coef": [[0.0] * 384, [0.0] * 384],
        "intercept": [0.0, 0.0],
    }
    assert Student.load(_write_json(tmp_path / "ok.json", good)).classes == ("down", "up")
    doc = {**good, **change}
    if change.get("coef") is None and "coef" in change:
        del doc["coef"]
    with pytest.raises(DataError, match=rf"bad.json: field '{field}'"):
        Student.load(_write_json(tmp_path / "bad.json", doc))


def _write_json(path, doc):
    path.write_text(json.dumps(doc))
    return path


def test_training_inputs_are_checked(tmp_path):
    with pytest.raises(DataError, match="2 texts but 1 labels"):
        train_student(["a", "b"], ["up"])
    for c in (0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="--c"):
            train_student(["a", "b"], ["up", "down"], c=c)
    folder, _, _ = _folder(tmp_path)
    _, ys, _ = student_data(folder, teacher="teacher", choices=["up", "", " down "])  # an empty choice would match anything
    assert set(ys) == {"up", "down"}
    with pytest.raises(ConfigError, match="--choices"):
        student_data(folder, teacher="teacher", choices=["", " "])
    (tmp_path / "latin1.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(DataError, match="latin1.json: not UTF-8"):
        Student.load(tmp_path / "latin1.json")


def test_export_finetune_checks_its_inputs(tmp_path):
    folder, _, _ = _folder(tmp_path)
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(ConfigError, match="--min-quality"):
            export_finetune(folder, tmp_path / "ft.jsonl", teacher="teacher", min_quality=bad)
    path = folder / "outcomes.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows[3]["quality"] = "good"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"outcomes.jsonl: field 'quality': got 'good' for prompt '3'"):
        export_finetune(folder, tmp_path / "ft.jsonl", teacher="teacher", min_quality=0.5)


def test_a_missing_student_artefact_in_the_config_names_its_toml_key(tmp_path):
    from thrifty.config.settings import parse_settings
    from thrifty.serving.profiles import build_provider

    settings = parse_settings({"providers": {"clf": {"kind": "student", "model_path": "missing.json"}}}, base_dir=tmp_path)
    with pytest.raises(ConfigError) as info:
        build_provider(settings.providers["clf"])
    assert info.value.key == "providers.clf.model_path"
    assert "missing.json" in str(info.value) and "thrifty student train" in str(info.value)
