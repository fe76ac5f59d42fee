"""What the archive tests share: the mixed folder, the CLI run in its own process (Ray
embedded with 2 CPUs and a 200 MiB object store), its rows, and a two-node Ray cluster on
loopback. Waits poll with a deadline; none sleeps blindly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pyarrow.dataset as pads
from PIL import Image

from tests.builders.corpus import jpeg_cut_with_end_marker
from tests.builders.dicom import (
    COMPREHENSIVE_SR,
    PATIENT_ID,
    PATIENT_NAME,
    file_bytes,
    study_film,
    study_object,
)
from tests.builders.films import gray_of
from tests.builders.images import encode, jpeg_bytes
from tests.servers import REPO, STATE_DIR, free_port, poll

# Embedded Ray as small as the CI machine needs: 2 CPUs, the object store capped.
EMBEDDED = ("--cpus", "2", "--object-store-mb", "200")
# What no output may hold: the builders' patient name, ID and birth date.
IDENTIFIERS = (PATIENT_NAME, PATIENT_NAME.split("^")[0] + "^", PATIENT_ID, "20200229")
STUDY_UID = "1.2.826.0.1.3680043.8.498.12345"
RUN_SECONDS = 300


def mixed_folder(root: Path, data_dir: Path) -> Path:
    """A folder as an export holds one: two real films (JPEG) and a copy of one, a PNG and
    two DICOMs of one study (a patient's identity in their headers, one without a file
    extension) made from real films' pixels, a small film the model cannot judge, a damaged
    JPEG, a structured report of the study, a text file, and a hidden file (never listed)."""
    normal, pneumonia = (sorted((data_dir / "test" / label).glob("*.jpeg"))[3]
                         for label in ("NORMAL", "PNEUMONIA"))
    root.mkdir(parents=True)
    (root / "study").mkdir()
    (root / "normal.jpeg").write_bytes(normal.read_bytes())
    (root / "pneumonia.jpeg").write_bytes(pneumonia.read_bytes())
    (root / "pneumonia copy.jpeg").write_bytes(pneumonia.read_bytes())
    (root / "film.png").write_bytes(encode(Image.fromarray(gray_of(normal)), "PNG"))
    first = study_film(gray_of(pneumonia), study_uid=STUDY_UID)
    (root / "study" / "first.dcm").write_bytes(file_bytes(first))
    (root / "study" / "second").write_bytes(file_bytes(study_film(gray_of(normal),
                                                                  study_uid=STUDY_UID)))
    (root / "study" / "report.dcm").write_bytes(file_bytes(study_object(
        first, COMPREHENSIVE_SR, "SR")))
    (root / "blob.jpeg").write_bytes(jpeg_bytes(300, 260))
    (root / "damaged.jpeg").write_bytes(jpeg_cut_with_end_marker(normal.read_bytes()))
    (root / "notes.txt").write_text("Not a film: a note left in the export.\n")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return root


# A cluster started with `ray start` asks its clients for Ray's token (~/.ray/auth_token,
# made by the head when there is none); a client says it has one with RAY_AUTH_MODE.
CLUSTER_CLIENT = {"RAY_AUTH_MODE": "token"}


def archive_env(ray_dir: Path, ray: dict[str, str] | None = None,
                **settings: str) -> dict[str, str]:
    """The CLI's environment: the committed models, this session's state folder, Ray's
    files (its logs) under `ray_dir`, and `ray`'s variables."""
    return {**os.environ, "PNEUMONIA_MODEL_DIR": str(REPO / "models"),
            "PNEUMONIA_STATE_DIR": str(STATE_DIR), "RAY_TMPDIR": str(ray_dir), **(ray or {}),
            **{f"PNEUMONIA_{key.upper()}": value for key, value in settings.items()}}


def archive_cli(*args: str, ray_dir: Path, ray: dict[str, str] | None = None,
                **settings: str) -> subprocess.CompletedProcess:
    """`pneumonia-triage archive ARGS` in its own process; its output."""
    return subprocess.run([sys.executable, "-m", "app", "archive", *args], cwd=REPO,
                          env=archive_env(ray_dir, ray, **settings), capture_output=True,
                          text=True, timeout=RUN_SECONDS)


def short_dir(prefix: str) -> Path:
    """A folder under /tmp with a short path: Ray's socket paths must fit 107 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def rows(out: Path) -> list[dict]:
    """Every committed row (the shards its markers commit), by source."""
    from app.archive.output import Output

    data = Output(str(out)).dataset()
    return sorted(data.to_table().to_pylist(), key=lambda r: r["source"]) if data else []


def every_shard_row(out: Path) -> int:
    """Rows in every Parquet file under results/, committed or not."""
    files = sorted((out / "results").glob("*.parquet"))
    return pads.dataset([str(f) for f in files]).count_rows() if files else 0


def manifest(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def texts_under(folder: Path) -> Iterator[tuple[Path, str]]:
    """Every file under `folder` as text (bytes that are not UTF-8 replaced)."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        with suppress(OSError):
            yield path, path.read_bytes().decode("utf-8", "replace")


@dataclass(frozen=True)
class RunningCli:
    process: subprocess.Popen
    log: Path


@contextmanager
def cli_in_background(*args: str, ray_dir: Path, log: Path) -> Iterator[RunningCli]:
    """The CLI in a session of its own (its Ray processes in its process group), for a test
    that kills it; whatever of the group is left is killed on exit."""
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "app", "archive", *args], cwd=REPO,
                                   env=archive_env(ray_dir), stdout=sink,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield RunningCli(process, log)
    finally:
        kill_group(process)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL to the process group `process` leads (it and what it started), then reap it."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@dataclass(frozen=True)
class Cluster:
    address: str
    head: subprocess.Popen
    worker: subprocess.Popen


def _node_ports() -> list[str]:
    """Every port a Ray node opens, free ones on loopback (two nodes on one machine must
    not share one)."""
    low = free_port()
    return ["--node-ip-address", "127.0.0.1",
            "--node-manager-port", str(free_port()),
            "--object-manager-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()),
            "--dashboard-agent-grpc-port", str(free_port()),
            "--metrics-export-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()),
            "--min-worker-port", str(low), "--max-worker-port", str(low + 40)]


@contextmanager
def two_node_cluster(ray_dir: Path, cpus: int = 3) -> Iterator[Cluster]:
    """`ray start --head` and a second `ray start --address` (each --block, in a session of
    its own, with `cpus` CPUs, a 200 MiB object store, and for the second a resource of its
    own), on free loopback ports; both stopped (SIGTERM, then SIGKILL to their groups)
    whatever happens."""
    ray = str(Path(sys.executable).parent / "ray")
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--block", "--num-cpus", str(cpus), "--object-store-memory", str(200 * 2**20),
              "--disable-usage-stats"]
    env = archive_env(ray_dir, CLUSTER_CLIENT)
    head = subprocess.Popen(
        [ray, "start", "--head", "--port", str(port), "--include-dashboard", "false",
         "--ray-client-server-port", str(free_port()), "--temp-dir", str(ray_dir / "ray"),
         *common, *_node_ports()], env=env, cwd=REPO, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        poll(lambda: head.poll() is not None or _nodes(address, env) >= 1, 120,
             "the head node")
        worker = subprocess.Popen(
            [ray, "start", "--address", address, "--resources", '{"second_node": 1}',
             *common, *_node_ports()], env=env, cwd=REPO, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        poll(lambda: worker.poll() is not None or _nodes(address, env) >= 2, 120,
             "the second node")
        assert head.poll() is None and worker.poll() is None, "a Ray node exited"
        yield Cluster(address, head, worker)
    finally:
        for process in (worker, head):
            if process is not None:
                _stop_node(process)


def _nodes(address: str, env: dict[str, str]) -> int:
    """Alive nodes of the cluster at `address` (0 while it does not answer)."""
    script = (f"import ray; ray.init(address={address!r}, logging_level='ERROR'); "
              "print(sum(n['Alive'] for n in ray.nodes()))")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=60)
    lines = result.stdout.split()
    return int(lines[-1]) if result.returncode == 0 and lines else 0


def _stop_node(process: subprocess.Popen) -> None:
    """`ray start --block` stops its node's processes on SIGTERM; its group is killed if
    anything of it is still there after 30 s."""
    process.terminate()
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
