"""`archive score --address` on a two-node Ray cluster on this machine (`ray start --head`
and a second `ray start --address` with its own resources, on free loopback ports): a
scoring actor on each node, and the same rows as the embedded run."""

from __future__ import annotations

import math
import shutil

import pytest

from tests.archive.harness import (
    CLUSTER_CLIENT,
    archive_cli,
    manifest,
    rows,
    short_dir,
    two_node_cluster,
)

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

SAME = ("key", "sop_instance_uid", "study_instance_uid", "decision", "assessable", "reasons",
        "warnings", "error", "model", "model_version", "content_hash", "ignored")
CLOSE = ("triage_score", "probability", "unvalidated_probability", "threshold")


def test_a_two_node_cluster_scores_the_rows_of_the_embedded_run(
        scored_folder, tmp_path):
    ray_dir = short_dir("ray-two-")
    out = tmp_path / "out"
    try:
        # 3 CPUs a node, 2 for each scoring actor: one actor on each node, and a CPU for
        # decoding beside it.
        with two_node_cluster(ray_dir, cpus=3) as cluster:
            result = archive_cli("score", str(scored_folder.folder), "--out", str(out),
                                 "--address", cluster.address, "--actors", "2",
                                 "--num-cpus", "2", "--batch-size", "1",
                                 "--files-per-task", "1", ray_dir=ray_dir,
                                 ray=CLUSTER_CLIENT)
            assert result.returncode == 0, result.stderr[-3000:]
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    engine = manifest(out)["engine"]
    assert engine["address"] == cluster.address and engine["nodes"] == 2
    # Both actors were up before any film was handed out (app/archive/engine.py waits for
    # the pool), one a node as their CPUs allow. Which of them scores the films is Ray
    # Data's: it gives a block to an actor on the node that made it while that actor has
    # room, and ten small films can be decoded and scored on one node before the other
    # is needed (seen twice in full-suite runs). Every row counts, on the cluster's nodes.
    embedded, clustered = rows(scored_folder.out), rows(out)
    assert 1 <= len(engine["scored_on"]) <= 2
    assert sum(engine["scored_on"].values()) == len(clustered)
    assert [r["source"] for r in clustered] == [r["source"] for r in embedded]
    for a, b in zip(clustered, embedded):
        assert {name: a[name] for name in SAME} == {name: b[name] for name in SAME}
        assert all(a[n] == b[n] or math.isclose(a[n], b[n], abs_tol=1e-6) for n in CLOSE
                   if None not in (a[n], b[n])), (a, b)
        assert all((a[n] is None) == (b[n] is None) for n in CLOSE)
