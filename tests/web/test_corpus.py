"""The bad-input corpus against the real app: every case gets its status and JSON error,
on /predict and (for request framing) on the page's form, and the server stays ready."""

import pytest

from tests.builders.corpus import CASES, FRAMING_IDS, Case, Raw
from tests.builders.images import model_output


def send(client, case: Case, path: str = "/predict"):
    built = case.build()
    if isinstance(built, Raw):
        body = built.body
        if path == "/":  # the page's form names its field "files"
            body = body.replace(b'name="file"', b'name="files"')
        return client.post(path, content=body, headers={"content-type": built.content_type})
    return client.post(path, files={"file": (case.filename, built, "image/jpeg")})


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_corpus_case_gets_its_answer_and_server_stays_ready(client, case):
    response = send(client, case)
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    if case.code is None:
        assert 0 <= model_output(body) <= 1
    else:
        assert body["error"] == case.code
        assert len(body["detail"]) > 20  # a sentence for a person, not a stack trace
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("case", [c for c in CASES if c.id in FRAMING_IDS],
                         ids=[c.id for c in CASES if c.id in FRAMING_IDS])
def test_corpus_framing_case_on_the_page_form(client, case):
    response = send(client, case, path="/")
    # Two files are a worklist on the page, not an error; it takes up to max_batch_files + 15
    # parts, so 41 parts are fine there.
    expected = 200 if case.id in ("two-files", "too-many-parts") else case.status
    assert response.status_code == expected
    assert response.status_code < 500


def test_corpus_is_large_and_covers_every_class():
    assert len(CASES) >= 50
    ids = {case.id for case in CASES}
    for needed in ("filename-over-header-limit", "jpeg-cut-in-header-200-bytes",
                   "png-ztxt-bomb", "exif-rotated-with-wrongly-typed-tag",
                   "jpeg-cut-plus-end-marker", "jpeg-corrupt-scan", "png-stream-ends-early",
                   "jpeg-frame-taller-than-data"):
        assert needed in ids


def test_page_form_refuses_a_flood_of_parts(client):
    from tests.builders.corpus import multipart, part

    body = multipart(*[part(b"x", name=b"f%d" % i, filename=None) for i in range(200)])
    response = client.post("/", content=body,
                           headers={"content-type": "multipart/form-data; boundary=corpusboundary"})
    assert response.status_code == 400 and response.json()["error"] == "malformed_upload"
