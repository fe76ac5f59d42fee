"""score_films holds few files at once (app/services/pipeline.py): a file is read only when
a decoding place is free and let go once decoded, a refused one too (its error is kept
without the traceback whose frames hold it). The folder command and a streamed worklist
rely on it."""

from __future__ import annotations

import threading

import pytest

from app.services.pipeline import inline_scorer, score_films
from tests.builders.images import jpeg_bytes


class _Counted(bytes):
    """Bytes that count themselves while alive."""

    live = 0
    peak = 0
    lock = threading.Lock()

    def __new__(cls, data: bytes) -> _Counted:
        with cls.lock:
            cls.live += 1
            cls.peak = max(cls.peak, cls.live)
        return super().__new__(cls, data)

    def __del__(self) -> None:
        with _Counted.lock:
            _Counted.live -= 1


@pytest.mark.parametrize("parallel", [1, 2])
def test_films_are_read_in_turn_and_let_go_once_decoded(client, parallel):
    model = client.app.state.catalog.default
    scorer = inline_scorer(model, 0.5, 50_000_000)
    films = [jpeg_bytes(seed=i) for i in range(3)]
    junk = b"not an image\n" * 100

    def source(i: int):
        return lambda: _Counted(films[i % 3] if i % 2 else junk)

    _Counted.live = _Counted.peak = 0
    results = list(score_films(scorer, [(f"{i}", source(i)) for i in range(40)],
                               parallel=parallel, chunk=16))
    assert [r.error is None for r in results] == [bool(i % 2) for i in range(40)]
    assert _Counted.peak <= parallel, f"{_Counted.peak} files held at once"
    assert _Counted.live == 0
