"""Micro-batching: concurrent single-film predictions share model calls and get their own
answers back."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from app.services.batcher import MicroBatcher, SharedCalls
from tests.builders.images import jpeg_bytes, model_output


def _film(value: float) -> np.ndarray:
    return np.full((1, 4, 4, 1), value, dtype=np.float32)


def test_concurrent_calls_share_model_calls_and_get_their_own_answers():
    seen = []

    def predict(images):
        seen.append(len(images))
        return images.reshape(len(images), -1).mean(axis=1)  # each film's own value

    batcher = MicroBatcher(predict, wait=0.2, max_batch=8)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda v: batcher.predict(_film(v)), range(8)))
    assert [float(a[0]) for a in answers] == list(range(8))
    assert sum(seen) == 8 and len(seen) < 8 and max(seen) <= 8


def test_a_failing_model_call_fails_every_request_in_it_and_the_next_works():
    calls = []

    def predict(images):
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("device lost")
        return np.zeros(len(images))

    batcher = MicroBatcher(predict, wait=0.0)
    with pytest.raises(RuntimeError, match="device lost"):
        batcher.predict(_film(1))
    assert batcher.predict(_film(1)).tolist() == [0.0]


@pytest.mark.slow
def test_the_app_micro_batches_when_asked_and_answers_as_without(client_factory):
    films = [jpeg_bytes(90 + 10 * i, 80, seed=i) for i in range(6)]
    answers = {}
    for name, wait_ms in (("plain", 0), ("batched", 50)):
        with client_factory(batch_wait_ms=wait_ms) as client:
            with ThreadPoolExecutor(6) as pool:
                responses = list(pool.map(
                    lambda data: client.post("/predict", files={"file": ("x.jpeg", data)}),
                    films))
            answers[name] = [model_output(r.json()) for r in responses]
            model = client.app.state.catalog.default
            # With a window, a MicroBatcher; without one, calls shared with those waiting.
            kind = MicroBatcher if name == "batched" else SharedCalls
            assert isinstance(model._batcher, kind)
            if name == "batched":
                assert model._batcher.calls < len(films)
    np.testing.assert_allclose(answers["batched"], answers["plain"], atol=1e-6)


def test_shared_calls_join_the_films_waiting_and_each_gets_its_own_answer():
    """No window: the first caller's call starts at once; those that arrive while it runs
    share the next one."""
    import threading

    from app.services.batcher import SharedCalls

    started, release = threading.Event(), threading.Event()
    seen = []

    def predict(images):
        seen.append(len(images))
        if len(seen) == 1:  # hold the first call until the others wait
            started.set()
            release.wait(10)
        return images.reshape(len(images), -1).mean(axis=1)

    shared = SharedCalls(predict, max_batch=8)
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(shared.predict, _film(0))
        started.wait(10)
        rest = [pool.submit(shared.predict, _film(v)) for v in range(1, 6)]
        from tests.servers import poll

        poll(lambda: len(shared._waiting) == 5, 10, "five films waiting")
        release.set()
        answers = [first.result()] + [f.result() for f in rest]
    assert [float(a[0]) for a in answers] == list(range(6))
    assert seen == [1, 5] and shared.calls == 2


def test_a_failing_shared_call_fails_its_films_and_the_next_works():
    from app.services.batcher import SharedCalls

    calls = []

    def predict(images):
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("device lost")
        return np.zeros(len(images))

    shared = SharedCalls(predict)
    with pytest.raises(RuntimeError, match="device lost"):
        shared.predict(_film(1))
    assert shared.predict(_film(1)).tolist() == [0.0]
