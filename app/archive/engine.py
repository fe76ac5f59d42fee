"""The engine: Ray Data, embedded on this machine by default (`ray.init()` with no server,
its object store capped) or on a Ray cluster (`address`: "auto", "ray://head:10001"),
running the archive's two steps (app/archive/stages.py) as one streaming plan:

    listed files -> decode tasks (CPU, any node) -> scoring actors (the model loaded once
    per actor) -> rows, streamed back to the driver, which commits them (app/archive/output.py)

The files' bytes never enter the object store: a decode task reads, decodes and lets go of
them; what flows on is a film's model input (the card's input size) and its facts. Ray
Data's backpressure keeps the blocks in flight within the object store's cap; a film over
the byte or pixel limit is its row's error, so no single file can need more than the
limits allow.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from app.archive.stages import Decoding, ScoreFilms, Scoring, prepare_files

EMBEDDED = "embedded"
MIB = 2**20
WAIT_FOR_ACTORS_S = 600  # a model loading on a cold node


@dataclass(frozen=True)
class Engine:
    """How the run uses Ray. `address`: None for an embedded Ray on this machine, with
    `cpus` CPUs (None: every core) and an object store of `object_store_mb`; else a
    cluster's address, whose own settings apply. Each scoring actor holds `actor_cpus` CPUs
    and `actor_gpus` GPUs; `actors` of them (None: one per node, or per `actor_gpus` of the
    cluster's GPUs, scaled up from one as the films come). Each decode task takes
    `files_per_task` files on `decode_cpus` CPUs; each model call `batch_size` films.

    An actor holds no CPU by default: on the CPU a model call costs a small share of what
    decoding a film does (about 0.3 ms a film in batches, against 2-15 ms to decode one:
    benchmarks/archive.py), so the decode tasks keep every core and the actor borrows
    from them; one that held a whole core would leave a 2-core machine half its decoding."""

    address: str | None = None
    cpus: int | None = None
    object_store_mb: int = 512
    batch_size: int = 256
    files_per_task: int = 32
    decode_cpus: float = 1.0
    actor_cpus: float = 0.0
    actor_gpus: float = 0.0
    actors: int | None = None


@dataclass(frozen=True)
class Cluster:
    """What the run ran on, for run.json."""

    address: str
    nodes: int
    cpus: float
    gpus: float
    object_store_mb: float
    ray_version: str

    def describe(self) -> dict:
        return {"name": "ray data", "ray_version": self.ray_version, "address": self.address,
                "nodes": self.nodes, "cpus": self.cpus, "gpus": self.gpus,
                "object_store_mb": round(self.object_store_mb)}


def start(engine: Engine) -> Cluster:
    """Start the embedded Ray, or join the cluster at `engine.address`."""
    import ray

    quiet = {"log_to_driver": False, "logging_level": logging.WARNING,
             "include_dashboard": False}
    if engine.address is None:
        # A cluster Ray starts itself has token authentication by default (a token under
        # ~/.ray); its warning that this default applies says nothing to act on. Joining a
        # cluster (`--address`), its warnings stand (one without authentication among them).
        said = logging.getLogger("ray._private.authentication.authentication_token_setup")
        level = said.level
        said.setLevel(logging.ERROR)
        try:
            ray.init(num_cpus=engine.cpus or len(os.sched_getaffinity(0)),
                     object_store_memory=engine.object_store_mb * MIB, **quiet)
        finally:
            said.setLevel(level)
    else:
        ray.init(address=engine.address, **{k: v for k, v in quiet.items()
                                            if k != "include_dashboard"})
    import ray.data

    context = ray.data.DataContext.get_current()
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context.enable_progress_bars = False  # the run's own bar says it (app/archive/run.py)
    context.print_on_execution_start = False
    # A fixed pool (`actors`): every actor up (its model loaded) before films are handed
    # out, so that all share them, and a clear error, not a hang, from a cluster that
    # cannot place them. Otherwise decoding starts at once, while the model loads.
    context.wait_for_min_actors_s = WAIT_FOR_ACTORS_S if engine.actors else -1
    resources = ray.cluster_resources()
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    return Cluster(engine.address or EMBEDDED, len(nodes), resources.get("CPU", 0.0),
                   resources.get("GPU", 0.0), resources.get("object_store_memory", 0) / MIB,
                   ray.__version__)


def stop() -> None:
    import ray

    ray.shutdown()


def _pool(engine: Engine, cluster: Cluster) -> tuple[int, int]:
    """(fewest, most) scoring actors."""
    if engine.actors is not None:
        return engine.actors, engine.actors
    if engine.actor_gpus:
        return 1, max(1, int(cluster.gpus // engine.actor_gpus))
    return 1, max(1, cluster.nodes)


def stream(engine: Engine, cluster: Cluster, files: pa.Table, decoding: Decoding,
           scoring: Scoring) -> Iterator[pa.Table]:
    """The rows of `files` (columns source, size, written), a table at a time as the
    scoring actors finish batches, in no particular order; each table has the results'
    columns, `resumed` and `scored_on` (the node that scored it)."""
    import ray.data

    step = engine.files_per_task
    blocks = [files.slice(start, step) for start in range(0, files.num_rows, step)]
    if not blocks:
        return
    fewest, most = _pool(engine, cluster)
    plan = ray.data.from_arrow(blocks).map_batches(
        prepare_files, fn_kwargs={"decoding": decoding}, batch_size=None,
        batch_format="numpy", num_cpus=engine.decode_cpus,
    ).map_batches(
        ScoreFilms, fn_constructor_kwargs={"scoring": scoring}, batch_size=engine.batch_size,
        batch_format="numpy", compute=ray.data.ActorPoolStrategy(min_size=fewest,
                                                                max_size=most),
        num_cpus=engine.actor_cpus, num_gpus=engine.actor_gpus or None,
    )
    yield from plan.iter_batches(batch_size=None, batch_format="pyarrow")
