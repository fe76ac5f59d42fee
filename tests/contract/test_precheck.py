"""app/contract/preprocessing.py `precheck`: the refusals made before a decode worker is
taken give exactly the answer the decoder would, and pass every film the decoder takes."""

from __future__ import annotations

import pytest

from app.contract.errors import ImageError
from app.contract.preprocessing import decode, precheck
from tests.builders import corpus
from tests.builders.dicom import dicom_bytes
from tests.builders.images import jpeg_bytes, png_bytes, xray_like


def _outcome(step, data: bytes) -> str:
    try:
        step(data)
    except ImageError as exc:
        return exc.code
    return "passed"


IMAGE_CASES = [case for case in corpus.CASES if case.id not in corpus.FRAMING_IDS]


@pytest.mark.parametrize("case", IMAGE_CASES, ids=lambda case: case.id)
def test_precheck_refuses_only_what_decode_refuses_and_the_same_way(case):
    data = case.build()
    early = _outcome(precheck, data)
    if early != "passed":
        assert early == _outcome(lambda d: decode(d, max_pixels=50_000_000), data)


def test_precheck_passes_films_and_refuses_the_cheap_cases():
    for film in (jpeg_bytes(), png_bytes(), dicom_bytes(xray_like(64, 64))):
        precheck(film)
    assert _outcome(precheck, b"") == "empty_file"
    assert _outcome(precheck, b"GIF89a" + b"\x00" * 20) == "unsupported_format"
    assert _outcome(precheck, b"name,age\nx,1\n") == "not_an_image"
