"""Response headers, the JSON 500, the optional access token, CORS, and Host independence."""

import logging

import pytest
from fastapi.testclient import TestClient

from app.web.main import create_app
from tests.builders.images import jpeg_bytes
from tests.servers import settings_for_tests

TOKEN = "s3cret-token-for-tests-only"


def _upload(field: str = "file"):
    return {field: ("x.jpeg", jpeg_bytes(), "image/jpeg")}


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/"), ("get", "/report"), ("get", "/healthz"), ("get", "/readyz"),
    ("get", "/static/style.css"), ("post", "/predict"), ("get", "/nowhere"), ("get", "/docs"),
])
def test_every_response_carries_security_headers(client, method, path):
    response = getattr(client, method)(path)
    headers = response.headers
    policy = headers["content-security-policy"]
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-request-id"]


def test_results_are_never_cached_but_assets_may_be(client):
    assert client.post("/predict", files=_upload()).headers["cache-control"] == "no-store"
    page = client.post("/", files=_upload("files"), headers={"Accept": "text/html"})
    assert page.headers["cache-control"] == "no-store"
    assert "no-store" not in client.get("/static/upload.js").headers.get("cache-control", "")


def test_errors_have_the_json_shape_even_for_unknown_routes(client):
    response = client.get("/nowhere")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    response = client.put("/predict")
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


def test_asset_urls_do_not_depend_on_the_host_header(client):
    page = client.get("/", headers={"Host": "evil.example"}).text
    assert "evil.example" not in page
    assert 'href="/static/style.css"' in page and 'src="/static/upload.js"' in page


def test_page_has_no_inline_script_or_style(client):
    page = client.post("/", files=_upload("files"), headers={"Accept": "text/html"}).text
    assert "style=" not in page and "<style" not in page
    assert "<script>" not in page and "onclick" not in page


def test_unexpected_error_is_json_500_with_request_id_logged_once(client, caplog,
                                                                  monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("app.web.routes.predict.score_film", explode)
    with caplog.at_level(logging.INFO):
        response = client.post("/predict",
                               files={"file": ("Jane-Doe.jpeg", jpeg_bytes(), "image/jpeg")})
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal_error" and body["request_id"] in body["detail"]
    assert response.headers["x-request-id"] == body["request_id"]
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failures) == 1
    assert body["request_id"] in failures[0].getMessage() and failures[0].exc_info
    assert "Jane-Doe" not in caplog.text
    monkeypatch.undo()
    assert client.post("/predict", files=_upload()).status_code == 200  # still serving


@pytest.fixture(scope="module")
def token_client(client_factory):
    with client_factory(api_token=TOKEN) as client:
        yield client


def test_token_guards_the_api(token_client):
    refused = token_client.post("/predict", files=_upload())
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
    assert refused.headers["www-authenticate"] == "Bearer"
    wrong = token_client.post("/predict", files=_upload(),
                              headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"})
    assert wrong.status_code == 401
    ok = token_client.post("/predict", files=_upload(),
                           headers={"Authorization": "Bearer " + TOKEN})
    assert ok.status_code == 200
    assert token_client.get("/healthz").status_code == 200  # probes stay open
    assert token_client.get("/readyz").status_code == 200


def test_page_keeps_working_with_a_token_through_a_session_cookie(token_client):
    token_client.cookies.clear()
    html = {"Accept": "text/html"}
    login = token_client.get("/", headers=html)
    assert login.status_code == 401 and 'action="/login"' in login.text
    wrong = token_client.post("/login", data={"token": "nope"}, headers=html,
                              follow_redirects=False)
    assert wrong.status_code == 401 and "not right" in wrong.text
    right = token_client.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert right.status_code == 303
    cookie = right.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and TOKEN not in cookie
    assert token_client.get("/", headers=html).status_code == 200
    # The page's script calls /predict with the cookie the browser holds.
    assert token_client.post("/predict", files=_upload()).status_code == 200
    token_client.cookies.clear()


def test_cors_is_closed_by_default_and_opens_only_to_configured_origins(client):
    asked = {"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"}
    closed = client.options("/predict", headers=asked)
    assert "access-control-allow-origin" not in closed.headers
    app = create_app(settings_for_tests(cors_origins=["https://pacs.example"]))
    with TestClient(app) as open_client:
        allowed = open_client.options("/predict", headers={**asked,
                                                           "Origin": "https://pacs.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://pacs.example"
        other = open_client.options("/predict", headers=asked)
        assert "access-control-allow-origin" not in other.headers


def test_trailing_slash_is_not_redirected_to_the_host_header(client):
    response = client.post("/predict/", headers={"Host": "evil.example"},
                           files=_upload(), follow_redirects=False)
    assert response.status_code == 404 and "location" not in response.headers
