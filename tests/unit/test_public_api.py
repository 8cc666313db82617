"""The names ``import thrifty`` promises resolve (they are re-exported lazily)."""

import thrifty


def test_every_public_name_resolves() -> None:
    for name in thrifty.__all__:
        assert getattr(thrifty, name) is not None, name


def test_load_table_is_the_table_reader() -> None:
    from thrifty.data.table_io import load_table

    assert thrifty.load_table is load_table
