"""Progress bars: only inside a scope, one live display shared by nested steps."""

from __future__ import annotations

from thrifty.scoring.progress import progress_scope, step


def test_steps_show_only_inside_a_scope_and_share_its_display():
    assert step("outside", 10) is None
    with progress_scope(False):
        assert step("disabled", 10) is None
    with progress_scope(True):
        outer = step("folds", 5)
        assert outer is not None
        with progress_scope(True):  # a nested scope (an evaluation inside a command) adds rows to the same display
            inner = step("embedding", 3000, min_total=512)
            assert inner is not None and inner._progress is outer._progress
            assert step("tiny", 10, min_total=512) is None  # too small to be worth a bar
            inner.advance(3000)
            inner.close()
        with step("fitting", None) as pulse:  # unknown length
            assert pulse is not None
        outer.advance()
        assert [t.description for t in outer._progress.tasks] == ["folds"]
        outer.close()
    assert step("after", 10) is None
