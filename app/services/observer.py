"""What the film pipeline and the DICOM node report as they go, beside the pipeline so that
they never import the metrics module above them: the base `Observer` ignores everything
(`NO_METRICS`, for the folder command and tools); app/metrics.py `Metrics` counts it for
GET /metrics."""

from __future__ import annotations

from typing import Any

import numpy as np

# Fixed labels, so that no sender can invent series (app/metrics.py counts them).
# What the DICOM node takes but does not score (app/dicom/classes.py `ignored_kind`).
IGNORED_KINDS = ("structured_report", "presentation_state", "image", "other", "own_result")
# Films not taken as what their UIDs say (app/store/records.py Conflict).
CONFLICT_KINDS = ("patient", "instance")


class Observer:
    """What the pipeline and the DICOM node report as they go; this base ignores it."""

    def decoded(self, seconds: float) -> None:
        """A decoder's `prepare` returned or refused the film after `seconds`."""

    def refused(self, code: str) -> None:
        """A film was not scored: its error code (app/contract/errors.py)."""

    def inferred(self, seconds: float) -> None:
        """One model call (one film, or a chunk of a batch) took `seconds`."""

    def scored(self, model: Any, model_input: np.ndarray, prediction: Any,
               statistics: tuple[tuple[str, float], ...] = (),
               digest: bytes | None = None) -> None:
        """`model` (a ServedModel) scored a film: its (H, W, C) uint8 model input, its
        Prediction (app/services/pipeline.py) and its drift statistics and digest as the
        decoder computed them (PreparedFilm.statistics and .digest; empty or None: not
        computed)."""

    def association(self, result: str) -> None:
        """A DICOM association ended: released, aborted or rejected."""

    def ignored(self, kind: str) -> None:
        """The DICOM node acknowledged an instance it does not score (IGNORED_KINDS)."""

    def conflict(self, kind: str) -> None:
        """A film came under a study or SOP Instance UID that is another's (CONFLICT_KINDS):
        not merged, no results sent."""

    def notified(self, seconds: float) -> None:
        """A film's results reached the PACS `seconds` after the film arrived."""

    def results_failed(self, reason: str) -> None:
        """A scored film's results will not reach the PACS: why (app/dicom/failures.py
        ResultsFailure: identity, build, queue_full)."""

    def results_withheld(self) -> None:
        """A scored film's results were kept from the PACS on purpose: shadow mode."""


NO_METRICS = Observer()
