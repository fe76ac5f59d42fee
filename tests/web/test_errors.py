"""Every error is a page for a browser and JSON for an API client (app/web/errors.py): the
app's own errors, FastAPI's validation, Starlette's routing 404 and 405, and the middleware's
refusals, each with the same status either way."""

import pytest

# What a browser's navigation sends (Chromium's Accept for a page).
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
                     "image/webp,*/*;q=0.8"}
API = {"Accept": "application/json"}


def _is_page(response, status: int, heading: str) -> None:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("text/html")
    assert f"<h1>{heading}</h1>" in response.text and 'id="error"' in response.text
    assert 'href="/"' in response.text  # a way back


@pytest.mark.parametrize(("path", "status", "heading", "code"), [
    ("/?model=nope", 404, "No such model", "unknown_model"),
    ("/report?model=nope", 404, "No such model", "unknown_model"),
    ("/nowhere", 404, "Not found", "not_found"),
    ("/worklist?limit=abc", 422, "Not a valid request", "invalid_request"),
    ("/worklist/audit-trail?entry_id=0", 422, "Not a valid request", "invalid_request"),
])
def test_a_page_error_is_a_page_for_a_browser_and_json_for_an_api_client(client, path,
                                                                        status, heading, code):
    _is_page(client.get(path, headers=BROWSER), status, heading)
    for headers in (API, {}):  # an explicit JSON client, and one that names nothing (*/*)
        answer = client.get(path, headers=headers)
        assert answer.status_code == status
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["error"] == code


def test_the_unknown_model_page_names_the_models_offered(client):
    page = client.get("/?model=nope", headers=BROWSER).text
    assert "&#39;pneumonia&#39;, &#39;pneumonia_compact&#39;" in page
    assert 'href="/models"' in page


def test_a_parameter_error_page_names_the_parameter_never_its_value(client):
    page = client.get("/worklist?limit=<b>x</b>", headers=BROWSER)
    _is_page(page, 422, "Not a valid request")
    assert "Check: limit." in page.text and "<b>x</b>" not in page.text


def test_a_method_not_allowed_is_a_page_with_its_allow_header(client):
    page = client.delete("/report", headers=BROWSER)
    _is_page(page, 405, "Not allowed here")
    assert page.headers["allow"] == "GET" and "DELETE" in page.text
    assert client.delete("/report").json()["error"] == "method_not_allowed"


def test_the_middlewares_refusal_is_a_page_for_a_browser_too(client):
    big = {"X-Padding": "a" * 20_000}  # over the 16 KiB request-head limit
    page = client.get("/report", headers={**BROWSER, **big})
    assert page.status_code == 431 and page.headers["content-type"].startswith("text/html")
    assert "16384-byte limit" in page.text and "<h1>" in page.text
    answer = client.get("/report", headers=big)
    assert answer.status_code == 431 and answer.json()["error"] == "headers_too_large"
