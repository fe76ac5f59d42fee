"""app/web/server.py and the request limits, against the real server (`python -m app`): idle and
trickling connections are closed and never crowd out probes or films; a slow upload holds
no decode capacity; the bodies in flight share one memory budget; a port in use or a state
folder it cannot write stops it with one line naming the setting."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading

import httpx
import pytest

from tests.builders.corpus import BOUNDARY, multipart, part
from tests.builders.images import jpeg_bytes
from tests.servers import REPO, free_port, poll, running_server

pytestmark = pytest.mark.slow


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def _closed_by_server(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with running_server(log, max_connections="64", request_head_seconds="2",
                        max_concurrent_decodes="2") as url:
        yield url


def test_idle_and_trickling_connections_never_crowd_out_probes_or_films(server):
    """1,000 sockets that send nothing and 100 that send a header byte every 2 s, against a
    server that holds 64 connections: health and readiness still answer, films are still
    scored, and every idle socket is closed by the server."""
    address = _address(server)
    idle = [socket.create_connection(address) for _ in range(1000)]
    trickle = [socket.create_connection(address) for _ in range(100)]
    stop = threading.Event()

    def drip() -> None:  # one byte of a request head every 2 s on each trickling socket
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        for position in range(len(head)):
            for sock in trickle:
                with contextlib.suppress(OSError):
                    sock.send(head[position:position + 1])
            if stop.wait(2):
                return

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        with httpx.Client(base_url=server, timeout=30) as client:
            for _ in range(5):
                assert client.get("/healthz").status_code == 200
                assert client.get("/readyz").status_code == 200
                answer = client.post("/predict", files={"file": ("x.jpeg", jpeg_bytes())})
                assert answer.status_code == 200, answer.text
        poll(lambda: all(_closed_by_server(s) for s in idle + trickle), 60,
             "the server to close every idle and trickling socket")
    finally:
        stop.set()
        for sock in idle + trickle:
            sock.close()


def test_a_slow_upload_holds_no_decode_capacity(server):
    """Two uploads trickling their bodies (the server admits two films at once) do not keep
    a normal film from being scored: admission is taken once a body is all in."""
    body = multipart(part(jpeg_bytes(400, 400)))
    head = (f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
            f"boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    slow = []
    for _ in range(2):
        sock = socket.create_connection(_address(server))
        sock.sendall(head + body[:1000])  # the head, and the start of the body
        slow.append(sock)
    try:
        with httpx.Client(base_url=server, timeout=30) as client:
            for _ in range(3):
                answer = client.post("/predict", files={"file": ("x.jpeg", jpeg_bytes())})
                assert answer.status_code == 200, answer.text
    finally:
        for sock in slow:
            sock.close()


def test_bodies_in_flight_share_one_memory_budget(tmp_path):
    """With a 1 MiB budget for every body in flight, a third concurrent 400 KiB upload is
    refused at once with 503, and the budget is whole again afterwards."""
    log = tmp_path / "server.log"
    film = jpeg_bytes(64, 64)
    padding = b"x" * (400 * 1024)
    with running_server(log, max_upload_memory_bytes=str(1 << 20)) as url:
        body = multipart(part(film + padding))
        head = (f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                f"boundary={BOUNDARY}\r\nContent-Length: {len(body) + 10}\r\n\r\n").encode()
        held = []
        for _ in range(2):  # two uploads that keep most of their bytes in flight
            sock = socket.create_connection(_address(url))
            sock.sendall(head + body)
            held.append(sock)
        with httpx.Client(base_url=url, timeout=30) as client:
            refused = poll(lambda: (r := client.post(
                "/predict", files={"file": ("x.jpeg", film + padding)})).status_code == 503
                and r, 30, "a third upload to be refused")
            assert refused.json()["error"] == "busy" and refused.headers["retry-after"]
            for sock in held:
                sock.close()
            assert poll(lambda: client.post("/predict", files={"file": ("x.jpeg", film)}
                                            ).status_code == 200, 30, "the budget back")


def test_a_keep_alive_client_is_not_pushed_out_by_sockets_reopened_at_once(server):
    """A client connected before the attack, sending requests on one keep-alive connection,
    keeps it while 200 silent sockets (over the cap of 64) are opened, and those the server
    closes are opened again at once: the server evicts the connection that has waited
    longest for a request head, never one that is between two requests of its own."""
    address = _address(server)
    with httpx.Client(base_url=server, timeout=30,
                      limits=httpx.Limits(max_connections=1)) as client:
        assert client.get("/healthz").status_code == 200
        ports = set()

        def answered() -> bool:
            response = client.get("/healthz", extensions={})
            ports.add(response.extensions["network_stream"].get_extra_info(
                "client_addr")[1])
            return response.status_code == 200

        assert answered()
        idle = [socket.create_connection(address) for _ in range(200)]
        try:
            for _ in range(3):  # each reopened socket evicts another
                for k, sock in enumerate(idle):
                    if _closed_by_server(sock):
                        sock.close()
                        idle[k] = socket.create_connection(address)
                assert answered()
        finally:
            for sock in idle:
                sock.close()
        assert len(ports) == 1, f"the client's connection was closed: ports {ports}"


# --- what stops the server from starting ---------------------------------------------------

def _start_and_exit(tmp_path, **settings: str) -> tuple[int, str]:
    """`python -m app` with PNEUMONIA_* `settings`, expected to exit by itself: its exit
    status and what it wrote (stdout and stderr together)."""
    env = {**os.environ, "PNEUMONIA_HOST": "127.0.0.1", "PNEUMONIA_PORT": str(free_port()),
           "PNEUMONIA_MODEL_DIR": str(REPO / "models"), "PNEUMONIA_DICOM_PORT": "0",
           "PNEUMONIA_STATE_DIR": str(tmp_path / "state"),
           **{f"PNEUMONIA_{key.upper()}": value for key, value in settings.items()}}
    done = subprocess.run([sys.executable, "-m", "app"], env=env, cwd=REPO, timeout=120,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return done.returncode, done.stdout


@pytest.mark.parametrize("problem", ["http_port", "dicom_port", "state_dir"])
def test_a_busy_port_or_an_unwritable_state_folder_is_one_line_naming_the_setting(
        tmp_path, problem):
    """Each was an 80-line traceback (or a segmentation fault as TensorFlow's loader thread
    died with the interpreter): now one line that names the problem and its setting, and
    exit status 3. As root a chmod stops nothing, so the unwritable state folder lies under
    a regular file."""
    with socket.create_server(("127.0.0.1", 0)) as held:  # a port some other program holds
        port = str(held.getsockname()[1])
        (tmp_path / "a-file").write_text("not a folder")
        settings = {"http_port": {"port": port}, "dicom_port": {"dicom_port": port},
                    "state_dir": {"state_dir": str(tmp_path / "a-file" / "state")}}[problem]
        status, output = _start_and_exit(tmp_path, **settings)
    setting = f"PNEUMONIA_{problem.upper().removeprefix('HTTP_')}"
    assert status == 3, output
    assert "Traceback" not in output and "Error:" not in output, output
    [line] = [line for line in output.splitlines() if setting in line]
    assert ("in use" if "port" in problem else "Not a directory") in line, line
