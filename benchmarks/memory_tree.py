"""Resident memory of the whole process tree (the server and its decode workers) through
worklist batches and a deflate bomb: the figures behind PNEUMONIA_MEMORY_BUDGET_MB.

    .venv/bin/python benchmarks/memory_tree.py --data-dir ../shared/data/chest_xray \
        [--baseline /path/to/another/checkout] [--batches 4] [--batch-mb 100]

Starts `python -m app` from this checkout (and then from `--baseline`, e.g. main's, for the
same run against it) on loopback with its default limits, and samples the resident memory
of the server and of all its descendants every 20 ms (`tree_memory`, `PeakSampler`: small
and importable, for other benchmarks). Phases, each with its peak and, once the server has
been idle for 3 s, its settled figures:

- `batches`: `--batches` concurrent worklist requests of about `--batch-mb` MB of films
  each (half to /predict/batch, half to /worklist/films): 1 MB films, PNGs and 16-bit
  DICOMs made from the dataset's 224 px films enlarged with noise;
- `bomb`: a DICOM whose data set is deflated (Deflated Explicit VR Little Endian) from
  600 MiB of zeros to about 600 KB, posted to /predict, /predict/batch and /worklist/films.

A benchmark, not a test: it prints figures and asserts nothing. Traffic goes to 127.0.0.1
only; every request has a timeout.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid

REPO = Path(__file__).resolve().parent.parent
MIB = 1 << 20
DX = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


@dataclass(frozen=True)
class TreeMemory:
    """Resident bytes of a process (`server`) and of all its descendants (`children`)."""

    server: int
    children: int

    @property
    def tree(self) -> int:
        return self.server + self.children


def tree_memory(pid: int) -> TreeMemory:
    """The resident memory (RSS) of process `pid` and of its descendants now; a child that
    exits while it is read counts 0."""
    process = psutil.Process(pid)
    children = 0
    for child in process.children(recursive=True):
        with suppress(psutil.Error):
            children += child.memory_info().rss
    return TreeMemory(process.memory_info().rss, children)


class PeakSampler:
    """Samples `tree_memory(pid)` every `interval` s on a thread while in its block: the
    peaks of the tree and of the server alone, and the last sample."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval = pid, interval
        self.peak_tree = self.peak_server = 0
        self.last = TreeMemory(0, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            try:
                self.last = sample = tree_memory(self.pid)
            except psutil.Error:
                return
            self.peak_tree = max(self.peak_tree, sample.tree)
            self.peak_server = max(self.peak_server, sample.server)
            if self._stop.wait(self.interval):
                return


def free_port() -> int:
    """A free TCP port on loopback (the benchmarks' servers listen there)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(repo: Path, state: Path, **settings: str) -> tuple[subprocess.Popen, str]:
    """`python -m app` from `repo` on a free loopback port, once /readyz says 200."""
    port = free_port()
    env = {**os.environ, "PNEUMONIA_PORT": str(port), "PNEUMONIA_HOST": "127.0.0.1",
           "PNEUMONIA_STATE_DIR": str(state), "PNEUMONIA_DICOM_PORT": "0",
           **{f"PNEUMONIA_{k.upper()}": v for k, v in settings.items()}}
    process = subprocess.Popen([sys.executable, "-m", "app"], cwd=repo, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the server in {repo} did not become ready")


def _enlarged(film: Path, side: int, seed: int) -> np.ndarray:
    """A dataset film at side x side with noise, so that its PNG stays about 1 MB."""
    gray = np.asarray(Image.open(film).convert("L").resize((side, side)), dtype=np.int16)
    noise = np.random.default_rng(seed).integers(-12, 13, gray.shape)
    return np.clip(gray + noise, 0, 255).astype(np.uint8)


def _dicom(pixels16: np.ndarray) -> bytes:
    ds = _dataset()
    ds.Rows, ds.Columns = pixels16.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels16.tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _dataset() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DX
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.StudyInstanceUID = DX, generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality, ds.ViewPosition, ds.BodyPartExamined = "DX", "PA", "CHEST"
    return ds


def films(data_dir: Path, count: int) -> list[tuple[str, bytes]]:
    """`count` films of about 1 MB: two PNGs for each 16-bit DICOM."""
    sources = sorted((data_dir / "test").glob("*/*.jpeg"))[::37]
    out = []
    for i in range(count):
        pixels = _enlarged(sources[i % len(sources)], 1000 if i % 3 else 724, seed=i)
        if i % 3:
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
            out.append((f"film-{i}.png", buffer.getvalue()))
        else:
            out.append((f"film-{i}.dcm", _dicom(pixels.astype(np.uint16) << 4)))
    return out


def deflate_bomb(inflated_mib: int = 600) -> bytes:
    """A Part 10 DICOM whose deflated data set (PS3.5 A.5) carries, before a 256 x 256
    film, a private OB element of `inflated_mib` MiB of zeros: about 600 KB on the wire."""
    ds = _dataset()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    head = DicomBytesIO()
    head.is_little_endian, head.is_implicit_VR = True, False
    head.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(head, ds.file_meta, enforce_standard=True)
    film = Dataset()
    film.Rows = film.Columns = 256
    film.SamplesPerPixel, film.PhotometricInterpretation = 1, "MONOCHROME2"
    film.BitsAllocated, film.BitsStored, film.HighBit, film.PixelRepresentation = 8, 8, 7, 0
    pixel_module = _encoded(film)  # group 0028: must come before the bomb's group 0029
    pixels = Dataset()
    pixels.PixelData = np.random.default_rng(0).integers(0, 255, (256, 256), np.uint8).tobytes()
    pixels["PixelData"].VR = "OB"
    size = inflated_mib * MIB
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    # Groups in order: the UIDs (0008-0020), the pixel module (0028), the bomb's private
    # creator and its OB element (0029), the pixels (7FE0).
    body = [deflate.compress(b) for b in (
        _encoded(ds), pixel_module, b"\x29\x00\x10\x00LO\x04\x00BOMB",
        b"\x29\x00\x10\x10OB\0\0" + size.to_bytes(4, "little"))]
    zeros = bytes(MIB)
    body += [deflate.compress(zeros) for _ in range(inflated_mib)]
    body += [deflate.compress(_encoded(pixels)), deflate.flush()]
    return head.getvalue() + b"".join(body)


def _encoded(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()


def _post(url: str, path: str, files: list[tuple[str, bytes]], field: str = "files") -> int:
    try:
        response = httpx.post(url + path, files=[(field, f) for f in files], timeout=300)
        return response.status_code
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}"  # type: ignore[return-value]


def _settled(pid: int, seconds: float = 3.0) -> TreeMemory:
    time.sleep(seconds)  # a benchmark, not a test: the server idles this long
    return tree_memory(pid)


def measure(repo: Path, data_dir: Path, batches: int, batch_mb: int) -> dict:
    """The phases' figures for the server in `repo`, MiB."""
    per_batch = films(data_dir, 24)
    size = sum(len(d) for _, d in per_batch)
    per_batch = per_batch * max(1, round(batch_mb * 1e6 / size))
    per_batch = per_batch[:100]  # PNEUMONIA_MAX_BATCH_FILES
    bomb = deflate_bomb()
    figures: dict = {"batch_mb": sum(len(d) for _, d in per_batch) / 1e6,
                     "bomb_kb": len(bomb) / 1e3}
    with tempfile.TemporaryDirectory() as state:
        process, url = start_server(repo, Path(state))
        try:
            figures["at_rest"] = tree_memory(process.pid)
            with PeakSampler(process.pid) as sampler, ThreadPoolExecutor(batches) as pool:
                paths = ["/predict/batch", "/worklist/films"] * batches
                statuses = list(pool.map(lambda p: _post(url, p, per_batch), paths[:batches]))
            figures["batches"] = (sampler.peak_tree, sampler.peak_server, statuses,
                                  _settled(process.pid))
            with PeakSampler(process.pid) as sampler:
                statuses = [_post(url, "/predict", [("bomb.dcm", bomb)], field="file"),
                            _post(url, "/predict/batch", [("bomb.dcm", bomb)]),
                            _post(url, "/worklist/films", [("bomb.dcm", bomb)])]
            figures["bomb"] = (sampler.peak_tree, sampler.peak_server, statuses,
                               _settled(process.pid))
        finally:
            process.terminate()
            process.wait(timeout=30)
    return figures


def report(name: str, figures: dict) -> None:
    rest = figures["at_rest"]
    print(f"\n{name}: at rest {rest.tree / MIB:.0f} MiB tree ({rest.server / MIB:.0f} server)"
          f"; batches of {figures['batch_mb']:.0f} MB, a bomb of {figures['bomb_kb']:.0f} KB")
    print("| phase | peak tree MiB | peak server MiB | settled tree MiB | settled server MiB "
          "| answers |")
    print("|---|---:|---:|---:|---:|---|")
    for phase in ("batches", "bomb"):
        tree, server, statuses, settled = figures[phase]
        print(f"| {phase} | {tree / MIB:.0f} | {server / MIB:.0f} | {settled.tree / MIB:.0f} "
              f"| {settled.server / MIB:.0f} | {' '.join(map(str, statuses))} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data"
                        / "chest_xray")
    parser.add_argument("--baseline", type=Path, help="another checkout to measure too")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch-mb", type=int, default=100)
    args = parser.parse_args()
    runs = [("this checkout", REPO)] + ([("baseline " + str(args.baseline), args.baseline)]
                                        if args.baseline else [])
    for name, repo in runs:
        report(name, measure(repo, args.data_dir, args.batches, args.batch_mb))


if __name__ == "__main__":
    main()
