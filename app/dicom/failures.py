"""Why a scored film's results (its SR and secondary capture) will not reach the PACS: one
fixed set of reasons, which the worklist shows on the film (`results_error`), /metrics counts
(`pneumonia_results_failed_total{reason}`) and the PneumoniaTriageResultsNotSent alert
names. A result is never lost without one of these: the film keeps its score on the
worklist, and a person sends the study's result by hand.

Nothing here quotes a header value: an exception names the reason and, where one is to
blame, the tag (e.g. `(0020,000D) StudyInstanceUID`), never what it held.
"""

from __future__ import annotations

from enum import StrEnum


class ResultsFailure(StrEnum):
    IDENTITY = "identity"  # a UID or patient identifier that cannot be carried as received
    BUILD = "build"  # the SR or secondary capture could not be built (or rebuilt) from it
    QUEUE_FULL = "queue_full"  # PNEUMONIA_RESULTS_MAX_PENDING results were waiting already
    # Not a failure: withheld on purpose while PNEUMONIA_SHADOW_MODE is on (issue 31), counted
    # apart (pneumonia_results_withheld_total), never alerted on.
    SHADOW_MODE = "shadow_mode"

    @property
    def message(self) -> str:
        return MESSAGES[self]


MESSAGES = {
    ResultsFailure.IDENTITY: "No result was sent to the PACS: the film's study, series or "
                             "patient identifiers are not valid DICOM, and the node never "
                             "changes them. Report this film from the PACS by hand.",
    ResultsFailure.BUILD: "No result was sent to the PACS: its report could not be made from "
                          "this film's header. Report this film from the PACS by hand.",
    ResultsFailure.QUEUE_FULL: "No result was sent to the PACS: too many results were "
                               "waiting for it (PNEUMONIA_RESULTS_MAX_PENDING). Report this "
                               "film from the PACS by hand.",
    ResultsFailure.SHADOW_MODE: "No result was sent to the PACS: the node ran in shadow mode "
                                "(PNEUMONIA_SHADOW_MODE), a silent trial that sends none.",
}
# The reasons that are failures: counted in pneumonia_results_failed_total and alerted on.
FAILURES = tuple(reason for reason in ResultsFailure if reason is not ResultsFailure.SHADOW_MODE)


class ResultsNotMade(Exception):
    """The results of a film cannot be made: its `reason`, and the element to blame (a
    `(gggg,eeee) Keyword` string) when there is one. Its text never holds a value."""

    def __init__(self, reason: ResultsFailure, tag: str | None = None,
                 why: str | None = None) -> None:
        self.reason = reason
        self.tag = tag
        self.why = why
        super().__init__(" ".join(part for part in (reason.value, tag, why and f"({why})")
                                  if part))


class BuildUnavailable(Exception):
    """The results' build process stopped while building (app/dicom/build_process.py): not
    the job's fault, so it is tried again later, never abandoned."""


class BuildFailed(Exception):
    """Building raised in the build process: `kind` is its exception's type name (its text
    is not carried: it may quote the header's values)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind
