"""A real PACS for the tests: Debian's Orthanc on free loopback ports, configured by a
generated JSON file, its storage in a temporary folder, no authentication, with our node as
a known modality (and the only one allowed to store into it besides its REST API).

    with running_orthanc(tmp_path, {"triage": ("TRIAGE", "127.0.0.1", node_port)}) as pacs:
        study = pacs.upload(file_bytes)["ParentStudy"]
        pacs.send("triage", [study])
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import free_port, poll, stop_process

ORTHANC = "/usr/sbin/Orthanc"
START_SECONDS = 60


@dataclass
class Orthanc:
    url: str  # REST API, http://127.0.0.1:<port>
    dicom_port: int
    ae_title: str
    log_path: Path

    def rest(self, method: str, path: str, body: bytes | dict | list | None = None,
             timeout: float = 120):
        """The REST API's answer to one request: parsed JSON, or bytes for files."""
        data = json.dumps(body).encode() if isinstance(body, dict | list) else body
        request = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
            if response.headers.get_content_type() == "application/json":
                return json.loads(payload)
            return payload

    def upload(self, dicom: bytes) -> dict:
        """POST /instances: {"ID", "ParentStudy", "Status", ...}."""
        return self.rest("POST", "/instances", dicom)

    def send(self, modality: str, resources: list[str]) -> dict:
        """C-STORE `resources` (Orthanc IDs of instances, series or studies) to a modality
        of the configuration, synchronously: Orthanc's job answer."""
        return self.rest("POST", f"/modalities/{modality}/store",
                         {"Resources": resources, "Synchronous": True})

    def study_instances(self, study_id: str) -> list[dict]:
        """Every instance of a study, with its main DICOM tags."""
        return self.rest("GET", f"/studies/{study_id}/instances?expand")

    def tags(self, instance_id: str) -> dict:
        return self.rest("GET", f"/instances/{instance_id}/simplified-tags")

    def file(self, instance_id: str) -> bytes:
        return self.rest("GET", f"/instances/{instance_id}/file")


def configuration(root: Path, http_port: int, dicom_port: int, ae_title: str,
                  modalities: dict[str, tuple[str, str, int]]) -> dict:
    """Orthanc's JSON configuration: loopback only, nothing outside `root`."""
    return {
        "Name": "test-pacs",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "index"),
        "Plugins": [],
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,  # the REST API answers loopback only
        "AuthenticationEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": ae_title,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": True,
        # Only the configured modalities may store, and only from their own host.
        "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowEcho": False,
        "DicomCheckModalityHost": True,
        "DicomModalities": {
            name: {"AET": aet, "Host": host, "Port": port, "AllowStore": True,
                   "AllowEcho": True}
            for name, (aet, host, port) in modalities.items()},
        "DicomScuTimeout": 30,
        "StableAge": 60,
        "SaveJobs": False,
        "ConcurrentJobs": 2,
        "HttpThreadsCount": 8,
    }


@contextmanager
def running_orthanc(root: Path, modalities: dict[str, tuple[str, str, int]],
                    ae_title: str = "ORTHANC", dicom_port: int | None = None
                    ) -> Iterator[Orthanc]:
    """Orthanc started on free loopback ports (its DICOM port `dicom_port` when given) with
    its state under `root`; stopped (and its log shown on failure to start) on exit. A port
    that another process took between free_port() and Orthanc's bind (seen once in a full
    run) is chosen again, up to three times."""
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        config = configuration(root, free_port(), dicom_port or free_port(), ae_title,
                               modalities)
        try:
            with orthanc_on(root, config, port_taken_is_fatal=attempt == 2) as pacs:
                yield pacs
            return
        except _PortTaken:
            continue


class _PortTaken(Exception):
    """Orthanc exited at start because a port it was given was in use."""


@contextmanager
def orthanc_on(root: Path, config: dict, port_taken_is_fatal: bool = True
               ) -> Iterator[Orthanc]:
    """Orthanc started on `config` (written to root/orthanc.json, so that relative paths in
    it, such as LuaScripts, are root's); its storage removed on exit. `port_taken_is_fatal`
    False: a port in use raises _PortTaken, for the caller to choose another."""
    if not Path(ORTHANC).exists():
        pytest.fail(f"{ORTHANC} is missing: `make system-packages` installs Debian's orthanc")
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    log_path = root / "orthanc.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([ORTHANC, str(config_path)], stdout=log,
                                   stderr=subprocess.STDOUT, cwd=root)
    pacs = Orthanc(f"http://127.0.0.1:{config['HttpPort']}", config["DicomPort"],
                   config["DicomAet"], log_path)
    try:
        poll(lambda: process.poll() is not None or _answers(pacs), START_SECONDS,
             "Orthanc to start")
        if process.poll() is not None:
            said = log_path.read_text()
            if not port_taken_is_fatal and "already in use" in said:
                raise _PortTaken()
            pytest.fail("Orthanc exited: " + said[-3000:])
        yield pacs
    finally:
        stop_process(process)
        shutil.rmtree(Path(config["StorageDirectory"]), ignore_errors=True)


def _answers(pacs: Orthanc) -> bool:
    try:
        return "Version" in pacs.rest("GET", "/system", timeout=2)
    except (OSError, urllib.error.URLError, ValueError):
        return False
