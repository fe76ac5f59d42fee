"""GET /operations/performance's answer (app/services/performance.py measures it)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.services.performance import Figure, ModelPerformance, Reference, Report, Table


class FigureInfo(BaseModel):
    """A proportion with its 95% Wilson interval."""

    value: float | None = Field(ge=0, le=1, description="null while it has no reads")
    low: float = Field(ge=0, le=1)
    high: float = Field(ge=0, le=1)
    successes: int = Field(ge=0)
    total: int = Field(ge=0, description="Its denominator: e.g. the studies read pneumonia, "
                                         "for sensitivity")

    @classmethod
    def of(cls, figure: Figure) -> FigureInfo:
        return cls(value=figure.value, low=figure.low, high=figure.high,
                   successes=figure.successes, total=figure.total)


class TableInfo(BaseModel):
    """Assessable studies by the model's answer and the read."""

    true_positive: int = Field(description="Flagged, read pneumonia")
    false_positive: int = Field(description="Flagged, read no pneumonia")
    false_negative: int = Field(description="Not flagged, read pneumonia")
    true_negative: int = Field(description="Not flagged, read no pneumonia")
    indeterminate_flagged: int
    indeterminate_not_flagged: int

    @classmethod
    def of(cls, table: Table) -> TableInfo:
        return cls(true_positive=table.tp, false_positive=table.fp,
                   false_negative=table.fn, true_negative=table.tn,
                   indeterminate_flagged=table.indeterminate_flagged,
                   indeterminate_not_flagged=table.indeterminate_routine)


class ReferenceInfo(BaseModel):
    source: str = Field(description="Where the validated figures come from")
    threshold: float = Field(description="The operating point they were measured at")
    figures: dict[str, FigureInfo]

    @classmethod
    def of(cls, reference: Reference | None) -> ReferenceInfo | None:
        if reference is None:
            return None
        return cls(source=reference.source, threshold=reference.threshold,
                   figures={k: FigureInfo.of(v) for k, v in reference.figures.items()})


class ModelPerformanceInfo(BaseModel):
    model: str | None = Field(description="null: studies no model scored")
    version: str | None
    thresholds: list[float] = Field(description="The operating points its films were "
                                                "scored at")
    reads: int = Field(description="Reads of studies it answered, in the window")
    judged: int = Field(description="Assessable studies with a definite read (pneumonia or "
                                    "no pneumonia): the figures' reads")
    indeterminate: int = Field(description="Assessable studies read indeterminate: in the "
                                           "flagged rate only")
    not_assessable: int = Field(description="Studies that needed a human look: counted "
                                            "apart, in no figure")
    table: TableInfo
    figures: dict[str, FigureInfo] = Field(description="sensitivity, specificity, ppv, npv, "
                                                       "flagged_rate")
    validated: ReferenceInfo | None = Field(description="The card's figures at its "
                                                        "operating point")
    verdict: str = Field(description="no_reads, no_reference, not_comparable (scored at "
                                     "another operating point), below (a sensitivity or "
                                     "specificity interval wholly below the card's), "
                                     "consistent")
    verdict_text: str
    below: list[str] = Field(description="The figures whose interval lies wholly below "
                                         "the card's")

    @classmethod
    def of(cls, model: ModelPerformance) -> ModelPerformanceInfo:
        return cls(model=model.model, version=model.version, thresholds=list(model.thresholds),
                   reads=model.reads, judged=model.judged, indeterminate=model.indeterminate,
                   not_assessable=model.not_assessable, table=TableInfo.of(model.table),
                   figures={k: FigureInfo.of(v) for k, v in model.figures.items()},
                   validated=ReferenceInfo.of(model.reference), verdict=model.verdict,
                   verdict_text=model.verdict_text, below=list(model.below))


class PerformanceResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "last": 500, "since": None, "reads": 3, "shadow_mode": False,
        "first_read_at": "2025-03-01T08:03:00Z", "last_read_at": "2025-03-01T09:10:00Z",
        "models": []}]})

    last: int = Field(description="The window: at most this many of the newest reads")
    since: datetime | None = Field(description="The window: only reads given from then on")
    reads: int = Field(description="Reads in the window, every model")
    first_read_at: datetime | None
    last_read_at: datetime | None
    shadow_mode: bool = Field(description="The server runs in shadow mode: these figures are "
                                          "what the model would have done, unseen by the "
                                          "readers")
    models: list[ModelPerformanceInfo]

    @classmethod
    def of(cls, report: Report, shadow_mode: bool) -> PerformanceResponse:
        return cls(last=report.last, since=report.since, reads=report.reads,
                   first_read_at=report.first_read_at, last_read_at=report.last_read_at,
                   shadow_mode=shadow_mode,
                   models=[ModelPerformanceInfo.of(m) for m in report.models])
