"""Micro-batching: single-film predictions that arrive together share one model call.

Two ways, chosen by Settings.batch_wait_ms:

- `SharedCalls` (on a CPU, the default): no window. A film that finds no model call running
  is scored at once, in its own thread; films that arrive while a call runs wait, and the
  next call takes every one of them. Nothing waits for company, so one client sees no
  added latency, while 8 concurrent clients share calls (TensorFlow's fixed cost of a call,
  about 1 ms on 2 cores, was paid once per film: benchmarks/load.py).
- `MicroBatcher` (where a GPU is visible): a call waits at most `wait` seconds for company
  after the first film of a batch arrives. A GPU scores 32 films in about the time of one,
  so joining concurrent requests multiplies throughput there.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

log = logging.getLogger("app.batcher")


class MicroBatcher:
    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], wait: float,
                 max_batch: int = 32) -> None:
        self._predict = predict
        self.wait = wait
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[np.ndarray, Future]] = queue.SimpleQueue()
        self.calls = 0  # model calls made, for tests and logs
        threading.Thread(target=self._loop, name="micro-batcher", daemon=True).start()

    def predict(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, C) -> (N,), answered from a shared model call."""
        future: Future = Future()
        self._queue.put((images, future))
        return future.result()

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self.wait
            size = len(batch[0][0])
            while size < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
                batch.append(item)
                size += len(item[0])
            self._run(batch)

    def _run(self, batch: list[tuple[np.ndarray, Future]]) -> None:
        try:
            self.calls += 1
            out = self._predict(np.concatenate([images for images, _ in batch]))
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the failure
            for _, future in batch:
                future.set_exception(exc)
            return
        start = 0
        for images, future in batch:
            future.set_result(out[start:start + len(images)])
            start += len(images)


class SharedCalls:
    """Concurrent callers' films in shared model calls, without a window: a caller that finds
    no call running makes one with its own films; callers that arrive meanwhile wait, and
    when the call ends the first of them makes the next one for all of them (at most
    `max_batch` films), in its own thread. No thread of its own; thread-safe."""

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], max_batch: int = 32) -> None:
        self._predict = predict
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._running = False
        self._waiting: list[_Call] = []
        self.calls = 0  # model calls made, for tests and logs

    def predict(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, C) -> (N,), from a model call shared with the callers waiting now."""
        mine = _Call(images)
        with self._lock:
            if self._running:
                self._waiting.append(mine)
            else:
                self._running = True
                mine.batch = [mine]
        if mine.batch is None:
            mine.ready.wait()  # answered by another's call, or asked to make the next one
        if mine.batch is not None:
            try:
                self._run(mine.batch)
            finally:
                self._hand_on()
        return mine.answer()

    def _run(self, batch: list[_Call]) -> None:
        self.calls += 1
        try:
            out = self._predict(np.concatenate([call.images for call in batch]))
        except Exception as exc:  # noqa: BLE001 - every film of the call gets the failure
            for call in batch:
                call.error = exc
        else:
            start = 0
            for call in batch:
                call.result = out[start:start + len(call.images)]
                start += len(call.images)
        for call in batch:
            call.batch = None
            call.ready.set()

    def _hand_on(self) -> None:
        """The films that waited during the call to the first of them, who makes the next
        call; or no call running."""
        with self._lock:
            if not self._waiting:
                self._running = False
                return
            batch, size = [], 0
            while self._waiting and (not batch or
                                     size + len(self._waiting[0].images) <= self.max_batch):
                call = self._waiting.pop(0)
                batch.append(call)
                size += len(call.images)
            batch[0].batch = batch
        batch[0].ready.set()


class _Call:
    __slots__ = ("batch", "error", "images", "ready", "result")

    def __init__(self, images: np.ndarray) -> None:
        self.images = images
        self.ready = threading.Event()
        self.batch: list[_Call] | None = None  # set: this caller makes the call for them
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None

    def answer(self) -> np.ndarray:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result
