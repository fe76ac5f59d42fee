"""`archive status DIR`: what an output folder holds, and whether its run finished."""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

from app.archive.output import Output
from app.archive.run import ArchiveError


def status(out: str, alive: Callable[[int], bool] | None = None) -> dict[str, Any]:
    """What an output folder holds: its last run's manifest (status, model, counts), and
    over every committed row: rows, distinct keys, decisions, refusals by code, shards, and
    files a killed run left uncommitted. A run marked running whose process on this host is
    gone is reported `stopped` (resume it with --resume)."""
    output = Output(out)
    manifest = output.manifest()
    if manifest is None and not output.shards():
        raise ArchiveError(f"{out} holds no archive run (no run.json, no results)")
    state = None if manifest is None else manifest.get("status")
    if state == "running" and manifest.get("host") == socket.gethostname() \
            and not (alive or _alive)(int(manifest.get("pid", 0))):
        state = "stopped"
    shards = output.shards()
    data = output.dataset()
    decisions: Counter = Counter()
    errors: Counter = Counter()
    keys: set[str] = set()
    if data is not None:
        for batch in data.to_batches(columns=["decision", "error", "key"]):
            decisions.update(batch.column("decision").to_pylist())
            errors.update(code for code in batch.column("error").to_pylist() if code)
            keys.update(key for key in batch.column("key").to_pylist() if key)
    return {"status": state, "run_id": manifest and manifest.get("run_id"),
            "model": manifest and manifest.get("model"),
            "engine": manifest and manifest.get("engine"),
            "last_run": manifest and manifest.get("counts"),
            "rows": sum(shard.rows for shard in shards), "distinct_keys": len(keys),
            "shards": len(shards), "uncommitted_files": len(output.uncommitted()),
            "decisions": {("refused" if k is None else k): v
                          for k, v in sorted(decisions.items(), key=lambda i: str(i[0]))},
            "errors": dict(sorted(errors.items()))}


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status_text(found: dict[str, Any]) -> str:
    """`archive status` as people read it."""
    model = found["model"] or {}
    lines = [f"status: {found['status'] or 'unknown'} (run {found['run_id']})",
             f"model: {model.get('name')} v{model.get('version')}, threshold "
             f"{model.get('threshold')}" + (f" ({point['text']})" if (
                 point := model.get("operating_point")) else ""),
             f"rows committed: {found['rows']} in {found['shards']} shards "
             f"({found['distinct_keys']} distinct films)"]
    lines.append("decisions: " + ", ".join(f"{k} {v}" for k, v in found["decisions"].items()))
    if found["errors"]:
        lines.append("refused: " + ", ".join(f"{k} {v}" for k, v in found["errors"].items()))
    if found["last_run"]:
        run = found["last_run"]
        lines.append(f"last run: {run['listed']} listed, {run['rows']} rows written, "
                     f"{run['resumed']} skipped as written before")
    if found["uncommitted_files"]:
        lines.append(f"{found['uncommitted_files']} uncommitted files (a stopped run's last "
                     "shard): --resume deletes them and scores their films again")
    if found["status"] in ("stopped", "failed", "interrupted"):
        lines.append("the run did not finish: run the same command with --resume")
    return "\n".join(lines)
