"""models/report.json is written by several protocols: each adds its own sections and keeps
every other one."""

from __future__ import annotations

import json
from pathlib import Path


def merge_sections(out: Path, sections: dict) -> dict:
    """Set `sections` (name -> content) in OUT/report.json, keeping the others."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    report = json.loads(path.read_text()) if path.is_file() else {}
    report.update(sections)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return report
