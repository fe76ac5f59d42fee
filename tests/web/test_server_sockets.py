"""Against the real uvicorn server, with raw sockets: what a TestClient cannot send."""

import select
import socket
import urllib.request
from pathlib import Path

import pytest

from tests.builders.corpus import BOUNDARY, multipart, part
from tests.builders.images import jpeg_bytes
from tests.servers import poll

pytestmark = pytest.mark.slow  # one real server for the module


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def _raw(url: str, head: bytes, body: bytes = b"", close_after_send: bool = False) -> bytes:
    """Send bytes as they are, in pieces, stopping as soon as the server answers (as a real
    client would); return the answer (until the server closes, or 10 s)."""
    data = head + body
    with socket.create_connection(_address(url), timeout=10) as sock:
        for start in range(0, len(data), 1 << 16):
            if select.select([sock], [], [], 0)[0]:
                break  # the server answered early (a 413, say): stop sending
            try:
                sock.sendall(data[start:start + (1 << 16)])
            except OSError:
                break
        if close_after_send:
            return b""
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return answer


def _head(content_type: str, extra: str = "") -> bytes:
    return (f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
            f"Connection: close\r\n{extra}\r\n").encode()


def is_ready(url: str) -> bool:
    with urllib.request.urlopen(url + "/readyz", timeout=5) as response:
        return response.status == 200


def _wait_for_log(log: Path, text: str, timeout: float = 30, start: int = 0) -> str:
    return poll(lambda: text in log.read_text()[start:] and log.read_text(), timeout,
                f"{text!r} in the server log")


def test_client_that_disconnects_mid_upload_is_one_info_line(live_server):
    url, log = live_server
    seen = len(log.read_text())
    body = multipart(part(jpeg_bytes(400, 400)))
    head = _head(f"multipart/form-data; boundary={BOUNDARY}",
                 f"Content-Length: {len(body)}\r\n")
    _raw(url, head, body[:2000], close_after_send=True)
    _wait_for_log(log, "client disconnected during upload")
    # Anything that follows the line (a traceback) is logged before the next request's
    # access line (app/web/middleware.py; probes are logged at DEBUG, so another route).
    with urllib.request.urlopen(url + "/models", timeout=5) as response:
        assert response.status == 200
    _wait_for_log(log, "app.access: GET /models 200", start=seen)
    new = log.read_text()[seen:]
    assert new.count("client disconnected during upload") == 1
    assert "Traceback" not in new and "ERROR" not in new
    assert is_ready(url)


def test_content_length_shorter_than_the_body_is_refused(live_server):
    url, _ = live_server
    body = multipart(part(jpeg_bytes(200, 200)))
    head = _head(f"multipart/form-data; boundary={BOUNDARY}", "Content-Length: 300\r\n")
    answer = _raw(url, head, body)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b'"malformed_upload"' in answer
    assert is_ready(url)


def test_chunked_body_over_the_limit_is_413(live_server):
    url, _ = live_server
    head = _head(f"multipart/form-data; boundary={BOUNDARY}", "Transfer-Encoding: chunked\r\n")
    start = multipart(part(b""), close=False)
    chunk = b"\xff" * (1 << 20)
    body = b"%x\r\n%s\r\n" % (len(start), start)
    body += b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(22))  # 22 MiB
    answer = _raw(url, head, body + b"0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert is_ready(url)


def test_decoder_warnings_about_an_upload_never_reach_the_log(live_server):
    url, log = live_server
    seen = len(log.read_text())
    from tests.builders.corpus import jpeg_extreme_exif, jpeg_with_exif

    for data in (jpeg_extreme_exif(), jpeg_with_exif(6, broken_tag=True)):
        body = multipart(part(data))
        head = _head(f"multipart/form-data; boundary={BOUNDARY}",
                     f"Content-Length: {len(body)}\r\n")
        assert _raw(url, head, body).startswith(b"HTTP/1.1 200")
    new = log.read_text()[seen:]
    assert "EXIF" not in new and "Warning" not in new and "tag" not in new.lower()
