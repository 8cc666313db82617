"""The log store: every request the gateway answered, each tier's answer, score, cost, decision —
on SQLite (embedded default) or PostgreSQL (shared by replicas; :mod:`thrifty.store.backend`).

Logs are training data: :func:`~thrifty.store.export.export_table` turns them into a routing table
that ``thrifty eval`` and ``thrifty fit`` read.
"""

from thrifty.store.db import MIGRATIONS, connect, migrate
from thrifty.store.export import export_table
from thrifty.store.logs import LogStore, RequestRecord, StepRecord

__all__ = ["LogStore", "RequestRecord", "StepRecord", "connect", "migrate", "MIGRATIONS", "export_table"]


def __getattr__(name: str):  # export pulls numpy: import it only when asked for
    if name == "export_table":
        return export_table
    raise AttributeError(name)
