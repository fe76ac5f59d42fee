"""Time to notification of the DICOM node: from the C-STORE of a study to its SR stored in
the PACS, and the node's films/s at saturation. A SKELETON: the lead wires it to the app.

    python benchmarks/dicom_node.py --node TRIAGE@127.0.0.1:11112 \
        --orthanc http://127.0.0.1:8042 --calling-ae ORTHANC FILM.dcm [FILM.dcm ...] \
        [--rates 1 5] [--seconds 30] [--saturation-clients 8]

Expects a running node (`pneumonia-triage serve` with PNEUMONIA_DICOM_PORT and
PNEUMONIA_RESULTS_DESTINATION pointing at the Orthanc), and an Orthanc whose REST API is
`--orthanc`. Each "study" is one of the films with fresh Study/Series/SOP Instance UIDs, sent
at a fixed rate (open loop: a slow node does not slow the sender); its latency ends when
Orthanc lists an SR series in that study. Prints p50 and p95 per rate, then films/s with
`--saturation-clients` associations sending back to back.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid
from pynetdicom import AE

POLL_SECONDS = 0.02
TIMEOUT_SECONDS = 60


def fresh_study(template: pydicom.Dataset) -> pydicom.Dataset:
    """The film as a new study: new Study, Series and SOP Instance UIDs."""
    ds = template.copy()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


def parse_node(text: str) -> tuple[str, str, int]:
    ae, _, address = text.partition("@")
    host, _, port = address.rpartition(":")
    return ae, host, int(port)


def send(node: tuple[str, str, int], calling_ae: str, datasets: list[pydicom.Dataset]) -> list[int]:
    """C-STORE the datasets in one association; their statuses."""
    ae = AE(ae_title=calling_ae)
    for sop_class in {ds.SOPClassUID for ds in datasets}:
        ae.add_requested_context(sop_class, [ds.file_meta.TransferSyntaxUID for ds in datasets])
    assoc = ae.associate(node[1], node[2], ae_title=node[0])
    if not assoc.is_established:
        return [-1] * len(datasets)
    try:
        return [int(getattr(assoc.send_c_store(ds), "Status", -1)) for ds in datasets]
    finally:
        assoc.release()


def sr_arrived(orthanc: str, study_uid: str) -> bool:
    query = {"Level": "Series", "Query": {"StudyInstanceUID": study_uid, "Modality": "SR"}}
    request = urllib.request.Request(orthanc + "/tools/find", data=json.dumps(query).encode(),
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return bool(json.loads(response.read()))


def time_to_notification(node, calling_ae: str, orthanc: str, films: list[pydicom.Dataset],
                         rate: float, seconds: float) -> list[float]:
    """Open loop at `rate` studies/s for `seconds`: each study's C-STORE-to-SR seconds."""
    latencies: list[float] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        ds = fresh_study(films[index % len(films)])
        started = time.perf_counter()
        if send(node, calling_ae, [ds]) != [0]:
            return  # not scored: no SR to wait for
        deadline = started + TIMEOUT_SECONDS
        while time.perf_counter() < deadline:
            if sr_arrived(orthanc, ds.StudyInstanceUID):
                with lock:
                    latencies.append(time.perf_counter() - started)
                return
            time.sleep(POLL_SECONDS)

    count = int(rate * seconds)
    with ThreadPoolExecutor(max_workers=max(4, int(rate * 8))) as pool:
        start = time.perf_counter()
        for index in range(count):
            time.sleep(max(0.0, start + index / rate - time.perf_counter()))
            pool.submit(one, index)
    return latencies


def saturation(node, calling_ae: str, films: list[pydicom.Dataset], clients: int,
               seconds: float) -> float:
    """Films/s stored with `clients` associations each sending back to back."""
    stop = time.perf_counter() + seconds
    done = [0] * clients

    def client(slot: int) -> None:
        while time.perf_counter() < stop:
            batch = [fresh_study(films[(slot + i) % len(films)]) for i in range(4)]
            done[slot] += sum(status == 0 for status in send(node, calling_ae, batch))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def summary(values: list[float]) -> str:
    if not values:
        return "no SR arrived"
    return (f"p50 {statistics.median(values) * 1000:7.0f} ms   "
            f"p95 {float(np.percentile(values, 95)) * 1000:7.0f} ms   n={len(values)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("films", nargs="+", type=Path)
    parser.add_argument("--node", required=True, help="AE@host:port of the node")
    parser.add_argument("--orthanc", required=True, help="Orthanc's REST URL")
    parser.add_argument("--calling-ae", default="ORTHANC")
    parser.add_argument("--rates", nargs="+", type=float, default=[1.0, 5.0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--saturation-clients", type=int, default=8)
    args = parser.parse_args()
    node = parse_node(args.node)
    films = [pydicom.dcmread(io.BytesIO(path.read_bytes())) for path in args.films]
    for rate in args.rates:
        latencies = time_to_notification(node, args.calling_ae, args.orthanc, films, rate,
                                         args.seconds)
        print(f"{rate:4.1f} studies/s: C-STORE -> SR in Orthanc  {summary(latencies)}")
    films_per_second = saturation(node, args.calling_ae, films, args.saturation_clients,
                                  args.seconds)
    print(f"saturation, {args.saturation_clients} associations: {films_per_second:.1f} films/s "
          "(compare /predict at 8 clients: benchmarks/load.py)")


if __name__ == "__main__":
    main()
