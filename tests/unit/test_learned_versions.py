"""Learned artefacts go through the replicas' version row (on SQLite here; the e2e test runs two
replicas on PostgreSQL): a rollback publishes what serves after it, "the config file's policy"
is a version of its own, and the replica sync hands learned profiles' moves to their learner
instead of reloading the config file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from thrifty.gateway.replica_sync import ReplicaSync, publish_served
from thrifty.store import LogStore, artefacts
from thrifty.store.versions import CONFIG_DIGEST, artefact_digest, publish_in, read_versions, serve_config_in


def _folder(root: Path, name: str, text: str) -> str:
    d = root / name
    d.mkdir()
    (d / "manifest.json").write_text(text)
    return str(d)


def test_rollback_publishes_the_artefact_below_then_the_config_policy(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "l.db")
    v1, v2 = _folder(tmp_path, "v1", '{"a": 1}'), _folder(tmp_path, "v2", '{"a": 2}')
    for path in (v1, v2):  # what the learner does on a swap: the history row and the version row together

        def swap(conn: Any, path: str = path) -> None:
            artefacts.record(conn, "hl", "serving", {}, path)
            publish_in(conn, "hl", artefact_digest(path), path=path, source="refit|a|1")

        store.run_in_transaction(swap)
    assert store.read(read_versions)["hl"][:3] == (2, artefact_digest(v2), v2)

    old, now = store.run_in_transaction(artefacts.rollback_and_publish, "hl", source="cli rollback")
    assert (old.version, now.version) == (2, 1)
    row = store.read(read_versions)["hl"]
    assert (row.version, row.sha256, row.path, row.source) == (3, artefact_digest(v1), v1, "cli rollback")

    old, now = store.run_in_transaction(artefacts.rollback_and_publish, "hl")
    assert (old.version, now) == (1, None)
    row = store.read(read_versions)["hl"]
    assert (row.version, row.sha256, row.path) == (4, CONFIG_DIGEST, None)  # every replica: the config file's policy

    assert store.run_in_transaction(artefacts.rollback_and_publish, "hl") == (None, None)
    assert store.read(read_versions)["hl"].version == 4  # nothing rolled back: no new version
    assert store.run_in_transaction(artefacts.by_path, "hl", v1).version == 1
    assert store.run_in_transaction(artefacts.by_path, "hl", str(tmp_path / "elsewhere")) is None


def test_serve_config_in_always_makes_a_new_version(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "l.db")
    assert store.run_in_transaction(serve_config_in, "p") == 1
    assert store.run_in_transaction(serve_config_in, "p") == 2
    assert store.read(read_versions)["p"][1:3] == (CONFIG_DIGEST, None)


class Follower:
    """Records what the replica sync hands a learner (the real one loads the folder in its thread)."""

    def __init__(self, name: str) -> None:
        self.profile = SimpleNamespace(name=name)
        self.rows: list[Any] = []

    def request_follow(self, row: Any) -> None:
        self.rows.append(row)


def test_the_replica_sync_hands_learned_profiles_to_their_learner_and_never_publishes_them(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "l.db")
    art = _folder(tmp_path, "fitted", '{"kind": "cascade"}')
    settings = SimpleNamespace(
        profiles={"learned": SimpleNamespace(artefact=Path(art)), "fitted": SimpleNamespace(artefact=Path(art))}, server=None
    )
    learner = Follower("learned")
    rt = SimpleNamespace(store=store, settings=settings, learners=[learner], generation=1, artefact_versions={"learned": {"version": 7}})
    versions = publish_served(store, settings, {"learned": learner})
    assert set(versions) == {"fitted"}  # a learned profile's row is its learner's to publish

    sync = ReplicaSync(rt)
    sync.adopt(versions)
    assert rt.artefact_versions["learned"] == {"version": 7}  # kept: the learner keeps its own entry current
    assert sync.in_service == {"fitted": 1}

    store.run_in_transaction(publish_in, "learned", "abc", path="/shared/v3", source="refit|b|2")
    reloads: list[int] = []

    async def poll() -> None:
        import thrifty.gateway.replica_sync as rs

        async def no_reload(rt: Any) -> None:  # a file profile's move would reload the whole config
            reloads.append(1)

        saved, rs.reload_runtime = rs.reload_runtime, no_reload
        try:
            await sync.poll()
        finally:
            rs.reload_runtime = saved

    asyncio.run(poll())
    assert [(r.version, r.path) for r in learner.rows] == [(1, "/shared/v3")] and reloads == []


def _learner(tmp_path: Path) -> Any:
    from thrifty.calibration.loop import LearningLoop, LoopConfig
    from thrifty.calibration.refit import ServingPolicy
    from thrifty.config.settings import ServerSettings
    from thrifty.gateway.learning import ProfileLearner

    store = LogStore(tmp_path / "l.db")
    rt = SimpleNamespace(store=store, settings=SimpleNamespace(server=ServerSettings(data_dir=tmp_path)), artefact_versions={})
    configured = ServingPolicy(0, ("small", "big"), (0.5,), scorer=object(), source="config")
    learned = ServingPolicy(3, ("small", "big"), (0.9,), scorer=object(), source="refit")
    loop = LearningLoop("hl", ("small", "big"), LoopConfig(every=10), learned)
    event_loop = asyncio.new_event_loop()  # not running: installs are only queued
    learner = ProfileLearner(rt, SimpleNamespace(name="hl"), "thrifty/hl", loop, event_loop, configured=configured)
    return learner, configured, learned, event_loop


def test_a_learner_follows_a_rollback_to_the_config_and_refuses_an_unshared_folder(tmp_path: Path, caplog: Any) -> None:
    learner, configured, learned, event_loop = _learner(tmp_path)
    store = learner.rt.store
    try:
        missing = str(tmp_path / "on-another-machine" / "v4")
        store.run_in_transaction(publish_in, "hl", "f" * 64, path=missing, source="refit|b|2")
        learner.request_follow(store.read(read_versions)["hl"])
        learner.executor.submit(lambda: None).result(timeout=10)
        assert learner.loop.serving is learned and learner.store_version == 1  # kept serving; not retried every poll
        assert "cannot serve version 1" in caplog.text and "artefact_dir" in caplog.text

        here = _folder(tmp_path, "v5", '{"kind": "cascade"}')
        store.run_in_transaction(publish_in, "hl", "0" * 64, path=here, source="refit|b|2")  # a different folder than published
        learner.request_follow(store.read(read_versions)["hl"])
        learner.executor.submit(lambda: None).result(timeout=10)
        assert learner.loop.serving is learned and "differs from the one published" in caplog.text

        store.run_in_transaction(serve_config_in, "hl", source="cli rollback")
        learner.request_follow(store.read(read_versions)["hl"])
        learner.executor.submit(lambda: None).result(timeout=10)
        assert learner.loop.serving is configured and learner.store_version == 3
        assert learner.live_policy is not None and learner.live_policy.thresholds == (0.5,)
    finally:
        learner.close()
        event_loop.close()


def test_a_learner_never_goes_back_to_an_older_version_than_its_own_swap(tmp_path: Path) -> None:
    learner, configured, learned, event_loop = _learner(tmp_path)
    try:
        store = learner.rt.store
        store.run_in_transaction(serve_config_in, "hl", source="cli rollback")
        old = store.read(read_versions)["hl"]
        learner.store_version = 2  # this replica's refit published version 2 while the follow of 1 waited
        learner.request_follow(old)
        learner.follow(old)
        learner.executor.submit(lambda: None).result(timeout=10)
        assert learner.loop.serving is learned and learner.store_version == 2
    finally:
        learner.close()
        event_loop.close()


def test_artefact_dir_is_relative_to_the_config_file_and_defaults_to_the_data_dir(tmp_path: Path) -> None:
    from thrifty.config.settings import load_settings
    from thrifty.errors import ConfigError

    cfg = tmp_path / "thrifty.toml"
    cfg.write_text('[server]\ndata_dir = "data"\nartefact_dir = "shared/artefacts"\n')
    assert load_settings(cfg).server.resolved_artefact_dir() == tmp_path / "shared" / "artefacts"
    cfg.write_text('[server]\ndata_dir = "data"\n')
    assert load_settings(cfg).server.resolved_artefact_dir() == tmp_path / "data" / "artefacts"
    cfg.write_text("[server]\nartefact_dir = 3\n")
    with pytest.raises(ConfigError, match="server.artefact_dir"):
        load_settings(cfg)
