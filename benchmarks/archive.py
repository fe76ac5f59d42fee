"""Archive scoring on one machine: `pneumonia-triage archive score` (Ray Data, embedded)
against the folder command (`pneumonia-triage score`) and the decode-bound ceiling
(benchmarks/load.py's: a bare reduced-scale decode on every core), in one run.

    .venv/bin/python benchmarks/archive.py --data-dir ../shared/data [--repeat 5000]

Two sets: the test split (624 JPEGs of the chest X-ray dataset), and the three full-size
samples (JPEG, 0.1-6.4 MP) repeated to `--repeat` files (hard links: one copy on disk, a
file each to read). For each set it prints the ceiling, then each command run end to end
in its own process (files/s from its start to its exit, model and Ray start-up included;
for the archive also its own figures from Ray's start, run.json `files_per_second`, and
once its first rows came, `steady_files_per_second`, the actors' model load left out), and
the peak resident memory of the command's whole process tree (Ray's processes, its decode
workers and actors, sampled every 50 ms: benchmarks/memory_tree.py; pages shared between
processes, the object store's among them, count in each). A benchmark, not a test: it
prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import ceiling  # noqa: E402
from memory_tree import PeakSampler  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def repeated(samples: list[Path], count: int, folder: Path) -> Path:
    """`count` files in `folder`, hard links to `samples` in turn."""
    folder.mkdir(parents=True)
    for i in range(count):
        source = samples[i % len(samples)]
        os.link(source, folder / f"{i:06d}-{source.name}")
    return folder


def run(command: list[str], files: int) -> dict:
    """`command` in its own process: wall seconds, files/s, peak memory of its tree."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    with PeakSampler(process.pid, interval=0.05) as sampler:
        out, err = process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{command[:5]} failed: {err[-2000:]}")
    return {"seconds": seconds, "rate": files / seconds,
            "peak_mib": sampler.peak_tree / 2**20, "stdout": out}


def measure(name: str, folder: Path, uploads: list[bytes], files: int, cpus: int,
            work: Path, ceiling_seconds: float) -> dict:
    print(f"\n{name}: {files} files", flush=True)
    bound = ceiling(uploads, ceiling_seconds)
    print(f"  decode-bound ceiling       {bound:8.1f} files/s", flush=True)
    folder_run = run([sys.executable, "-m", "app", "score", str(folder), "--out",
                      str(work / f"{name}.csv"), "--quiet", "--workers", str(cpus)], files)
    print(f"  score (folder command)     {folder_run['rate']:8.1f} files/s "
          f"({folder_run['seconds']:.1f} s, peak {folder_run['peak_mib']:.0f} MiB)",
          flush=True)
    out = work / f"{name}-archive"
    archive = run([sys.executable, "-m", "app", "archive", "score", str(folder), "--out",
                   str(out), "--quiet", "--cpus", str(cpus)], files)
    own = json.loads((out / "run.json").read_text())
    print(f"  archive score (Ray Data)   {archive['rate']:8.1f} files/s "
          f"({archive['seconds']:.1f} s, peak {archive['peak_mib']:.0f} MiB); "
          f"{own['files_per_second']:.1f} files/s from Ray's start, "
          f"{own['steady_files_per_second']:.1f} once the first rows came "
          f"({own['first_rows_after_seconds']:.1f} s after Ray's start)", flush=True)
    return {"ceiling": bound, "folder": folder_run, "archive": archive,
            "archive_own": own["files_per_second"],
            "archive_steady": own["steady_files_per_second"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=5000,
                        help="files of the repeated full-size samples")
    parser.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)),
                        help="cores for each (decode workers, embedded Ray's CPUs)")
    parser.add_argument("--ceiling-seconds", type=float, default=8.0)
    args = parser.parse_args()
    test = args.data_dir / "chest_xray" / "test"
    samples = sorted((args.data_dir / "samples").glob("*.jpeg"))
    work = Path(tempfile.mkdtemp(prefix="archive-bench-"))
    try:
        split = sorted(test.glob("*/*.jpeg"))
        results = {
            "test split": measure("test-split", test, [p.read_bytes() for p in split],
                                  len(split), args.cpus, work, args.ceiling_seconds),
            "samples": measure(f"samples-x{args.repeat}",
                               repeated(samples, args.repeat, work / "samples"),
                               [p.read_bytes() for p in samples], args.repeat, args.cpus,
                               work, args.ceiling_seconds),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n| set ({args.cpus} cores) | ceiling files/s | score files/s | archive files/s "
          "| archive steady files/s | archive / ceiling (steady) | archive / score "
          "| peak MiB score / archive |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        a, f = r["archive"], r["folder"]
        print(f"| {name} | {r['ceiling']:.1f} | {f['rate']:.1f} | {a['rate']:.1f} | "
              f"{r['archive_steady']:.1f} | {a['rate'] / r['ceiling']:.0%} "
              f"({r['archive_steady'] / r['ceiling']:.0%}) | {a['rate'] / f['rate']:.2f}x | "
              f"{f['peak_mib']:.0f} / {a['peak_mib']:.0f} |")


if __name__ == "__main__":
    main()
