"""What the film pipeline and the DICOM node report as they go, beside the pipeline so that
they never import the metrics module above them: the base `Observer` ignores everything
(`NO_METRICS`, for the folder command and tools); app/metrics.py `Metrics` counts it for
GET /metrics."""

from __future__ import annotations

from typing import Any

import numpy as np


class Observer:
    """What the pipeline and the DICOM node report as they go; this base ignores it."""

    def decoded(self, seconds: float) -> None:
        """A decoder's `prepare` returned or refused the film after `seconds`."""

    def refused(self, code: str) -> None:
        """A film was not scored: its error code (app/contract/errors.py)."""

    def inferred(self, seconds: float) -> None:
        """One model call (one film, or a chunk of a batch) took `seconds`."""

    def scored(self, model: Any, model_input: np.ndarray, prediction: Any) -> None:
        """`model` (a ServedModel) scored a film: its (H, W, C) uint8 model input and its
        Prediction (app/services/pipeline.py)."""

    def association(self, result: str) -> None:
        """A DICOM association ended: released, aborted or rejected."""

    def notified(self, seconds: float) -> None:
        """A film's results reached the PACS `seconds` after the film arrived."""


NO_METRICS = Observer()
