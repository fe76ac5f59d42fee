"""/guide: the built documentation site, served under a policy of its own (issue 33)."""

from __future__ import annotations

import base64
import hashlib

import pytest

SCRIPT = "__md_scope=new URL('.',location)"
PAGE = (f"<html><head><script>{SCRIPT}</script>"
        '<script id="__config" type="application/json">{"base": "."}</script>'
        '<script src="assets/bundle.js"></script></head><body><h1>Guide</h1></body></html>')


@pytest.fixture
def site(tmp_path):
    """A stand-in for what mkdocs writes: a page with one inline script, and an asset."""
    (tmp_path / "index.html").write_text(PAGE)
    (tmp_path / "clinicians.html").write_text(PAGE.replace("Guide", "For clinicians"))
    # MkDocs' own 404 page links its assets from the root: /assets/..., the app's.
    (tmp_path / "404.html").write_text(PAGE.replace("assets/", "/assets/"))
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "bundle.js").write_text("console.log('ok')")
    return tmp_path


def test_guide_serves_pages_with_their_inline_scripts_allowed_by_hash(client_factory, site):
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    with client_factory(guide_dir=site) as client:
        home = client.get("/guide", follow_redirects=False)
        assert home.status_code == 307 and home.headers["location"] == "/guide/"
        for path in ("/guide/", "/guide/clinicians.html"):
            page = client.get(path)
            assert page.status_code == 200 and "<h1>" in page.text
            policy = page.headers["content-security-policy"]
            assert f"script-src 'self' 'sha256-{digest}';" in policy  # that script only
            assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        asset = client.get("/guide/assets/bundle.js")
        assert asset.status_code == 200
        assert "sha256" not in asset.headers["content-security-policy"]
        # Every other page keeps the app's own policy.
        assert "sha256" not in client.get("/").headers["content-security-policy"]
        missing = client.get("/guide/nothing.html", headers={"Accept": "application/json"})
        assert missing.status_code == 404 and "/assets/" not in missing.text  # the app's


def test_guide_is_absent_until_the_site_is_built(client_factory, tmp_path):
    with client_factory(guide_dir=tmp_path / "site") as client:
        assert client.get("/guide", follow_redirects=False).status_code == 404
        assert client.get("/guide/").status_code == 404
