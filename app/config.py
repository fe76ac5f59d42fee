"""The one settings class. Values come from PNEUMONIA_* environment variables or a .env file."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.contract.drift import PSI_THRESHOLD
from app.memory import RESULTS_BUILD_MB, SERVER_MEMORY_MB, within_budget

MIN_TOKEN_LENGTH = 16


class Settings(BaseSettings):
    # hide_input_in_errors: a rejected value (a token that is too short) is never printed.
    model_config = SettingsConfigDict(env_prefix="PNEUMONIA_", env_file=".env", extra="ignore",
                                      hide_input_in_errors=True)

    # Where models live: MODEL_DIR/<name>/<version>/ holds a SavedModel and its model_card.json;
    # MODEL_DIR/report.json and MODEL_DIR/figures/ are the evaluation report.
    model_dir: Path = Path("models")
    model_name: str = "pneumonia"
    model_version: int | None = Field(default=None, description="None = the newest version")
    # Other models the page and the API offer (?model=NAME), each at its newest version;
    # model_name stays the default. None = every model found in MODEL_DIR; [] = none.
    offered_models: list[str] | None = None
    # The default model's threshold. None = the site profile's, for the model version it
    # was validated on (`pneumonia-triage site adopt`), else the model card's; set, it wins
    # over both (app/contract/site.py: the order). Reported in every response.
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    # Ages, [first, last) in years, that this site has validated the default model on
    # besides its card's intended ages (app/contract/intended_use.py): a DICOM film whose
    # patient is in either range is ranked. E.g. PNEUMONIA_INTENDED_AGE_YEARS='[0, 18]'.
    # None = the card's ages only. Recorded in the audit trail at each start.
    intended_age_years: tuple[float, float] | None = None

    # One film's bytes (an upload, a file of a worklist, a DICOM data set, an archive's
    # file); over it the file is refused, file_too_large (413 over HTTP).
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    # Decompression-bomb guard, checked from the image header before decoding: 50 MP is far
    # above any chest radiograph (the largest sample is 6.4 MP).
    max_image_pixels: int = Field(default=50_000_000, gt=0)
    # A worklist request (/predict/batch, the page): files and bytes in one request.
    max_batch_files: int = Field(default=100, gt=0)
    max_batch_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    # Worklist requests scored at once (one more: 503), and each one's time: files whose
    # turn comes after it are answered 'request_too_slow', unread.
    max_concurrent_batches: int = Field(default=2, gt=0)
    batch_budget_seconds: float = Field(default=60.0, gt=0)
    # Decode workers that worklist requests' films may hold at once, all requests together;
    # None = every worker but one (at least one), so that with two workers or more a single
    # film always finds one.
    # The folder command, which serves nobody else, uses them all.
    batch_decode_workers: int | None = Field(default=None, gt=0)

    # Bounds under load. Places for films admitted for decoding across all scoring requests
    # (taken once a request's bytes are all in, in the request's thread): a film takes one
    # place per 8 MiB its header says it decodes to (app/services/weight.py: one for any
    # ordinary film, twelve for a 49-megapixel 16-bit PNG). Past them, up to decode_queue
    # films wait their turn in order, each at most decode_queue_seconds (ordinary overload
    # queues rather than failing); one more, or one that waited that long, is answered 503
    # with Retry-After. Requests beyond max_connections in flight get 503 (health routes
    # excepted).
    # An upload must keep sending (a pause longer than upload_idle_seconds) and finish
    # within upload_total_seconds, or it gets 408; the bytes of all uploads in flight share
    # max_upload_memory_bytes (over it: 503 at once).
    # 8 per core: a 224 px film decodes in 2 ms, so a lower cap (2 per core was tried) turned
    # 8 clients' small uploads into a storm of 503s and cut throughput fivefold, while the
    # memory of the worst case (16 films of 50 megapixels in flight on 2 cores) is bounded.
    max_concurrent_decodes: int = Field(default=8 * (os.cpu_count() or 1), gt=0)
    # Each waiting film holds a route thread (added to the pool, as the heatmaps' queue is)
    # and its body (within max_upload_memory_bytes). 32 clients of small films want 25 to
    # 30 places on 2 cores: half of them were refused without a queue (benchmarks/load.py).
    decode_queue: int = Field(default=64, ge=0)
    decode_queue_seconds: float = Field(default=30.0, ge=0)
    # The bytes of every upload and DICOM data set in flight, together; over it: 503 at once.
    max_upload_memory_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    # Heatmaps (?explain=true) computed at once: one per two cores (at least one); one more
    # is 503 at once. One per core let 16 clients looping on them take both cores of a
    # 2-core machine from normal films (31% of their quiet throughput, benchmarks/attacks.py).
    max_concurrent_explanations: int = Field(
        default=max(1, len(os.sched_getaffinity(0)) // 2), gt=0)
    # Past them, this many requests wait (each in a thread of its own, added to the route
    # threads, which costs no CPU) for up to explanation_wait_seconds; one more is 503 at
    # once, before its body is read. The queue makes clients that loop on heatmaps wait
    # their turn instead of taking 503s as fast as they can send requests: 16 such clients
    # left normal films 41% of their quiet throughput with a queue of 8, 67% with 16
    # (benchmarks/attacks.py, 2 cores).
    explanation_queue: int = Field(default=32, ge=0)
    explanation_wait_seconds: float = Field(default=5.0, ge=0)
    # Decoding runs in worker processes (app/services/decode_pool.py): this many (0 = in the
    # request's thread, no processes), each job stopped after decode_timeout_seconds, each
    # worker's address space capped at decode_memory_mb (None = no cap).
    # The default counts the cores this process may run on (its CPU affinity, which a
    # container's cpuset sets), not every core of the machine.
    decode_workers: int = Field(default=len(os.sched_getaffinity(0)) or 1, ge=0)
    decode_timeout_seconds: float = Field(default=10.0, gt=0)
    # Address space, not resident memory: a worker at rest takes about 160 MB of it, and a
    # 50-megapixel DICOM's float copies need well over 1 GB of it. Under a memory budget
    # (below), left unset: the budget's room for workers shared among them.
    decode_memory_mb: int | None = Field(default=2048, gt=0)
    # One memory budget for the whole process tree (a container's memory limit), MiB: the
    # serving process's share, every decode worker's cap and the bodies in flight together
    # must fit in it, or the server refuses to start and says which to change
    # (app/memory.py). None = no overall budget: each limit as set (a workstation).
    memory_budget_mb: int | None = Field(default=None, gt=0)
    # The serving process's share of it: TensorFlow (530 MiB resident before any model,
    # imported without Keras), the models offered (about 90 MiB each), Python and the
    # requests in flight beside their bodies. benchmarks/memory_tree.py measured 820 MiB at
    # rest with the two committed models and 843 MiB through two streamed worklists of 83 MB.
    server_memory_mb: int = Field(default=SERVER_MEMORY_MB, gt=0)
    # Micro-batching (app/services/batcher.py): single-film predictions arriving within this
    # many milliseconds share one model call. None = 2 ms where TensorFlow sees a GPU, no
    # window on a CPU (where waiting only adds latency); 0 = no window: the films that
    # arrive while a model call runs share the next one.
    batch_wait_ms: float | None = Field(default=None, ge=0)
    # Connections held open; past it, a new one closes the oldest that has not sent its
    # request head (app/web/server.py). Requests in flight have the same cap, health routes
    # never counted.
    max_connections: int = Field(default=256, gt=0)
    # A connection must complete each request head within this many seconds.
    request_head_seconds: float = Field(default=5.0, gt=0)
    # The request line and headers together; over it: 431.
    max_header_bytes: int = Field(default=16 * 1024, gt=0)
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
    api_token: SecretStr | None = None
    # How long the page's login lasts: the cookie is signed, carries its own expiry and
    # differs per login.
    session_hours: float = Field(default=12.0, gt=0)
    # Failed logins per client address within login_window_seconds before 429.
    max_failed_logins: int = Field(default=5, gt=0)
    login_window_seconds: float = Field(default=300.0, gt=0)
    # Origins allowed to call the API from other sites' pages (CORS). Empty = closed.
    cors_origins: list[str] = []

    # The pages' templates and assets; unset: the ones shipped with the package
    # (app.web.templates and app.web.static, the repository's templates/ and static/).
    templates_dir: Path | None = None
    static_dir: Path | None = None
    # The documentation site (`mkdocs build` writes it from docs/; `make run` builds it when
    # missing), served at /guide. A folder without an index.html: no /guide.
    guide_dir: Path = Path("site")

    # Addresses whose X-Forwarded-For the server trusts for the client's address (uvicorn's
    # forwarded_allow_ips, comma-separated, "*" = any): behind a reverse proxy or Ingress,
    # its address, so the per-client login throttle counts clients, not the proxy.
    forwarded_allow_ips: str = "127.0.0.1"

    # The address the web app and the DICOM node listen on: 0.0.0.0 (or the host's own
    # address) for clients on other machines, a PACS among them.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, gt=0, lt=65536)

    # --- The DICOM node (app/dicom/): studies in from the PACS, results back to it. ---
    # The node's AE title and port. The PACS is configured with these three (title, host,
    # port); 11112 is the registered DICOM port (104 needs root). 0 = no DICOM node.
    dicom_ae_title: str = Field(default="TRIAGE", min_length=1, max_length=16)
    dicom_port: int = Field(default=11112, ge=0, lt=65536)
    # Calling AE titles allowed to associate (PACS, modalities). Empty = any caller: fine on a
    # closed network; a hospital network names its PACS here (DICOM has no other login).
    dicom_allowed_aes: list[str] = []
    # Associations served at once: each scores its films in its own thread, so this bounds
    # the node's share of the decode slots; a caller beyond it is rejected (busy) and retries.
    dicom_max_associations: int = Field(default=8, gt=0)
    # Largest PDU we accept (bytes): pynetdicom's default 16 KiB costs a round trip per
    # 16 KiB of film; 1 MiB moves a 10 MB film in ten PDUs. Bounds one read's memory too.
    dicom_max_pdu_bytes: int = Field(default=1024 * 1024, ge=4096)
    # A silent peer (no PDU, no DIMSE message) is dropped after this many seconds, so a
    # stuck sender cannot hold an association slot for ever (ACSE, DIMSE, network timeouts).
    dicom_idle_seconds: float = Field(default=30.0, gt=0)
    # Bounds per client and in total (app/dicom/transport.py), so that no one client can
    # exhaust the node. TCP connections held at once, and from one address: past either, the
    # oldest connection that has not yet asked for an association is closed (or, if none
    # waits, the new one). 16 per address lets one PACS use every association slot with
    # room to spare; a sender behind the same address as an attacker shares its 16.
    dicom_max_connections: int = Field(default=64, gt=0)
    dicom_max_connections_per_address: int = Field(default=16, gt=0)
    # A connection must send its whole A-ASSOCIATE-RQ within this many seconds (a PACS sends
    # it at once); until then it waits without a thread and without an association slot.
    dicom_request_seconds: float = Field(default=10.0, gt=0)
    # Each PDU must arrive whole within this many seconds of its first byte, or the
    # association is aborted: a 1 MiB PDU needs about 52 KB/s, while a sender trickling a
    # byte every few seconds is cut off. A data set larger than max_upload_bytes is read
    # past and refused (0xC000), and the data sets in flight count in
    # max_upload_memory_bytes with the HTTP bodies (full: 0xA700, sent again later).
    dicom_pdu_seconds: float = Field(default=20.0, gt=0)
    # Where results (an SR per scored film, and a secondary capture) are sent: AE@host:port
    # of the PACS's storage SCP, and/or its DICOMweb STOW-RS URL (.../studies). None = the
    # results stay on the worklist only.
    results_destination: str | None = Field(default=None, pattern=r"^[^@]{1,16}@[^:]+:\d+$")
    results_dicomweb_url: str | None = None
    # A secondary capture (the film with the result burned in) beside each SR, for viewers
    # that do not render structured reports; most PACS viewers need it.
    results_secondary_capture: bool = True
    # Associations (or STOW-RS requests) delivering results at once, each carrying every
    # job of its share of a pass (app/dicom/delivery.py): one thread, one association a
    # film, delivered about 3 films/s.
    results_associations: int = Field(default=4, gt=0)
    # Results that may wait for the PACS at once (while it is down or refusing them), each
    # kept as a recipe of a few hundred KB (app/dicom/recipe.py: the header's identifiers,
    # the score, the secondary capture's film). Past it a new film's results are not made:
    # the film is listed with reason queue_full, counted and alerted on, never held in
    # memory or dropped silently.
    results_max_pending: int = Field(default=5000, gt=0)
    # --- end of the DICOM node's settings ---


    @field_validator("intended_age_years")
    @classmethod
    def _ages_are_a_range(cls, ages: tuple[float, float] | None
                          ) -> tuple[float, float] | None:
        if ages is not None and not 0 <= ages[0] < ages[1]:
            raise ValueError("PNEUMONIA_INTENDED_AGE_YEARS must be [first, last) years with "
                             "0 <= first < last, e.g. [0, 18]")
        return ages

    @field_validator("api_token")
    @classmethod
    def _token_long_enough(cls, token: SecretStr | None) -> SecretStr | None:
        # The message gives the length only: never the token.
        if token is not None and len(token.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(f"PNEUMONIA_API_TOKEN must have at least {MIN_TOKEN_LENGTH} "
                             f"characters; the one given has "
                             f"{len(token.get_secret_value())}")
        return token
    # --- The worklist (app/store/, issue 18) ---------------------------------------------
    # Where the server keeps state: the embedded SQLite worklist (worklist.db). Created on
    # start, so `make run` needs no database set-up.
    state_dir: Path = Path("var")
    # Another database for the worklist: postgresql+psycopg://USER:PASSWORD@HOST/DB, shared
    # by several replicas (whose schema `db upgrade` migrates; the app migrates only its
    # embedded SQLite). None = SQLite at STATE_DIR/worklist.db.
    database_url: str | None = None
    # The secret of the patient key (a salted hash of Patient ID and Issuer, the only trace
    # of the patient the worklist keeps, to see a study's films are one patient's: issue
    # 27). None = 32 random bytes made once in STATE_DIR/identity.key. Replicas that share
    # DATABASE_URL must share it: set the same value on each.
    identity_secret: SecretStr | None = None
    # Keep a small PNG of each film beside its result, and a copy at display size (512 px)
    # for the study view. Off by default: both are pictures of the patient's film, which
    # the worklist otherwise never keeps (the study view then links to the PACS).
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
    # A silent trial (issue 31): every film is scored and stored, reads are captured and
    # GET /operations/performance measures what the model would have done, but no page or
    # API answer for clinicians carries a result (the worklist lists studies in arrival
    # order), no SR or secondary capture leaves for the PACS, and every page shows a banner.
    # Turning it on or off is recorded in the audit trail at the next start.
    shadow_mode: bool = False
    # --- end of the worklist's settings --------------------------------------------------

    @field_validator("viewer_url")
    @classmethod
    def _viewer_url_is_a_web_address(cls, template: str | None) -> str | None:
        # The page puts it in a link: nothing but a web address, never javascript: or data:.
        if template is not None and (not template.startswith(("https://", "http://"))
                                     or "{study_uid}" not in template):
            raise ValueError("PNEUMONIA_VIEWER_URL must be an http(s) address containing "
                             "{study_uid}")
        return template

    # --- Operations (app/metrics.py, app/logs.py; README "Operations") ---------------------
    # Log lines as text for a terminal, or "json": one object per line for a log pipeline.
    log_format: Literal["text", "json"] = "text"
    # Drift: each model's last drift_window films against its validation films; a statistic
    # whose population stability index passes drift_psi_threshold shows a banner on the
    # pages and fires the PneumoniaTriageDrift alert. A window under drift_min_films is not
    # judged: chance alone gives about 9/n (0.09 at 100 films, 0.018 at 500).
    drift_window: int = Field(default=500, ge=10)
    drift_min_films: int = Field(default=100, ge=1)
    drift_psi_threshold: float = Field(default=PSI_THRESHOLD, gt=0)

    @model_validator(mode="after")
    def _fits_the_memory_budget(self) -> Settings:
        # Derived or checked once, here: every door (the server, the folder command) reads
        # the same limits, and a configuration that cannot fit never starts.
        if self.memory_budget_mb is not None:
            given = "decode_memory_mb" in self.model_fields_set
            self.decode_memory_mb = within_budget(
                budget_mb=self.memory_budget_mb, server_mb=self.server_memory_mb,
                bodies_bytes=self.max_upload_memory_bytes, workers=self.decode_workers,
                worker_mb=self.decode_memory_mb if given else None, given=given,
                build_mb=RESULTS_BUILD_MB if self.results_build_process else 0)
        return self

    @property
    def results_build_process(self) -> bool:
        """Whether the DICOM node builds results in a process of its own: where it sends
        them (app/dicom/node.py), which shadow mode withholds."""
        return bool(self.results_destination or self.results_dicomweb_url) \
            and not self.shadow_mode

@lru_cache
def get_settings() -> Settings:
    return Settings()
