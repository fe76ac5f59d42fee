"""Plain words (app/services/plain.py, issue 33): a reason code as its sentence, a technical
note as a sentence that names no DICOM tag, the technical text kept beside it; the API's
reasons_text and warnings_text, and the upload page without JavaScript, say them."""

from __future__ import annotations

import re

import pytest

from app.contract.assessability import REASONS
from app.services.plain import GENERIC, NOTES, plain_note, plain_notes, reason_sentence
from tests.builders import films as fb
from tests.builders.images import xray_like

TAG = re.compile(r"\([0-9A-F]{4},[0-9A-F]{4}")

# The technical notes as app/contract/dicom.py, dicom_display.py and intended_use.py write
# them, and a phrase each plain sentence must hold.
NOTES_SEEN = [
    ("Photometric Interpretation (0028,0004) is YBR_FULL_422: a grey film in a colour "
     "container, read as grey.", "read as grey"),
    ("View Position (0018,5101) is absent: check that this is a frontal (AP/PA) film.",
     "which view"),
    ("View Position (0018,5101) is XYZ, not a defined term: check that this is a frontal "
     "(AP/PA) film.", "unusual way"),
    ("View Position (0018,5101) is AP\\PA: several views.", "several views"),
    ("View Position (0018,5101) is LL: not a frontal (AP/PA) view.", "frontal"),
    ("View Position (0018,5101) is AP: the model was validated on PA films only.",
     "PA only"),
    ("Modality (0008,0060) is OT: a secondary capture, taken as a digitised radiograph; "
     "check that it is a chest film.", "copy of a radiograph"),
    ("The Presentation LUT Sequence (2050,0010) is not applied; the film is shown with its "
     "VOI only.", "display settings"),
    ("The VOI LUT Sequence (0028,3010) is incomplete or constant: ignored.", "brightness"),
    ("VOI LUT Function (0028,1056) FOO is not a defined term: LINEAR used.", "brightness"),
    ("Window Center/Width (0028,1050/1051) 0/0 ignored (a width under 1): the data's own "
     "range is shown.", "brightness window"),
    ("Body Part Examined (0018,0015) is CHESTABDOMEN: not the chest alone, which the model "
     "was validated on.", "not of the chest alone"),
    ("Presentation Intent Type (0008,0068) is FOR PROCESSING: raw detector pixels, not "
     "processed for viewing; the model was validated on films for presentation.",
     "raw detector pixels"),
    ("SOP Class UID (0008,0016) is Digital X-Ray Image Storage - For Processing: raw "
     "detector pixels, not processed for viewing; the model was validated on films for "
     "presentation.", "raw detector pixels"),
    ("SOP Class UID (0008,0016) is Digital Mammography X-Ray Image Storage - For "
     "Presentation: not a chest radiograph (CR, DX), which the model was validated on.",
     "not a chest radiograph"),
    ("The patient's age from Patient's Age (0010,1010) 007Y is 7 years: the model was "
     "validated on ages 1 to under 6 years.", "7 years old, outside the ages"),
    ("The patient's age is not in the DICOM header (Patient's Age, or Patient's Birth Date "
     "and Study Date), so it was not checked: the model was validated on ages 1 to under 6 "
     "years.", "does not give the patient's age"),
]


@pytest.mark.parametrize(("note", "phrase"), NOTES_SEEN)
def test_a_technical_note_becomes_a_sentence_without_a_tag(note, phrase):
    plain = plain_note(note)
    assert phrase in plain.text and not TAG.search(plain.text)
    assert plain.technical == note and plain.text != GENERIC


def test_every_rule_is_exercised_by_a_note_seen():
    used = {next(i for i, (pattern, _) in enumerate(NOTES) if pattern.search(note))
            for note, _ in NOTES_SEEN}
    assert used == set(range(len(NOTES)))


def test_an_unknown_technical_note_gets_the_generic_sentence_and_a_plain_one_is_kept():
    unknown = "JPEG samples of 12 bits under Bits Allocated (0028,0100) 8: read as 8 bits."
    assert plain_note(unknown).text == GENERIC and plain_note(unknown).technical == unknown
    guard = "The image looks unlike the chest films the model was trained on."
    assert plain_note(guard).text == guard and plain_note(guard).technical is None


def test_reasons_have_sentences_and_their_repeats_leave_the_notes():
    assert reason_sentence("inverted") == REASONS["inverted"]
    assert reason_sentence("from_a_newer_server") == "From a newer server."
    notes = plain_notes([REASONS["rotated"], "View Position (0018,5101) is absent: x."],
                        ["rotated"])
    assert [n.text for n in notes] == [plain_note("View Position (0018,5101) is absent").text]


def test_the_api_and_the_page_give_a_colour_container_in_plain_words(client):
    film = fb.colour_container(xray_like(256, 256), "YBR_FULL_422")
    body = client.post("/predict", files={"file": ("film.dcm", film)}).json()
    [note] = [n for n in body["warnings_text"] if "(0028,0004)" in (n["technical"] or "")]
    assert note["technical"].startswith("Photometric Interpretation (0028,0004) is YBR_FULL_422")
    assert note["text"] == "The film was stored in a colour format; it is a grey film and was " \
                           "read as grey."
    assert body["reasons_text"] == [reason_sentence(code) for code in body["reasons"]]
    page = client.post("/", files={"files": ("film.dcm", film)},
                       headers={"Accept": "text/html"}).text
    warnings = page[page.index('id="warnings"'):page.index("</p>", page.index('id="warnings"'))]
    assert "stored in a colour format" in warnings and "(0028,0004)" not in warnings.split(
        "title=")[0]
    assert 'title="Photometric Interpretation (0028,0004) is YBR_FULL_422' in warnings


def test_every_reason_code_has_a_sentence_and_a_few_words():
    from app.services.plain import REASON_WORDS, reason_words

    assert set(REASON_WORDS) == set(REASONS)
    assert reason_words("from_a_newer_server") == "from a newer server"
