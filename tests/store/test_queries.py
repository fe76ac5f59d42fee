"""The list's queries: a page, after a cursor or not, is an index scan on both engines
(no sort of the table: the benchmark's 50 ms with 100,000 entries depends on it). The
cursors themselves: tests/store/test_cursors.py."""

from __future__ import annotations

import pytest
from sqlalchemy import Select, text

from app.store import WorklistStore
from app.store.cursors import encode_cursor
from app.store.models import Study
from app.store.queries import filters_of, page_query
from tests.store.factories import T0

_CURSOR = encode_cursor(Study(sort_group=1, sort_rank=-0.25, received_at=T0, id=7))


def _plan(store: WorklistStore, query: Select) -> str:
    sql = str(query.limit(51).compile(store.engine, compile_kwargs={"literal_binds": True}))
    with store.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql).all()
            return "\n".join(row[-1] for row in rows)
        # An empty table's cheapest plan is a scan and a sort, whatever the indexes; with
        # those off, the plan shows whether an index can give the order (the benchmark
        # checks that a full table takes it).
        connection.execute(text("SET enable_seqscan = off"))
        connection.execute(text("SET enable_bitmapscan = off"))
        return "\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + sql))


@pytest.mark.parametrize(("status", "cursor", "index"), [
    (None, None, "ix_studies_worklist_order"),
    (None, _CURSOR, "ix_studies_worklist_order"),
    ("new", None, "ix_studies_status_worklist_order"),
    ("new", _CURSOR, "ix_studies_status_worklist_order"),
])
def test_page_query_reads_index_in_order(store: WorklistStore, status: str | None,
                                         cursor: str | None, index: str) -> None:
    plan = _plan(store, page_query(filters_of(status, None, None), cursor))
    assert index in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
