"""Triage a folder without the server: python -m app.batch DIR --out results.csv

Scores every file under DIR (JPEG, PNG, MPO, DICOM with or without an extension; anything
else gets its error in its row), decoding in worker processes on every core and calling the
model in batches, with a progress bar on stderr. The CSV is the one the API and the page
write: highest probability first.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up noise out

import numpy as np  # noqa: E402

from app.config import get_settings  # noqa: E402
from app.contract.card import ModelCard, read_card  # noqa: E402
from app.contract.preprocessing import ImageError  # noqa: E402

CHUNK = 64  # files decoded per model call


def find_files(folder: Path) -> list[Path]:
    """Every regular file under `folder`, in a stable order; hidden files and folders skipped."""
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def score_folder(folder: Path, workers: int, progress: bool = True,
                 model_name: str | None = None) -> tuple[list, ModelCard]:
    """(BatchEntry list in file order, card) for every file under `folder`.

    The server's decode path: the same worker pool (app/services/decoders.py), with its time
    and memory budget per file, fed by one thread per worker; the model is called once per
    CHUNK files."""
    from app.schemas import BatchEntry
    from app.services.decoders import DecodePool, Job
    from app.services.inference import FileResult, to_prediction
    from app.services.registry import LoadedModel, find_model

    settings = get_settings()
    if model_name in (None, settings.model_name):
        path = find_model(settings.model_dir, settings.model_name, settings.model_version)
    else:  # another model of the folder, at its newest version, as ?model=NAME serves it
        path = find_model(settings.model_dir, model_name)
    card = read_card(path)
    # The threshold override is the default model's, as in the app.
    threshold = settings.threshold if card.name == settings.model_name else None
    files = find_files(folder)
    model = LoadedModel(path, card)
    pool = DecodePool(workers, timeout=settings.decode_timeout_seconds,
                      memory_mb=settings.decode_memory_mb)

    def prepare(file: Path):
        try:
            job = Job(file.read_bytes(), card.input_size, card.channels, model.guard,
                      settings.max_image_pixels)
            return pool.prepare(job), None
        except ImageError as exc:
            return None, exc

    entries: list = []
    bar = _Progress(len(files), enabled=progress)
    try:
        with ThreadPoolExecutor(max_workers=workers) as threads:
            prepared = threads.map(prepare, files)  # in file order, `workers` at a time
            for chunk in _chunks(enumerate(prepared), CHUNK):
                ready = [(i, film) for i, (film, _) in chunk if film is not None]
                probabilities = {}
                if ready:
                    out = model.predict(np.stack([film.model_input for _, film in ready]))
                    probabilities = dict(zip((i for i, _ in ready), (float(p) for p in out)))
                for index, (film, error) in chunk:
                    prediction = None if film is None else to_prediction(
                        model, film, probabilities[index], threshold, 0.0)
                    name = str(files[index].relative_to(folder))
                    entries.append(BatchEntry.of(FileResult(index, name, prediction, error),
                                                 card))
                bar.advance(len(chunk))
    finally:
        pool.close()
    bar.close()
    return entries, card


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _Progress:
    """A one-line progress bar on stderr: count, rate and time left."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, 0, enabled
        self.started = time.perf_counter()

    def advance(self, count: int) -> None:
        self.done += count
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed else 0.0
        left = (self.total - self.done) / rate if rate else 0.0
        filled = int(30 * self.done / max(self.total, 1))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} "
                         f"files, {rate:.0f} files/s, {left:.0f} s left ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.batch", description=__doc__.split(
        "\n")[0])
    parser.add_argument("folder", type=Path, help="folder of X-rays (searched recursively)")
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    parser.add_argument("--model", default=None,
                        help="which model to ask, by name (default: PNEUMONIA_MODEL_NAME)")
    parser.add_argument("--workers", type=int, default=None,
                        help="decoding processes (default: PNEUMONIA_DECODE_WORKERS, one per core)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")

    from app.services.worklist import worklist_csv

    workers = args.workers or get_settings().decode_workers or 1
    entries, card = score_folder(args.folder, workers, progress=not args.quiet,
                                 model_name=args.model)
    args.out.write_text(worklist_csv(entries))
    scored = sum(e.probability is not None for e in entries)
    flagged = sum(e.flagged for e in entries)
    print(f"{len(entries)} files: {scored} scored, {flagged} flagged, "
          f"{len(entries) - scored} not scored; worklist written to {args.out} "
          f"(model {card.name} v{card.version}). {card.disclaimer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
