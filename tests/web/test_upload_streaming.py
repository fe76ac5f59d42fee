"""Worklist requests stream (app/web/upload.py FileStream, app/web/deps.py read_batch): each file is
decoded once its part is in while the rest of the body arrives, and let go once decoded, so
the body is never held whole; a file over the byte limit is that file's answer; a body that
breaks off stores nothing. The slow tests drive the real server (`python -m app`)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest

from tests.builders.corpus import BOUNDARY, multipart, part
from tests.builders.images import jpeg_bytes
from tests.servers import poll, server_process

MIB = 1 << 20
# The real server's budget for every body in flight: far below the worklist posted to it.
BODY_BUDGET = 8 * MIB


def _files(*films: bytes) -> list:
    return [("files", (f"{i}.jpeg", film)) for i, film in enumerate(films)]


def test_a_file_over_the_byte_limit_is_that_files_error_and_the_others_are_scored(
        client_factory, tmp_path):
    small, big = jpeg_bytes(seed=1), jpeg_bytes(seed=2) + b"\0" * 60_000
    with client_factory(max_upload_bytes=50_000, state_dir=tmp_path) as client:
        answer = client.post("/predict/batch", files=_files(small, big, small))
        assert answer.status_code == 200, answer.text
        first, over, last = answer.json()["results"]
        assert over["error"] == {"error": "file_too_large", "status": 413,
                                 "detail": "The file is larger than the 48.8 KiB upload limit."}
        assert first["error"] is None and last["error"] is None  # read and judged
        stored = client.post("/worklist/films", files=_files(small, big))
        assert stored.status_code == 200, stored.text
        kept, refused = stored.json()["files"]
        assert kept["stored"] and not refused["stored"]
        assert refused["error"]["error"] == "file_too_large"
        assert client.app.state.store.entries().total == 1


def test_a_worklist_whose_body_breaks_off_after_some_files_stores_none(client_factory,
                                                                       tmp_path):
    """Two whole files, then the body ends without its closing boundary: 400, and neither
    file is on the worklist (nothing stored that no answer reported)."""
    films = [part(jpeg_bytes(seed=i), name=b"files", filename=f"{i}.jpeg".encode())
             for i in range(3)]
    body = multipart(*films, close=False)[:-200]  # the third file cut short
    with client_factory(state_dir=tmp_path) as client:
        answer = client.post("/worklist/films", content=body, headers={
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        assert answer.status_code == 400
        assert answer.json()["error"] == "malformed_upload"
        assert client.app.state.store.entries().total == 0
        assert client.app.state.body_budget.held == 0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("streaming") / "server.log"
    with server_process(log, max_upload_memory_bytes=str(BODY_BUDGET)) as running:
        yield running


def _decoded(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    line = next(x for x in text.splitlines() if x.startswith("pneumonia_decode_seconds_count"))
    return float(line.split()[-1])


@pytest.mark.slow
def test_a_batchs_first_file_is_decoded_while_its_body_is_still_arriving(server):
    url, _ = server
    first, second = jpeg_bytes(seed=3), jpeg_bytes(seed=4)
    body = multipart(part(first, name=b"files", filename=b"a.jpeg"),
                     part(second, name=b"files", filename=b"b.jpeg"))
    head = (f"POST /predict/batch HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    cut = body.index(second) + 100  # the first file whole, the second begun
    before = _decoded(url)
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head + body[:cut])
        poll(lambda: _decoded(url) >= before + 1, 30,
             "the first file to be decoded while the body is still arriving")
        sock.sendall(body[cut:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status, _, rest = answer.partition(b"\r\n")
    assert b" 200 " in status
    results = json.loads(rest.partition(b"\r\n\r\n")[2])["results"]
    assert [r["filename"] for r in results] == ["a.jpeg", "b.jpeg"]
    assert all(r["error"] is None for r in results)


def _memory(pid: int, field: str) -> int:
    """VmRSS or VmHWM (peak resident size) of a process, bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


@pytest.mark.slow
def test_a_100_mb_worklist_streams_through_the_server_in_a_few_mb(server):
    """100 files of 1 MB through a server whose bodies in flight share 8 MiB: answered in
    full (the budget had each file's bytes back once it was decoded), and the server's peak
    resident size grew by far less than the body (it was never held whole)."""
    url, process = server
    films = [jpeg_bytes(seed=i) for i in range(4)]
    files = [("files", (f"{i}.jpeg", films[i % 4] + b"\0" * (MIB - len(films[i % 4]))))
             for i in range(100)]
    Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # the peak, from now
    rest = _memory(process.pid, "VmRSS")
    answer = httpx.post(url + "/predict/batch", files=files, timeout=120)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert len(results) == 100 and all(r["error"] is None for r in results)
    grown = _memory(process.pid, "VmHWM") - rest
    assert grown < 40 * MIB, f"the server grew {grown / MIB:.0f} MiB for a 100 MB body"
