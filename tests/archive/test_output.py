"""Shards committed with markers: what a reader counts, what --resume deletes."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from app.archive.output import Output
from app.archive.rows import SCHEMA


def _rows(*sources: str) -> pa.Table:
    return pa.Table.from_pylist([{"source": s, "key": f"key-{s}"} for s in sources],
                                schema=SCHEMA)


def test_a_committed_shard_counts_and_says_what_was_written(tmp_path):
    output = Output(str(tmp_path))
    output.commit(_rows("a", "b"), "part-run-00000")
    output.commit(_rows("c"), "part-run-00001")
    assert [shard.rows for shard in output.shards()] == [2, 1]
    assert output.written() == {"a": "key-a", "b": "key-b", "c": "key-c"}
    assert output.uncommitted() == []


def test_a_shard_without_its_marker_is_not_counted_and_is_cleared(tmp_path):
    """A run killed between writing a shard and its marker: its rows are not counted and the
    next --resume deletes the shard (its films are scored again)."""
    output = Output(str(tmp_path))
    output.commit(_rows("a"), "part-run-00000")
    pq.write_table(_rows("b"), tmp_path / "results" / "part-run-00001.parquet")
    (tmp_path / "results" / "run.json.123.part").write_text("{")  # a half-written file
    assert [shard.rows for shard in output.shards()] == [1]
    assert output.written() == {"a": "key-a"}
    assert len(output.uncommitted()) == 2
    assert output.clear_uncommitted() == 2
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [
        "part-run-00000.parquet", "part-run-00000.parquet.committed"]


def test_a_marker_that_names_other_rows_commits_nothing(tmp_path):
    output = Output(str(tmp_path))
    shard = output.commit(_rows("a", "b"), "part-run-00000")
    pq.write_table(_rows("a"), Path(shard.path))  # the shard replaced after its marker
    assert output.shards() == [] and output.dataset() is None


def test_a_file_never_read_is_written_by_its_source(tmp_path):
    output = Output(str(tmp_path))
    output.commit(pa.Table.from_pylist([{"source": "big.dcm", "key": None}], schema=SCHEMA),
                  "part-run-00000")
    assert output.written() == {"big.dcm": ""}


def test_the_manifest_is_written_whole_and_read_back(tmp_path):
    output = Output(str(tmp_path / "out"))
    assert output.manifest() is None
    output.write_manifest({"run_id": "r1", "status": "running"})
    assert output.manifest() == {"run_id": "r1", "status": "running"}
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["run.json"]


def test_shards_written_before_a_column_was_added_read_beside_newer_ones(tmp_path):
    """Whichever shard comes first by name, the rows read with the code's columns: an older
    shard's missing column is null, and never hides the newer shards' values."""
    older = SCHEMA.remove(SCHEMA.get_field_index("operating_point"))
    for first_name, second_name in (("part-a-00000", "part-b-00000"),
                                    ("part-b-00000", "part-a-00000")):
        output = Output(str(tmp_path / first_name))
        output.commit(pa.Table.from_pylist([{"source": "old", "key": "k1"}], schema=older),
                      first_name)
        output.commit(pa.Table.from_pylist([{"source": "new", "key": "k2",
                                             "operating_point": "site"}], schema=SCHEMA),
                      second_name)
        found = {row["source"]: row for row in output.dataset().to_table().to_pylist()}
        assert found["new"]["operating_point"] == "site"
        assert found["old"]["operating_point"] is None
