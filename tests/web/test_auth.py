"""The page's login (app/routes/pages.py, app/security.py, app/login_throttle.py): no secret
ever printed, a signed cookie per login that expires, failed logins limited per client."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.login_throttle import LoginThrottle
from app.security import SESSION_COOKIE, new_session, session_valid

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
    from tests.helpers import jpeg_bytes

    answer = client.post("/predict/batch", files={"file": ("x.jpeg", jpeg_bytes())})
    assert answer.status_code == 422 and "'files'" in answer.json()["detail"]
    single = client.post("/predict", files={"files": ("x.jpeg", jpeg_bytes())})
    assert single.status_code == 422 and "'file'" in single.json()["detail"]
