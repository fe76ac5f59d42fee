"""The Orthanc configuration we ship (deploy/orthanc.json with deploy/orthanc-route.lua) runs
on Debian's Orthanc 1.10: it loads, knows the node, lets the node store its results back and
no unknown caller store, and routes every CR and DX it receives, and nothing else, to the
node (here a stand-in storage SCP with the node's AE title on a free loopback port)."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE

from tests.builders.dicom import CR_SOP_CLASS, CT_SOP_CLASS, DX_SOP_CLASS, file_bytes, study_film
from tests.dicom.nodes import StandInPacs
from tests.dicom.orthanc import orthanc_on
from tests.servers import REPO, free_port, poll

DEPLOY = REPO / "deploy"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
ROUTE_SECONDS = 60  # a safety net on a loaded 2-core machine, not the thing measured
FINAL_JOB_STATES = {"Success", "Failure"}

pytestmark = pytest.mark.slow


def shipped_configuration(tmp_path, node_port: int) -> dict:
    """deploy/orthanc.json as shipped, with its ports moved to free loopback ports, its
    storage to `tmp_path`, and the node's entry to `node_port`; the Lua script beside it."""
    config = json.loads((DEPLOY / "orthanc.json").read_text())
    for name in config["LuaScripts"]:
        shutil.copy(DEPLOY / name, tmp_path / name)
    config["HttpPort"], config["DicomPort"] = free_port(), free_port()
    config["StorageDirectory"] = config["IndexDirectory"] = str(tmp_path / "db")
    config["DicomModalities"]["triage"]["Port"] = node_port
    return config


def films() -> dict[str, bytes]:
    pixels = np.tile(np.arange(64, dtype=np.uint8), (64, 1))
    return {kind: file_bytes(study_film(pixels, sop_class=sop_class, modality=modality))
            for kind, sop_class, modality in (
                ("ct", CT_SOP_CLASS, "CT"),
                ("secondary capture", SECONDARY_CAPTURE, "OT"),
                ("cr", CR_SOP_CLASS, "CR"),
                ("dx", DX_SOP_CLASS, "DX"))}


def stores(port: int, calling_ae: str, called_ae: str, data: bytes) -> int | None:
    """The status of one C-STORE to Orthanc from `calling_ae`; None when the association
    is refused or aborted (how Orthanc turns away a store from an unknown caller)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(ds.SOPClassUID, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae)
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_store(ds).get("Status")
        return None if status is None else int(status)
    finally:
        if assoc.is_established:
            assoc.release()


def test_the_shipped_orthanc_configuration_routes_radiographs_to_the_node(tmp_path):
    sent = films()
    with StandInPacs(ae_title="TRIAGE") as node, \
            orthanc_on(tmp_path, shipped_configuration(tmp_path, node.port)) as pacs:
        assert pacs.rest("GET", "/modalities") == ["triage"]
        [entry] = pacs.rest("GET", "/modalities?expand").values()
        assert (entry["AET"], entry["Host"], entry["Port"]) == ("TRIAGE", "127.0.0.1",
                                                               node.port)
        assert pacs.rest("POST", "/modalities/triage/echo", {}) == {}  # Orthanc reaches it
        uids = {}
        for kind, data in sent.items():  # in order: the CR and the DX last
            uids[kind] = pacs.tags(pacs.upload(data)["ID"])["SOPInstanceUID"]
        poll(lambda: {uids["cr"], uids["dx"]} <= set(node.received), ROUTE_SECONDS,
             "the CR and the DX at the node")
        poll(lambda: all(pacs.rest("GET", f"/jobs/{job}")["State"] in FINAL_JOB_STATES
                         for job in pacs.rest("GET", "/jobs")), ROUTE_SECONDS,
             "Orthanc's routing jobs to end")
        assert set(node.received) == {uids["cr"], uids["dx"]}
        # The node may store its results back; a caller Orthanc does not know may not.
        result = file_bytes(study_film(np.zeros((8, 8), np.uint8),
                                       sop_class=SECONDARY_CAPTURE, modality="OT"))
        assert stores(pacs.dicom_port, "TRIAGE", pacs.ae_title, result) == 0x0000
        assert stores(pacs.dicom_port, "STRANGER", pacs.ae_title, result) is None
