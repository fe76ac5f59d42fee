"""The STOW-RS route (app/web/routes/dicomweb.py) on the app, with the node's ingest on the
stand-in model: the web layer's part only (token, media type, limits, streaming), and the
split of its body into parts (app/web/upload.py RelatedParts, python-multipart's parser)
fed byte by byte."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from pydicom import Dataset

from app.dicom.stow import multipart_body
from app.errors import MalformedUploadError, TooManyFilesError, UploadTooLargeError
from app.services.catalog import ModelCatalog
from app.web.main import create_app
from app.web.upload import RelatedParts
from tests.builders.dicom import file_bytes, nested, study_film
from tests.builders.images import xray_like
from tests.dicom.nodes import scoring_ingest
from tests.servers import settings_for_tests

TOKEN = "a-token-of-sixteen-chars"


@contextmanager
def _client(with_ingest: bool = True, **settings) -> Iterator[tuple[TestClient, list]]:
    catalog = ModelCatalog()
    catalog.failure = "not loaded: these tests score with the stand-in"  # nothing to load
    app = create_app(settings_for_tests(decode_workers=0, **settings), catalog=catalog)
    ingest, recorder = scoring_ingest()
    with TestClient(app) as client:
        # The stand-in ingest, or none: the moment before the lifespan has made the node's.
        app.state.dicom_ingest = ingest if with_ingest else None
        yield client, recorder.committed


def _post(client, films, path="/dicomweb/studies", **headers):
    body, content_type = multipart_body([file_bytes(f) for f in films])
    return client.post(path, content=body, headers={"Content-Type": content_type, **headers})


def test_stow_of_one_instance_answers_dicom_json():
    film = study_film(xray_like(96, 80))
    with _client() as (client, committed):
        response = _post(client, [film])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/dicom+json")
    answer = Dataset.from_json(response.json())
    assert answer.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == film.SOPInstanceUID
    assert [r.facts.sop_instance_uid for r in committed] == [film.SOPInstanceUID]


def test_stow_of_several_instances_to_a_study():
    study = "1.2.826.0.1.3680043.8.498.77"
    films = [study_film(xray_like(96, 80, seed=i), study_uid=study) for i in range(3)]
    stranger = study_film(xray_like(96, 80))
    with _client() as (client, committed):
        response = _post(client, [*films, stranger], path=f"/dicomweb/studies/{study}")
    assert response.status_code == 202
    answer = Dataset.from_json(response.json())
    assert len(answer.ReferencedSOPSequence) == 3
    assert answer.FailedSOPSequence[0].ReferencedSOPInstanceUID == stranger.SOPInstanceUID
    assert len(committed) == 3


def test_stow_needs_the_token_when_one_is_set():
    with _client(api_token=TOKEN) as (client, committed):
        refused = _post(client, [study_film(xray_like(64, 64))])
        taken = _post(client, [study_film(xray_like(64, 64))],
                      Authorization=f"Bearer {TOKEN}")
    assert refused.status_code == 401 and taken.status_code == 200
    assert len(committed) == 1


def test_stow_of_another_media_type_is_415():
    with _client() as (client, _):
        response = client.post("/dicomweb/studies", content=b"{}",
                               headers={"Content-Type": "application/dicom+json"})
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


def test_stow_over_the_batch_limit_is_413():
    films = [study_film(xray_like(96, 80, seed=i)) for i in range(3)]
    with _client(max_batch_files=2) as (client, _):
        assert _post(client, films).status_code == 413


def test_stow_before_the_node_has_an_ingest_is_503():
    with _client(with_ingest=False) as (client, _):
        response = _post(client, [study_film(xray_like(64, 64))])
    assert response.status_code == 503 and response.headers["retry-after"]


def _body(*parts: bytes, boundary: str = "b0und", preamble: bytes = b"",
          epilogue: bytes = b"", headers: str = "Content-Type: application/dicom\r\n") -> bytes:
    pieces = [preamble]
    for data in parts:
        pieces += [f"--{boundary}\r\n{headers}\r\n".encode(), data, b"\r\n"]
    pieces.append(f"--{boundary}--\r\n".encode() + epilogue)
    return b"".join(pieces)


def _split(body: bytes, chunk: int, **limits) -> list:
    reader = RelatedParts("b0und", limits.get("max_part_bytes", 1 << 20),
                          limits.get("max_parts", 10))
    parts = []
    for start in range(0, len(body), chunk):
        reader.feed([body[start:start + chunk]])
        while reader.completed:
            parts.append(reader.completed.popleft())
    reader.close()
    return parts


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_split_gives_each_part_whatever_the_chunks(chunk):
    parts = [b"first", b"", b"\r\n--b0un not a delimiter \r\n", bytes(range(256)) * 4]
    body = _body(*parts, preamble=b"ignored preamble\r\n", epilogue=b"ignored epilogue")
    split = _split(body, chunk)
    assert [p.data for p in split] == parts
    assert {p.content_type for p in split} == {"application/dicom"}


@pytest.mark.parametrize("chunk", [1, 64])
def test_split_gives_each_parts_content_type(chunk):
    body = (b"--b0und\r\nContent-Type: application/dicom; transfer-syntax=1.2\r\n\r\na\r\n"
            b"--b0und\r\n\r\nb\r\n"  # a part without headers
            b"--b0und\r\ncontent-type:  text/plain \r\nX-Other: 1\r\n\r\nc\r\n"
            b"--b0und--\r\n")
    split = _split(body, chunk)
    assert [(p.content_type, p.data) for p in split] == [
        ("application/dicom; transfer-syntax=1.2", b"a"), (None, b"b"), ("text/plain", b"c")]


@pytest.mark.parametrize("chunk", [1, 64])
def test_split_of_a_body_that_breaks_off_is_malformed(chunk):
    with pytest.raises(MalformedUploadError):
        _split(_body(b"x")[:-12], chunk)


def test_split_of_a_body_without_any_boundary_is_malformed():
    with pytest.raises(MalformedUploadError):
        _split(b"no boundary here at all", 4)


def test_split_of_a_part_over_the_limit_stops_at_the_limit():
    with pytest.raises(UploadTooLargeError):
        _split(_body(b"x" * 5000), 100, max_part_bytes=1000)


def test_split_of_too_many_parts_is_refused():
    with pytest.raises(TooManyFilesError):
        _split(_body(*[b"x"] * 4), 64, max_parts=3)


def test_split_of_broken_framing_is_malformed():
    with pytest.raises(MalformedUploadError):
        _split(b"--b0und\r\nno colon in this header\r\n\r\nx\r\n--b0und--\r\n", 64)


def test_stow_of_a_part_over_the_upload_limit_is_413():
    with _client(max_upload_bytes=1000) as (client, committed):
        response = _post(client, [study_film(xray_like(96, 80))])
    assert response.status_code == 413 and committed == []


def test_stow_of_a_body_declared_over_the_batch_limit_is_413_before_it_is_read():
    with _client(max_batch_bytes=1000) as (client, committed):
        response = _post(client, [study_film(xray_like(96, 80))])
    assert response.status_code == 413 and committed == []


def _post_streamed(client, body: bytes, content_type: str, boundary: str):
    """POST `body` to the app as a client streams it, a chunk ending just after each part's
    closing delimiter, so that the route stores a part before the next arrives (the
    TestClient would send the body in one piece)."""
    import anyio
    import httpx

    delimiter = b"\r\n--" + boundary.encode()
    pieces = body.split(delimiter)
    chunks = [pieces[0]]
    for piece in pieces[1:]:
        chunks[-1] += delimiter + piece[:1]
        chunks.append(piece[1:])

    async def stream():
        for chunk in chunks:
            yield chunk
            await anyio.sleep(0.02)

    async def post():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=client.app),
                                     base_url="http://testserver") as streaming:
            return await streaming.post("/dicomweb/studies", content=stream(),
                                        headers={"Content-Type": content_type})

    return anyio.run(post)


def test_stow_of_a_body_that_breaks_off_lists_the_parts_stored_and_what_was_not_read():
    """PS3.18: the parts stored (their results queued) are in the answer, 202, beside an
    other failure that says the rest of the body was not read; never a bare 400."""
    films = [study_film(xray_like(96, 80, seed=i)) for i in range(3)]
    body, content_type = multipart_body([file_bytes(f) for f in films])
    cut = body[:body.rindex(file_bytes(films[2])) + 100]  # the third part never ends
    with _client() as (client, committed):
        response = _post_streamed(client, cut, content_type, content_type.split("=")[-1])
    assert response.status_code == 202
    answer = Dataset.from_json(response.json())
    stored = [f.SOPInstanceUID for f in films[:2]]
    assert [i.ReferencedSOPInstanceUID for i in answer.ReferencedSOPSequence] == stored
    [other] = answer.OtherFailuresSequence
    assert other.FailureReason == 0xC000
    assert other.ErrorComment == "malformed_upload: body not read after part 2"
    assert [r.facts.sop_instance_uid for r in committed] == stored  # the cut part: never


def test_stow_of_too_many_parts_lists_the_parts_stored_before_the_limit():
    films = [study_film(xray_like(96, 80, seed=i)) for i in range(3)]
    body, content_type = multipart_body([file_bytes(f) for f in films])
    with _client(max_batch_files=2) as (client, committed):
        response = _post_streamed(client, body, content_type, content_type.split("=")[-1])
    assert response.status_code == 202
    answer = Dataset.from_json(response.json())
    stored = [r.facts.sop_instance_uid for r in committed]
    assert stored and [i.ReferencedSOPInstanceUID for i in answer.ReferencedSOPSequence] \
        == stored  # exactly what was stored, as each part was read
    assert answer.OtherFailuresSequence[0].ErrorComment.startswith("too_many_files: ")


def test_stow_of_a_body_that_breaks_off_before_any_part_is_stored_is_400():
    film = study_film(xray_like(96, 80))
    body, content_type = multipart_body([file_bytes(film)])
    with _client() as (client, committed):
        response = client.post("/dicomweb/studies", content=body[:len(body) // 2],
                               headers={"Content-Type": content_type})
    assert response.status_code == 400 and committed == []


def test_stow_of_a_deeply_nested_instance_is_a_4xx_logged_once(caplog):
    deep = nested(study_film(xray_like(96, 80)), 300)
    with caplog.at_level(logging.INFO), _client() as (client, committed):
        body, content_type = multipart_body([deep])
        response = client.post("/dicomweb/studies", content=body,
                               headers={"Content-Type": content_type})
    assert response.status_code == 409
    answer = Dataset.from_json(response.json())
    assert answer.OtherFailuresSequence[0].ErrorComment == \
        "sequences nested deeper than 32 levels"
    assert committed == []
    assert "RecursionError" not in caplog.text and "Traceback" not in caplog.text
    assert len([r for r in caplog.records if r.name.startswith("app.")]) <= 2  # access line


def test_stow_answers_each_part_by_its_content_type():
    film = study_film(xray_like(96, 80))
    body = (b"--b0und\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
            b"--b0und\r\nContent-Type: application/dicom\r\n\r\n" + file_bytes(film)
            + b"\r\n--b0und--\r\n")
    with _client() as (client, committed):
        response = client.post("/dicomweb/studies", content=body, headers={
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=b0und'})
    assert response.status_code == 202
    answer = Dataset.from_json(response.json())
    assert answer.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == film.SOPInstanceUID
    assert answer.OtherFailuresSequence[0].FailureReason == 0xC000
    assert len(committed) == 1


# The STOW-RS body in the server's bounds (issue 27): its bytes in the one budget for bodies
# in flight, which the node's C-STORE data sets share, and a place among the worklist
# requests. Before, a STOW-RS body counted in neither (16 concurrent 19 MiB parts: +925 MB).


def test_stow_parts_count_in_the_body_budget_until_answered():
    film = study_film(xray_like(256, 256))
    with _client() as (client, committed):
        state = client.app.state
        ingest, held_while_scored = state.dicom_ingest, []

        def spy(received, source):
            held_while_scored.append(state.body_budget.held)
            return ingest(received, source)

        state.dicom_ingest = spy
        response = _post(client, [film])
        held_after = state.body_budget.held
    assert response.status_code == 200 and len(committed) == 1
    assert held_while_scored[0] >= len(film.PixelData) and held_after == 0


def test_stow_past_the_body_budget_is_busy():
    with _client(max_upload_memory_bytes=64 * 1024) as (client, committed):
        response = _post(client, [study_film(xray_like(256, 256))])
    assert response.status_code == 503 and response.json()["error"] == "busy"
    assert committed == []


def test_stow_takes_a_place_among_the_worklist_requests():
    with _client(max_concurrent_batches=1) as (client, committed):
        with client.app.state.batches.admit():  # a worklist upload being scored
            busy = _post(client, [study_film(xray_like(64, 64))])
        taken = _post(client, [study_film(xray_like(64, 64))])
    assert busy.status_code == 503 and busy.json()["error"] == "busy"
    assert taken.status_code == 200 and len(committed) == 1
