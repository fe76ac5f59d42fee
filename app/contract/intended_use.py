"""The intended-use gate: a DICOM film's header held to the population its model was
validated on (the card's IntendedPopulation, app/contract/card.py). A film whose header says
otherwise is not ranked: it needs a human look, with a reason code for each fact
(assessability.py REASONS) and a sentence that names the tag:

- `outside_intended_age`: the patient's age (dicom_age.py: Patient's Age, 0010,1010, or
  from Patient's Birth Date to the Study Date) is outside the card's age range, and outside
  the range the site has validated (Settings.intended_age_years) when it set one; also when
  the two disagree and either is outside (a header that contradicts itself). Each range is
  [first, last) years: "ages 1 to 5" is from the first birthday up to the sixth. An
  unknown age is no reason: a warning says it could not be checked.
- `not_chest`: Body Part Examined (0018,0015) is stated and is not the chest alone:
  CHESTABDOMEN (a babygram), "CHEST ABDOMEN", WHOLEBODY, KNEE, ...
- `not_chest_radiograph`: the SOP Class UID (0008,0016) is a storage class other than those
  of the card's modalities (PS3.4 B.5: CR, Computed Radiography Image Storage; DX, Digital
  X-Ray Image Storage) and Secondary Capture Image Storage (a scanned film): mammography,
  breast tomosynthesis or projection, intra-oral, angiography, CT, ... An unknown (private)
  class or none is no reason.
- `not_for_presentation`: a "For Processing" SOP class (raw detector pixels, PS3.3
  C.8.11.1.1.1) or Presentation Intent Type (0008,0068) FOR PROCESSING.
- `not_frontal`: View Position (0018,5101) is a frontal view the card does not list (the
  views dicom.py does not take as frontal are its `not_frontal` already).

A film without a DICOM header (JPEG, PNG) states none of these facts: the gate has nothing
to hold to the card. Pure Python: it runs in the decode workers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
    UID_dictionary,
)

from app.contract.card import IntendedPopulation
from app.contract.dicom import FRONTAL_VIEWS, DicomInfo

AgeRange = tuple[float, float]  # [first, last) in years

# PS3.4 B.5: the storage SOP classes of each projection radiograph modality a card may name.
CLASSES_OF_MODALITY: dict[str, tuple[str, ...]] = {
    "CR": (ComputedRadiographyImageStorage,),
    "DX": (DigitalXRayImageStorageForPresentation, DigitalXRayImageStorageForProcessing),
}
# Scanned films, taken as today (dicom.py warns that they are secondary captures).
OTHER_TAKEN_CLASSES = (SecondaryCaptureImageStorage,)
FOR_PROCESSING = "FOR PROCESSING"  # Presentation Intent Type, PS3.3 C.8.11.1.1.1

# Body Part Examined as archives write the chest alone: the chest words of PS3.16 Annex L
# (CHEST; LUNG; THORAX, its SNOMED meaning), with qualifiers of view, position, age and
# modality around them ("PORTABLE CHEST", "CHEST PA", "PED CHEST 1 VIEW"). Any other word
# (ABDOMEN, CHESTABDOMEN, WHOLEBODY, BABYGRAM) makes it another part.
_CHEST_WORDS = frozenset({"CHEST", "THORAX", "LUNG", "LUNGS"})
_QUALIFIERS = frozenset({
    "AP", "PA", "FRONTAL", "PORTABLE", "PORT", "SUPINE", "ERECT", "UPRIGHT", "SEMI",
    "PED", "PEDS", "PEDIATRIC", "PAEDIATRIC", "XR", "XRAY", "X", "RAY", "CR", "DX", "DR",
    "VIEW", "VIEWS", "SINGLE", "ONE", "AND", "OF", "THE"})


def is_chest_alone(body_part: str) -> bool:
    """Whether a Body Part Examined value names the chest and nothing else."""
    words = [w for w in re.findall(r"[A-Z]+", body_part.upper()) if w not in _QUALIFIERS]
    return bool(words) and all(w in _CHEST_WORDS for w in words)


@dataclass(frozen=True)
class IntendedUse:
    """A card's population, with the age range a site has validated besides (None: none).
    `findings` is the gate."""

    population: IntendedPopulation = field(default_factory=IntendedPopulation)
    site_age_years: AgeRange | None = None

    @property
    def age_ranges(self) -> tuple[AgeRange, ...]:
        """The ranges a film's age may fall in: the card's, and the site's."""
        return tuple(r for r in (self.population.age_years, self.site_age_years)
                     if r is not None)

    def findings(self, dicom: DicomInfo | None) -> tuple[list[tuple[str, str]], list[str]]:
        """([(reason code, sentence)], [warning]) for a film's DICOM facts; both empty for a
        film that is not DICOM."""
        if dicom is None:
            return [], []
        found: list[tuple[str, str]] = []
        warnings: list[str] = []
        self._age(dicom, found, warnings)
        if dicom.body_part is not None and not is_chest_alone(dicom.body_part):
            found.append(("not_chest", f"Body Part Examined (0018,0015) is "
                                       f"{dicom.body_part}: not the chest alone, which the "
                                       "model was validated on."))
        found.extend(self._sop_class(dicom.sop_class))
        if dicom.presentation_intent == FOR_PROCESSING:
            found.append(("not_for_presentation", "Presentation Intent Type (0008,0068) is "
                          "FOR PROCESSING: raw detector pixels, not processed for viewing; "
                          "the model was validated on films for presentation."))
        views = (dicom.view_position or "").split("\\")
        if dicom.view_position and all(v in FRONTAL_VIEWS for v in views) and \
                any(v not in self.population.projections for v in views):
            found.append(("not_frontal", f"View Position (0018,5101) is "
                          f"{dicom.view_position}: the model was validated on "
                          f"{'/'.join(self.population.projections)} films only."))
        return found, warnings

    def _age(self, dicom: DicomInfo, found: list[tuple[str, str]],
             warnings: list[str]) -> None:
        ranges = self.age_ranges
        if not ranges:
            return
        validated = f"the model was validated on ages {_range_text(ranges[0])}" + (
            f", and this site on {_range_text(ranges[1])}" if len(ranges) > 1 else "")
        if dicom.age_years is None:
            warnings.append("The patient's age is not in the DICOM header (Patient's Age, or "
                            "Patient's Birth Date and Study Date), so it was not checked: "
                            f"{validated}.")
        elif not any(first <= dicom.age_years < last for first, last in ranges):
            found.append(("outside_intended_age", f"The patient's age from {dicom.age_from} "
                          f"is {age_text(dicom.age_years)}: {validated}."))
        elif dicom.age_other is not None and not any(
                first <= dicom.age_other[0] < last for first, last in ranges):
            # The header contradicts itself: the film is held to the age outside the range.
            other, other_from = dicom.age_other
            found.append(("outside_intended_age", f"The patient's age from {other_from} is "
                          f"{age_text(other)} (from {dicom.age_from}: "
                          f"{age_text(dicom.age_years)}): {validated}."))

    def _sop_class(self, sop_class: str | None) -> list[tuple[str, str]]:
        uid = UID(sop_class or "")
        entry = UID_dictionary.get(uid)
        if entry is None or entry[1] != "SOP Class" or "Storage" not in entry[0]:
            return []  # none, or a class the standard does not name: no fact to hold
        found = []
        taken = [c for m in self.population.modalities for c in CLASSES_OF_MODALITY[m]]
        if uid not in (*taken, *OTHER_TAKEN_CLASSES):
            found.append(("not_chest_radiograph", f"SOP Class UID (0008,0016) is {uid.name}: "
                          f"not a chest radiograph ({', '.join(self.population.modalities)}),"
                          " which the model was validated on."))
        if "For Processing" in uid.name:
            found.append(("not_for_presentation", f"SOP Class UID (0008,0016) is {uid.name}: "
                          "raw detector pixels, not processed for viewing; the model was "
                          "validated on films for presentation."))
        return found


def _range_text(ages: AgeRange) -> str:
    """'1 to under 6 years'."""
    return f"{ages[0]:g} to under {ages[1]:g} years"


def age_text(years: float) -> str:
    """An age for a person: '45 years', '1.5 years', '3 months', '20 days'."""
    if years >= 2:
        return f"{math.floor(years)} years"
    if years >= 1:
        return f"{math.floor(years * 10) / 10:g} years"
    if years >= 1 / 12:
        months = math.floor(years * 12 + 1e-9)
        return f"{months} month{'s' if months > 1 else ''}"
    return f"{round(years * 365.25)} days"
