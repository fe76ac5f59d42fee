"""The HTTP latency histogram's labels (app/web/middleware.py): the route's template, never the path
that was asked, so no identifier reaches a label; the method from a fixed set, else `other`;
the status class 1xx-5xx. Whatever a client sends, the label set stays bounded."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.web.middleware import METHODS, OTHER_METHOD, method_label, status_class

STUDY = "1.2.826.0.1.3680043.8.498.99999999"


def _routes(client) -> set[tuple[str, str, str]]:
    text = client.get("/metrics").text
    return {(s.labels["route"], s.labels["method"], s.labels["status_class"])
            for family in text_string_to_metric_families(text)
            if family.name == "http_request_duration_seconds" for s in family.samples}


def test_requests_are_labelled_by_route_template_mount_or_unmatched(client):
    assert client.post(f"/dicomweb/studies/{STUDY}", content=b"x",
                       headers={"Content-Type": "text/plain"}).status_code == 415
    assert client.get("/static/style.css").status_code == 200
    assert client.get(f"/nowhere/{STUDY}").status_code == 404
    routes = _routes(client)
    assert {("/dicomweb/studies/{study}", "POST", "4xx"), ("/static", "GET", "2xx"),
            ("unmatched", "GET", "4xx")} <= routes
    assert not any(STUDY in route or "nowhere" in route for route, _, _ in routes)
    assert STUDY not in client.get("/metrics").text


def test_invented_methods_share_one_label_and_metrics_stay_small(client):
    """300 methods no server knows (any token is a method to h11) are one `other` series,
    not 300: they took /metrics from 7 KB to 187 MB, readable without a token."""
    client.request("BREW", "/healthz")
    before = len(client.get("/metrics").content)
    for n in range(300):
        assert client.request(f"X-INVENTED-{n}", "/healthz").status_code == 405
    grown = len(client.get("/metrics").content) - before
    methods = {method for _, method, _ in _routes(client)}
    assert methods <= METHODS | {OTHER_METHOD} and ("/healthz", "other", "4xx") in _routes(client)
    assert grown < 2_000, f"/metrics grew by {grown} bytes"


@pytest.mark.parametrize(("method", "label"), [
    ("GET", "GET"), ("PATCH", "PATCH"), ("OPTIONS", "OPTIONS"), ("get", "other"),
    ("BREW", "other"), ("X" * 10_000, "other"), ("", "other")])
def test_methods_come_from_a_fixed_set(method, label):
    assert method_label(method) == label  # case-sensitive (RFC 9110 section 9.1)


@pytest.mark.parametrize(("status", "label"), [
    (101, "1xx"), (200, "2xx"), (308, "3xx"), (404, "4xx"), (599, "5xx"), (99, "other"),
    (600, "other"), (0, "other"), (10**6, "other")])
def test_status_classes_come_from_a_fixed_set(status, label):
    assert status_class(status) == label
