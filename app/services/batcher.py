"""Micro-batching: single-film predictions that arrive together share one model call.

A GPU scores 32 films in about the time of one, so joining concurrent requests multiplies
throughput there; on a CPU the network costs well under a millisecond per film and waiting
only adds latency, so the app turns this on where a GPU is visible (Settings.batch_wait_ms).
A call waits at most `wait` seconds for company after the first film of a batch arrives.
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
