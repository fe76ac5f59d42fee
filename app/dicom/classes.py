"""What the node takes, and what it scores: one place for both doors (C-STORE, STOW-RS).

A PACS that routes a whole study sends its radiographs, then whatever else the study holds
(structured reports, presentation states, other images, the node's own results), and fails
the study's transfer when the node refuses any of it. So the node takes storage of every
SOP class pynetdicom knows, in every transfer syntax but the deflated ones, and scores only
the radiograph classes (SCORED_CLASSES); the rest is acknowledged and ignored (never listed,
scored or sent back), counted by a fixed kind (`ignored_kind`).

Deflated data sets (Deflated Explicit VR Little Endian, and the two JPIP Referenced Deflate
syntaxes) are not offered: the association would inflate one whole in the server (a small
one can inflate to gigabytes), and every sender can fall back to Implicit VR Little Endian
(PS3.5 10.1). For the radiograph classes the node scores, only the syntaxes the decoder
reads are offered (SCORED_TRANSFER_SYNTAXES): a PACS that holds a film in another one (JPEG
progressive, JPEG XL, HTJ2K) learns at negotiation that the syntax is not supported (its
presentation context rejected, reason 4: transfer syntaxes not supported, PS3.8 9.3.3.2), a
final answer, and one that can transcode (Orthanc does, by default) sends the film in a
syntax the node reads, so the film is scored rather than refused. A film in such a syntax
that reaches the node anyway (STOW-RS, which has no negotiation) is answered
`unsupported_encoding`, naming the syntax (app/contract/dicom.py DECODED_TRANSFER_SYNTAXES).
Every other class is taken in any syntax but the deflated ones, since it is only
acknowledged.
"""

from __future__ import annotations

from pydicom import Dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, UID_dictionary
from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts
from pynetdicom.sop_class import (
    BreastProjectionXRayImageStorageForPresentation,
    BreastProjectionXRayImageStorageForProcessing,
    ComputedRadiographyImageStorage,
    DigitalIntraOralXRayImageStorageForPresentation,
    DigitalIntraOralXRayImageStorageForProcessing,
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalMammographyXRayImageStorageForProcessing,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
)

from app.contract.dicom import DECODED_TRANSFER_SYNTAXES
from app.dicom.results import MANUFACTURER  # how the node marks its results
from app.services.observer import IGNORED_KINDS

# Projection radiographs, and scanned films (secondary capture): what the model scores;
# and the projection X-ray classes of other parts (PS3.4 B.5: mammography, breast
# projection, intra-oral), so that a film sent under one (a mammography class labelled DX)
# is listed as needing a human look (app/contract/intended_use.py: not_chest_radiograph),
# never silently ignored. "For Processing" ones come out not_for_presentation.
SCORED_CLASSES: tuple[UID, ...] = (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalMammographyXRayImageStorageForProcessing,
    DigitalIntraOralXRayImageStorageForPresentation,
    DigitalIntraOralXRayImageStorageForProcessing,
    BreastProjectionXRayImageStorageForPresentation,
    BreastProjectionXRayImageStorageForProcessing,
)
# Every storage SOP class pynetdicom knows (170, PS3.4 Annex B and the retired ones).
STORAGE_CLASSES: tuple[UID, ...] = tuple(
    UID(context.abstract_syntax) for context in AllStoragePresentationContexts)

_DEFLATED: frozenset[str] = frozenset({
    DeflatedExplicitVRLittleEndian,
    "1.2.840.10008.1.2.4.95",  # JPIP Referenced Deflate
    "1.2.840.10008.1.2.4.205",  # JPIP HTJ2K Referenced Deflate
})
# The retired JPEG processes (progressive, hierarchical, ...) that pynetdicom's list leaves
# out but archives still hold: taken, and answered unsupported_encoding by name.
_RETIRED_JPEG = tuple(UID(uid) for uid, entry in UID_dictionary.items()
                      if entry[1] == "Transfer Syntax" and entry[3] == "Retired"
                      and uid.startswith("1.2.840.10008.1.2.4."))
# The ones the decoder reads first (uncompressed first), then every other one: pynetdicom
# accepts, of the syntaxes a sender offers in one context, the first in this list, so a
# sender that offers one the decoder reads beside one it does not gets the one it reads.
TRANSFER_SYNTAXES: tuple[UID, ...] = tuple(dict.fromkeys(
    UID(uid) for uid in (*DECODED_TRANSFER_SYNTAXES, *ALL_TRANSFER_SYNTAXES, *_RETIRED_JPEG)
    if uid not in _DEFLATED))
# What the scored classes are offered: only what the decoder reads (uncompressed first).
SCORED_TRANSFER_SYNTAXES: tuple[UID, ...] = tuple(
    uid for uid in TRANSFER_SYNTAXES if uid in DECODED_TRANSFER_SYNTAXES)


def offered_syntaxes(sop_class: str) -> list[UID]:
    """The transfer syntaxes the node accepts for `sop_class` at negotiation."""
    return list(SCORED_TRANSFER_SYNTAXES if sop_class in SCORED_CLASSES
                else TRANSFER_SYNTAXES)

_SR_ROOT = "1.2.840.10008.5.1.4.1.1.88."  # structured reports (PS3.4 B.5)
_PRESENTATION_STATE_ROOT = "1.2.840.10008.5.1.4.1.1.11."  # softcopy presentation states


def ignored_kind(ds: Dataset) -> str | None:
    """The fixed kind (app/services/observer.py IGNORED_KINDS) of an instance the node takes
    but does not score, or None for one it scores (a radiograph class, not its own)."""
    sop_class = str(ds.get("SOPClassUID", "") or "").strip()
    if _text(ds, "Manufacturer") == MANUFACTURER and (
            sop_class.startswith(_SR_ROOT) or "DERIVED" in _values(ds, "ImageType")):
        kind = "own_result"
    elif sop_class in SCORED_CLASSES:
        return None
    elif sop_class.startswith(_SR_ROOT):
        kind = "structured_report"
    elif sop_class.startswith(_PRESENTATION_STATE_ROOT):
        kind = "presentation_state"
    elif "Image" in UID(sop_class).name:
        kind = "image"
    else:
        kind = "other"
    assert kind in IGNORED_KINDS
    return kind


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text or None


def _values(ds: Dataset, keyword: str) -> list[str]:
    value = ds.get(keyword)
    if value is None:
        return []
    return [str(item).strip().upper() for item in ([value] if isinstance(value, str)
                                                   else value)]
