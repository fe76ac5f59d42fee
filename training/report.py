"""The full-data run's fields of report.json (`created` ... `trust` of
app.contract.report.Report). Every protocol writes its fields through the contract's
`write_report_sections`, which validates the whole report first."""

from __future__ import annotations

from datetime import UTC, datetime

from app.contract.preprocessing import RESAMPLING
from training.augment import DESCRIPTIONS
from training.config import RunConfig
from training.data import Split
from training.experiments import FULL_PROTOCOL_DIFFERENCES
from training.provenance import dataset_info, environment

PROTOCOL = "full"  # all of train/ minus a validation split (training/study.py: the study's)
# 0.5 on the sigmoid, the study's (and Keras') default, for the seven-model comparison. The
# exported model's own threshold is an operating point chosen on validation (training/trust.py).
THRESHOLD = 0.5
THRESHOLD_METHOD = ("fixed at 0.5 (the original study's default); not tuned, so the test "
                    "split played no part in choosing it")


def now() -> str:
    """When a section was made: UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def full_run_sections(config: RunConfig, parts: dict[str, Split], results: list[dict],
                      figure_paths: dict, seconds: float, exported: dict | None = None,
                      trust: dict | None = None) -> dict:
    """Every field the full-data run owns; `exported` and `trust` None when it exported
    nothing (so an earlier run's are removed, not left beside new results)."""
    return {
        "created": now(),
        "protocol": PROTOCOL,
        "full_protocol_differences": {str(k): v for k, v in FULL_PROTOCOL_DIFFERENCES.items()},
        "command": config.command,
        "code_version": config.code_version,
        "environment": environment(),
        "wall_seconds": round(seconds, 1),
        "dataset": dataset_info(parts, config.val_fraction, config.seed,
                                config.limit_per_class),
        "input": {"height": config.image_size, "width": config.image_size,
                  "channels": config.channels, "resize": RESAMPLING},
        "augmentation": DESCRIPTIONS["study"],
        "threshold": THRESHOLD,
        "threshold_method": THRESHOLD_METHOD,
        "seed": config.seed,
        "experiments": results,
        "figures": figure_paths,
        "exported_model": exported,
        "trust": trust,
    }
