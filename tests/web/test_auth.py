"""The page's login (app/web/routes/pages.py, app/web/auth.py and its LoginThrottle): no secret
ever printed, a signed cookie per login that expires, failed logins limited per client; and
the audit trail's user from a trusted proxy's header: its last line, as UTF-8, cleaned."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.web.auth import (
    SESSION_COOKIE,
    LoginThrottle,
    new_session,
    session_valid,
    trusted_user_name,
)
from tests.store.factories import film

TOKEN = "a-long-enough-token-for-tests"
HTML = {"Accept": "text/html"}


def test_a_short_token_is_refused_by_its_length_never_printed():
    secret = "short-secret-xy"  # 15 characters
    with pytest.raises(ValidationError) as refused:
        Settings(api_token=secret)
    text = str(refused.value) + repr(refused.value)  # what a start-up traceback shows
    assert secret not in text and "15" in text and "16" in text


def test_session_cookies_differ_per_login_and_expire():
    first, second = new_session(TOKEN, now=1000), new_session(TOKEN, now=1000)
    assert first != second and TOKEN not in first
    assert session_valid(first, TOKEN, 3600, now=1000 + 3599)
    assert not session_valid(first, TOKEN, 3600, now=1000 + 3600)  # expired
    assert not session_valid(first, "another-token-of-this-server", 3600, now=1001)
    issued, nonce, signature = first.split(".")
    assert not session_valid(f"{int(issued) + 7200}.{nonce}.{signature}", TOKEN, 3600,
                             now=1001)  # a forged issue time breaks the signature
    assert not session_valid("", TOKEN, 3600) and not session_valid("1.2", TOKEN, 3600)


def test_the_throttle_counts_failures_per_client_in_a_window():
    throttle = LoginThrottle(limit=3, window_seconds=60)
    for second in range(3):
        assert throttle.retry_after("a", now=second) == 0
        throttle.failed("a", now=second)
    assert throttle.retry_after("a", now=3) == pytest.approx(57)
    assert throttle.retry_after("b", now=3) == 0  # another client is not held
    assert throttle.retry_after("a", now=60.5) == 0  # the oldest failure left the window


@pytest.fixture(scope="module")
def token_client(client_factory):
    with client_factory(api_token=TOKEN, max_failed_logins=3) as client:
        yield client


def test_a_login_cookie_expires_after_the_session_hours(token_client):
    token_client.cookies.clear()
    right = token_client.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert right.status_code == 303
    assert "max-age=43200" in right.headers["set-cookie"].lower()  # 12 h by default
    assert token_client.get("/", headers=HTML).status_code == 200
    stale = new_session(TOKEN, now=0)  # signed right, issued in 1970
    token_client.cookies.set(SESSION_COOKIE, stale)
    assert token_client.get("/", headers=HTML).status_code == 401
    token_client.cookies.clear()


def test_failed_logins_get_429_with_retry_after(token_client):
    token_client.cookies.clear()
    for _ in range(3):
        wrong = token_client.post("/login", data={"token": "nope"}, headers=HTML,
                                  follow_redirects=False)
        assert wrong.status_code == 401
    limited = token_client.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert limited.json()["error"] == "too_many_logins"
    # Bearer clients are not held by the page's login limit.
    assert token_client.get("/readyz").status_code == 200


def test_health_routes_answer_head(client):
    for path in ("/healthz", "/readyz"):
        answer = client.head(path)
        assert answer.status_code == 200 and answer.content == b""


def test_a_request_head_over_the_header_limit_is_431_even_in_one_piece(client):
    answer = client.get("/healthz", headers={"X-Padding": "x" * 60_000})
    assert answer.status_code == 431 and answer.json()["error"] == "headers_too_large"
    assert client.get("/healthz", headers={"X-Padding": "x" * 8_000}).status_code == 200


def test_a_batch_without_its_field_names_the_field_it_needs(client):
    from tests.builders.images import jpeg_bytes

    answer = client.post("/predict/batch", files={"file": ("x.jpeg", jpeg_bytes())})
    assert answer.status_code == 422 and "'files'" in answer.json()["detail"]
    single = client.post("/predict", files={"files": ("x.jpeg", jpeg_bytes())})
    assert single.status_code == 422 and "'file'" in single.json()["detail"]


# --- the audit trail's user, from a trusted proxy's header ---------------------------------

def _sent(text: str) -> str:
    """`text` as Starlette hands over a header sent as UTF-8: its bytes read as Latin-1."""
    return text.encode().decode("latin-1")


@pytest.mark.parametrize(("lines", "name"), [
    ([], ""),
    (["dr.grey"], "dr.grey"),
    (["mallory", "dr.grey"], "dr.grey"),  # the client's own line first, the proxy's last
    (["dr.grey", ""], ""),  # the proxy said nobody: nobody, not the client's name
    ([_sent("Grüße, José 李")], "Grüße, José 李"),
    (["Jos\xe9"], "José"),  # not UTF-8: its Latin-1 reading
    ([_sent("Jose\u0301")], "José"),  # NFC: one spelling per name
    (["\tdr.\x00gr\x7fey\r\n"], "dr.grey"),  # control characters dropped
    ([_sent("\u202eyerg.rd\u200b")], "yerg.rd"),  # no bidi override, no zero-width space
    (["a" * 1000], "a" * 128),
    ([_sent("é" * 1000)], "é" * 128),  # 128 characters, not 128 bytes
])
def test_the_trusted_user_is_the_last_line_read_as_utf8_and_cleaned(lines, name):
    assert trusted_user_name(lines) == name


def test_a_repeated_trusted_user_header_names_the_proxys_user(client_factory, tmp_path):
    """Real header bytes through the app: a client's own X-Forwarded-User in front of the
    proxy's does not win, and a UTF-8 name reaches the audit trail unmangled."""
    with client_factory(state_dir=tmp_path, decode_workers=0,
                        trusted_user_header="X-Forwarded-User") as client:
        (entry,) = client.app.state.store.add_films([film("9.1")])
        for sent, actor in [
                ([(b"X-Forwarded-User", b"mallory"), (b"X-Forwarded-User", b"dr.grey")],
                 "dr.grey"),
                ([(b"X-Forwarded-User", "Grüße, José".encode())], "Grüße, José")]:
            response = client.patch(f"/worklist/entries/{entry.id}", headers=sent,
                                    json={"status": "opened"})
            assert response.status_code == 200 and response.json()["status_by"] == actor
        actors = [r["actor"] for r in client.get("/worklist/audit").json()["records"]]
        assert actors[:2] == ["Grüße, José", "dr.grey"]
