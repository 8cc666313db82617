"""The artefact history (migration 0007): a stack of serving rows; rollback pops one."""

from __future__ import annotations

from thrifty.store import artefacts
from thrifty.store.db import MIGRATIONS, connect


def test_history_stack_and_rollback(tmp_path) -> None:
    assert MIGRATIONS[-1][0] == "0007_artefact_history"
    conn = connect(tmp_path / "db.sqlite3")
    run = lambda fn, *a: fn(conn, *a)  # noqa: E731 - autocommit connection: each statement commits
    v1 = run(artefacts.record, "p", "serving", {"rule": "only the candidate meets the target"}, str(tmp_path / "v1"))
    v2 = run(artefacts.record, "p", "refused", {"rule": "the candidate misses the target"})
    v3 = run(artefacts.record, "p", "serving", {"rule": "both meet the target; candidate is cheaper"}, str(tmp_path / "v3"))
    run(artefacts.record, "q", "serving", {}, "x")
    assert (v1.version, v2.version, v3.version) == (1, 2, 3)
    assert run(artefacts.current, "p").version == 3
    assert [r.version for r in run(artefacts.history, "p")] == [3, 2, 1]
    assert run(artefacts.get, "p", 2).evidence == {"rule": "the candidate misses the target"}
    old, now = run(artefacts.rollback, "p")
    assert old.version == 3 and now.version == 1 and run(artefacts.get, "p", 3).status == "rolled_back"
    old, now = run(artefacts.rollback, "p")
    assert old.version == 1 and now is None
    assert run(artefacts.rollback, "p") == (None, None)
    assert run(artefacts.current, "q").path == "x"
