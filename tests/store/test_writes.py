"""add_films under concurrency and crashes, on SQLite and PostgreSQL: two OS processes
racing on one SOP Instance UID, two replicas racing on conflicting films, and a writer
killed with SIGKILL at a random moment."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.store import FilmRecord, WorklistStore
from app.store.models import Film, Study
from tests.store.factories import T0, film
from tests.store.writer import FILMS_PER_STUDY

REPO = Path(__file__).resolve().parents[2]
ROUNDS = 40
STUDIES = 4  # rounds share studies, so the racers also contend for study rows


def _round_films(round_: int, name: str) -> list[FilmRecord]:
    """Even rounds: both racers send the same SOP Instance UID (idempotence). Odd rounds:
    each sends its own film of the same study (no lost update of the study's summary)."""
    study = f"race.{round_ % STUDIES}"
    sop = f"{study}.{round_}" + ("" if round_ % 2 == 0 else f".{name}")
    return [film(study, sop, 0.5 * round_ / ROUNDS)]


def _racer(url: str, name: str, barrier: multiprocessing.synchronize.Barrier,
           errors: multiprocessing.Queue) -> None:
    store = WorklistStore(url)
    try:
        for round_ in range(ROUNDS):
            records = _round_films(round_, name)
            barrier.wait(timeout=60)
            [entry] = store.add_films(records)
            assert records[0].sop_instance_uid in {f.sop_instance_uid for f in entry.films}
    except BaseException as exc:  # reported to the parent, which fails the test
        errors.put(f"{name}: {exc!r}")
        barrier.abort()
    finally:
        store.close()


@pytest.mark.slow
def test_add_films_two_processes_racing_on_one_sop(url: str) -> None:
    context = multiprocessing.get_context("spawn")
    barrier, errors = context.Barrier(2), context.Queue()
    racers = [context.Process(target=_racer, args=(url, name, barrier, errors))
              for name in ("left", "right")]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=240)
    assert [racer.exitcode for racer in racers] == [0, 0], errors.get(timeout=5)
    assert errors.empty()
    expected = {r.sop_instance_uid: r for round_ in range(ROUNDS)
                for name in ("left", "right") for r in _round_films(round_, name)}
    store = WorklistStore(url)
    try:
        with Session(store.engine) as session:
            films = session.scalars(select(Film.sop_instance_uid)).all()
            studies = session.execute(select(Study.study_instance_uid, Study.film_count,
                                             Study.priority)).all()
    finally:
        store.close()
    assert sorted(films) == sorted(expected)  # each SOP once
    assert len(studies) == STUDIES
    for uid, film_count, priority in studies:
        mine = [r for r in expected.values() if r.study_instance_uid == uid]
        assert film_count == len(mine)  # no lost update of the study row
        assert priority == max(r.probability for r in mine)


def _printed_lines(process: subprocess.Popen[str], lines: list[str],
                   enough: threading.Event, wanted: int) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if len(lines) >= wanted:
            enough.set()
    enough.set()  # the writer ended: the parent must not wait on


def _kill_writer_at_random(url: str, prefix: str, rng: random.Random) -> list[str]:
    """Run the writer, SIGKILL it after a random number of entries and a random extra
    moment; the lines it printed."""
    process = subprocess.Popen([sys.executable, "-m", "tests.store.writer", url, prefix],
                               cwd=REPO, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    lines: list[str] = []
    enough = threading.Event()
    reader = threading.Thread(target=_printed_lines,
                              args=(process, lines, enough, rng.randint(3, 25)))
    reader.start()
    assert enough.wait(timeout=120), "the writer printed too few entries"
    assert process.poll() is None, "the writer ended by itself"
    # Somewhere inside the next add_films: it takes a few milliseconds.
    deadline = time.perf_counter() + rng.uniform(0, 0.02)
    while time.perf_counter() < deadline:
        pass
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    reader.join(timeout=30)
    assert process.returncode == -signal.SIGKILL
    return list(lines)


@pytest.mark.slow
def test_add_films_survives_kill_9(url: str) -> None:
    rng = random.Random()
    for attempt in range(3):
        printed = _kill_writer_at_random(url, f"kill{attempt}", rng)
        store = WorklistStore(url)
        try:
            for line in printed:  # every entry the writer called stored is there, whole
                entry_id, study = line.split()
                entry = store.entry(int(entry_id))
                assert entry.study_instance_uid == study
                assert len(entry.films) == FILMS_PER_STUDY
            with Session(store.engine) as session:  # and no half-written entry exists
                counted = session.execute(
                    select(Study.study_instance_uid, Study.film_count, func.count(Film.id))
                    .outerjoin(Film).group_by(Study.id)).all()
        finally:
            store.close()
        assert counted, "nothing was stored"
        assert all(stored == FILMS_PER_STUDY and films == FILMS_PER_STUDY
                   for _, stored, films in counted), counted
        # at most the one being written when killed is stored but not printed
        assert len({uid for uid, *_ in counted if uid.startswith(f"kill{attempt}.")}) in (
            len(printed), len(printed) + 1)


# --- study and instance integrity across replicas (issue 27) ---------------------------------

KEY = {"left": "a" * 64, "right": "b" * 64}  # each racer's patient key and pixel hash
T_LATER = T0.replace(year=2100)  # every queued delivery is due by then


def _conflict_round(round_: int, name: str) -> FilmRecord:
    """Even rounds: a new study, each racer a film of its own patient under its UID. Odd
    rounds: each racer other pixels under one new SOP Instance UID."""
    if round_ % 2 == 0:
        return film(f"who.{round_}", f"who.{round_}.{name}", 0.3, patient_key=KEY[name],
                    content_hash=KEY[name])
    return film(f"what.{round_}", f"what.{round_}.1", 0.3, patient_key=KEY["left"],
                content_hash=KEY[name])


def _conflict_racer(url: str, name: str, barrier: multiprocessing.synchronize.Barrier,
                    results: multiprocessing.Queue) -> None:
    store = WorklistStore(url)  # a replica: its own engine and connections
    try:
        for round_ in range(ROUNDS):
            record = _conflict_round(round_, name)
            barrier.wait(timeout=60)
            added = store.add_received([record], {record.sop_instance_uid: [b"sr"]})
            conflict = added.conflicts.get(record.sop_instance_uid)
            results.put((round_, name, None if conflict is None else conflict.value))
    except BaseException as exc:
        results.put((-1, name, repr(exc)))
        barrier.abort()
    finally:
        store.close()


@pytest.mark.slow
def test_two_replicas_racing_on_conflicting_films_merge_neither(url: str) -> None:
    """Two replicas, at the same moment, each a film of another patient under one new
    Study Instance UID, or other pixels under one SOP Instance UID: the database's
    uniqueness and the study row's lock decide, never a read before a write. One film is
    the study's (or the instance), the other a conflict, each told so; only the taken
    one's results are queued."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    racers = [context.Process(target=_conflict_racer, args=(url, name, barrier, results))
              for name in KEY]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=240)
    told = [results.get(timeout=5) for _ in range(2 * ROUNDS)]
    assert [racer.exitcode for racer in racers] == [0, 0], told
    store = WorklistStore(url)
    try:
        with Session(store.engine) as session:
            studies = {row.study_instance_uid: row for row in session.execute(
                select(Study.study_instance_uid, Study.patient_key, Study.status,
                       Study.conflict_of, Study.film_count))}
            films = {sop: digest for sop, digest in session.execute(
                select(Film.sop_instance_uid, Film.content_hash))}
        queued = {d.sop_instance_uid for d in store.due_deliveries(T_LATER, limit=500)}
    finally:
        store.close()
    for round_ in range(ROUNDS):
        conflicts = {name: kind for r, name, kind in told if r == round_}
        assert sorted(conflicts.values(), key=str) == sorted(
            [None, "patient" if round_ % 2 == 0 else "instance"], key=str), conflicts
        [winner] = [name for name, kind in conflicts.items() if kind is None]
        [loser] = [name for name, kind in conflicts.items() if kind is not None]
        winning = _conflict_round(round_, winner)
        assert winning.sop_instance_uid in queued
        if round_ % 2 == 0:
            study = studies[f"who.{round_}"]
            assert study.patient_key == KEY[winner] and study.film_count == 1
            [apart] = [s for s in studies.values() if s.conflict_of == f"who.{round_}"]
            assert apart.status == "conflict" and apart.patient_key == KEY[loser]
            assert _conflict_round(round_, loser).sop_instance_uid not in queued
        else:
            assert films[f"what.{round_}.1"] == KEY[winner]  # the first pixels stand
            assert queued & {f"what.{round_}.1"} == {f"what.{round_}.1"}
