"""Plain words for a clinician: a reason code as its sentence, and a technical note (a DICOM
tag, its number and value) as a sentence that names no tag, the technical text kept for the
hover and the API (issue 33). The codes and the technical notes stay what the API, the CSV
and the SR say; only what a page shows first is changed.

The sentences of the reason codes live in app/contract/assessability.py REASONS; the notes'
technical texts in app/contract/dicom.py, dicom_display.py and intended_use.py. Each rule in
NOTES below names the note it rewrites by its opening words, and a note that no rule knows
and that names a DICOM tag gets the generic GENERIC sentence, so no tag number ever reaches
the first reading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.contract.assessability import REASONS

# "(0028,0004)", "(0028,1050/1051)": a DICOM tag number as the technical notes write it.
_TAG = re.compile(r"\([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}(/[0-9A-Fa-f]{4})?\)")
GENERIC = "The file was read with a technical correction; hover for the details."

# (the technical note's pattern, the plain sentence; {name} fills from the pattern's groups)
NOTES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.S), sentence) for pattern, sentence in (
        # dicom.py: a grey film in a colour container (YBR_FULL_422 of JPEG-baseline files)
        (r"^Photometric Interpretation \(0028,0004\) is \S+: a grey film in a colour",
         "The film was stored in a colour format; it is a grey film and was read as grey."),
        (r"^View Position \(0018,5101\) is absent",
         "The file does not say which view this is: check that it is a frontal (front or "
         "back) chest film."),
        (r"^View Position \(0018,5101\) is \S+, not a defined term",
         "The file names the view in an unusual way: check that it is a frontal (front or "
         "back) chest film."),
        (r"^View Position \(0018,5101\) is \S+: several views", "The file holds several views."),
        (r"^View Position \(0018,5101\) is \S+: not a frontal", REASONS["not_frontal"]),
        (r"^View Position \(0018,5101\) is \S+: the model was validated on (?P<views>\S+) "
         r"films only", "The view is not one the model was validated on ({views} only)."),
        (r"^Modality \(0008,0060\) is [^:]*: a secondary capture",
         "The film is a scanned or captured copy of a radiograph: check that it is a chest "
         "film."),
        (r"^The Presentation LUT Sequence \(2050,0010\) is not applied",
         "The film may look slightly different here than in the PACS viewer: one of the "
         "file's display settings was not applied."),
        (r"^The VOI LUT Sequence \(0028,3010\) is incomplete",
         "The file's brightness setting could not be used; the film is shown with its full "
         "range of grey."),
        (r"^VOI LUT Function \(0028,1056\)",
         "The file's brightness curve was not recognised; a standard one was used."),
        (r"^Window Center/Width \(0028,1050/1051\)",
         "The file's brightness window could not be used; the film is shown with its full "
         "range of grey."),
        # intended_use.py: the header against the card's population
        (r"^Body Part Examined \(0018,0015\) is [^:]*: not the chest alone",
         "The file says the film is not of the chest alone; the model was validated on "
         "chest films."),
        (r"^Presentation Intent Type \(0008,0068\) is FOR PROCESSING",
         REASONS["not_for_presentation"]),
        (r"^SOP Class UID \(0008,0016\) is [^:]*: raw detector pixels",
         REASONS["not_for_presentation"]),
        (r"^SOP Class UID \(0008,0016\) is [^:]*: not a chest radiograph",
         "The file is not a chest radiograph (it is another kind of image); the model was "
         "validated on chest radiographs."),
        (r"^The patient's age from .+? is (?P<age>[^:]+): the model was validated on ages "
         r"(?P<ages>.+?)\.?$",
         "The patient is {age} old, outside the ages the model was validated on ({ages})."),
        (r"^The patient's age is not in the DICOM header.*?: the model was validated on ages "
         r"(?P<ages>.+?)\.?$",
         "The file does not give the patient's age, so it was not checked; the model was "
         "validated on ages {ages}."),
    ))


# Each reason code in a few words, for a narrow cell (the worklist's notes, 11rem: static/
# reading.css); the sentence (REASONS) on hover.
REASON_WORDS: dict[str, str] = {
    "inverted": "looks inverted",
    "rotated": "looks rotated",
    "not_chest": "not the chest alone",
    "not_frontal": "not a frontal view",
    "unlike_training": "unlike its training films",
    "too_small": "too small to read",
    "no_contrast": "blank or no contrast",
    "outside_intended_age": "outside validated ages",
    "not_chest_radiograph": "not a chest radiograph",
    "not_for_presentation": "raw detector image",
}


@dataclass(frozen=True)
class PlainNote:
    """A note as a page shows it: `text` first, `technical` (None: the text is the note
    itself) on hover or in a details block."""

    text: str
    technical: str | None = None


def reason_sentence(code: str) -> str:
    """A reason code's sentence for a person (assessability.py REASONS); an unknown code
    (from a newer server's database) as its words."""
    return REASONS.get(code, code.replace("_", " ").capitalize() + ".")


def reason_words(code: str) -> str:
    """A reason code in a few words (REASON_WORDS); an unknown code as its words."""
    return REASON_WORDS.get(code, code.replace("_", " "))


def plain_note(note: str) -> PlainNote:
    """A warning as a clinician reads it first: a note that names a DICOM tag becomes its
    rule's sentence (NOTES; GENERIC when no rule knows it), with the note as `technical`; a
    note in plain words already (the input guard's, the detector's) is kept as it is."""
    for pattern, sentence in NOTES:
        match = pattern.search(note)
        if match:
            return PlainNote(sentence.format(**match.groupdict()), note)
    if _TAG.search(note):
        return PlainNote(GENERIC, note)
    return PlainNote(note)


def plain_notes(notes: list[str] | tuple[str, ...],
                reasons: list[str] | tuple[str, ...] = ()) -> list[PlainNote]:
    """The notes of one film in plain words, in order, without the ones that repeat a
    reason's sentence already shown (a film that is not assessable carries each reason's
    sentence among its warnings too) or another note's plain sentence."""
    shown = {reason_sentence(code) for code in reasons}
    plain = []
    for note in notes:
        rewritten = plain_note(note)
        if rewritten.text not in shown:
            shown.add(rewritten.text)
            plain.append(rewritten)
    return plain
