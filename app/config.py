"""The one settings class. Values come from PNEUMONIA_* environment variables or a .env file."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PNEUMONIA_", env_file=".env", extra="ignore")

    # Where models live: MODEL_DIR/<name>/<version>/ holds a SavedModel and its model_card.json;
    # MODEL_DIR/report.json and MODEL_DIR/figures/ are the evaluation report.
    model_dir: Path = Path("models")
    model_name: str = "pneumonia"
    model_version: int | None = Field(default=None, description="None = the newest version")
    # Other models the page and the API offer (?model=NAME), each at its newest version;
    # model_name stays the default. None = every model found in MODEL_DIR; [] = none.
    offered_models: list[str] | None = None
    # None = the threshold in the model card. An override is reported in every response.
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)

    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    # Decompression-bomb guard, checked from the image header before decoding: 50 MP is far
    # above any chest radiograph (the largest sample is 6.4 MP).
    max_image_pixels: int = Field(default=50_000_000, gt=0)
    # A worklist request (/predict/batch, the page): files and bytes in one request.
    max_batch_files: int = Field(default=100, gt=0)
    max_batch_bytes: int = Field(default=200 * 1024 * 1024, gt=0)

    # Bounds under load. Decodes in flight across all scoring requests: one more is answered
    # 503 with Retry-After at once, never queued. Connections beyond max_connections get 503
    # from uvicorn; an upload must keep sending (a pause longer than upload_idle_seconds) and
    # finish within upload_total_seconds, or it gets 408.
    # 8 per core: a 224 px film decodes in 2 ms, so a lower cap (2 per core was tried) turned
    # 8 clients' small uploads into a storm of 503s and cut throughput fivefold, while the
    # memory of the worst case (16 films of 50 megapixels in flight on 2 cores) is bounded.
    max_concurrent_decodes: int = Field(default=8 * (os.cpu_count() or 1), gt=0)
    # Decoding runs in worker processes (app/services/decoders.py): this many (0 = in the
    # request's thread, no processes), each job stopped after decode_timeout_seconds, each
    # worker's address space capped at decode_memory_mb (None = no cap).
    # The default counts the cores this process may run on (its CPU affinity, which a
    # container's cpuset sets), not every core of the machine.
    decode_workers: int = Field(default=len(os.sched_getaffinity(0)) or 1, ge=0)
    decode_timeout_seconds: float = Field(default=10.0, gt=0)
    # Address space, not resident memory: a worker at rest takes about 160 MB of it, and a
    # 50-megapixel DICOM's float copies need well over 1 GB of it.
    decode_memory_mb: int | None = Field(default=2048, gt=0)
    # Micro-batching (app/services/batcher.py): single-film predictions arriving within this
    # many milliseconds share one model call. None = 2 ms where TensorFlow sees a GPU, off on
    # a CPU (where it only adds latency); 0 = off.
    batch_wait_ms: float | None = Field(default=None, ge=0)
    max_connections: int = Field(default=256, gt=0)
    keep_alive_seconds: int = Field(default=5, gt=0)
    upload_idle_seconds: float = Field(default=15.0, gt=0)
    upload_total_seconds: float = Field(default=120.0, gt=0)
    # After its first 2 s an upload must average this rate (0 = no minimum): 16 KiB/s lets a
    # 20 MiB film take 20 minutes, so only upload_total_seconds binds a real client, while
    # a client that trickles bytes to hold a decode slot is cut off within seconds.
    upload_min_bytes_per_second: float = Field(default=16 * 1024, ge=0)

    # Optional access token for the scoring routes (/predict, the upload page): clients send
    # "Authorization: Bearer <token>", the page asks for it once and keeps a session cookie.
    # None = open, for a workstation or a trusted network.
    api_token: SecretStr | None = Field(default=None, min_length=16)
    # Origins allowed to call the API from other sites' pages (CORS). Empty = closed.
    cors_origins: list[str] = []

    templates_dir: Path = Path("templates")
    static_dir: Path = Path("static")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, gt=0, lt=65536)

    # --- The worklist (app/store/, issue 18) ---------------------------------------------
    # Where the server keeps state: the embedded SQLite worklist (worklist.db). Created on
    # start, so `make run` needs no database set-up.
    state_dir: Path = Path("var")
    # Another database for the worklist: postgresql+psycopg://USER:PASSWORD@HOST/DB, shared
    # by several replicas (whose schema `db upgrade` migrates; the app migrates only its
    # embedded SQLite). None = SQLite at STATE_DIR/worklist.db.
    database_url: str | None = None
    # Keep a small PNG of each film beside its result. Off by default: a thumbnail is a
    # picture of the patient's film, which the worklist otherwise never keeps.
    worklist_thumbnails: bool = False
    # Entries are deleted this many days after their last film arrived: a triage list is
    # worked within days; the report in the PACS, not this list, is the record.
    worklist_retention_days: int = Field(default=30, gt=0)
    # Audit records (who opened, changed or exported which entry) outlive the entries they
    # name, so that an access can still be traced once its entry is gone: one year.
    audit_retention_days: int = Field(default=365, gt=0)
    # A link per study to the PACS viewer; "{study_uid}" is replaced by the Study Instance
    # UID, e.g. https://pacs.example/viewer?StudyInstanceUIDs={study_uid}. None = no link.
    viewer_url: str | None = None
    # The audit trail's "who": behind a trusted reverse proxy that authenticates users, the
    # header carrying the user name (e.g. X-Forwarded-User). None = the token's holder.
    # Only set it when clients cannot reach the app except through that proxy: anyone who
    # can, can claim any name.
    trusted_user_header: str | None = None
    # --- end of the worklist's settings --------------------------------------------------


@lru_cache
def get_settings() -> Settings:
    return Settings()
