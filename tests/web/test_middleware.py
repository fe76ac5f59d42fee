"""The HTTP latency histogram's labels (app/access.py): the route's template, never the path
that was asked, so no identifier reaches a label and the label set stays bounded."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

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
