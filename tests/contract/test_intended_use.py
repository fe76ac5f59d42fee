"""The intended-use gate (app/contract/intended_use.py): the facts a DICOM header gives
(dicom.py, dicom_age.py) held to the population on the model card, one reason code each."""

from __future__ import annotations

import json
from datetime import date

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.contract.card import CARD_FILE, IntendedPopulation, ModelCard, read_card
from app.contract.dicom import read_dicom
from app.contract.dicom_age import years_between
from app.contract.intended_use import IntendedUse, is_chest_alone
from tests.builders import films as fb
from tests.builders.dicom import dicom_bytes
from tests.builders.images import xray_like
from tests.servers import REPO

CARDS = [REPO / "models" / name for name in ("pneumonia/1", "pneumonia/2",
                                             "pneumonia_compact/1")]
KERMANY = read_card(CARDS[1]).intended_population
GATE = IntendedUse(KERMANY)
FILM = dicom_bytes(xray_like(48, 40))  # DX for presentation, CHEST, PA, born 2020-02-29
MG = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image Storage - For Pres.


def _info(**tags):
    return read_dicom(fb.edited(FILM, **tags), None)[1]


def _codes(gate: IntendedUse = GATE, **tags) -> list[str]:
    return [code for code, _ in gate.findings(_info(**tags))[0]]


@pytest.mark.parametrize("folder", CARDS, ids=lambda p: f"{p.parent.name}-{p.name}")
def test_committed_cards_state_the_kermany_population(folder):
    population = read_card(folder).intended_population
    assert population.age_years == (1.0, 6.0)  # "one to five years old": to the 6th birthday
    assert (population.projections, population.body_part, population.modalities,
            population.pixel_intent) == (("AP", "PA"), "CHEST", ("CR", "DX"),
                                          "FOR PRESENTATION")
    assert "Kermany" in population.source


def test_a_card_without_a_population_is_a_chest_radiograph_model_of_unstated_ages(tmp_path):
    card = json.loads((CARDS[0] / CARD_FILE).read_text())
    del card["intended_population"]
    (tmp_path / CARD_FILE).write_text(json.dumps(card))
    population = read_card(tmp_path).intended_population
    assert population.age_years is None and population.body_part == "CHEST"
    gate = IntendedUse(population)
    assert gate.findings(_info(PatientAge="045Y")) == ([], [])  # no age to hold it to
    assert _codes(gate, BodyPartExamined="KNEE") == ["not_chest"]


@pytest.mark.parametrize("ages", [(6.0, 1.0), (-1.0, 5.0), (3.0, 3.0)])
def test_an_age_range_that_is_not_first_to_last_is_refused(ages):
    with pytest.raises(ValidationError):
        IntendedPopulation(age_years=ages)
    with pytest.raises(ValidationError, match="INTENDED_AGE_YEARS"):
        Settings(intended_age_years=ages)


def test_the_site_setting_reads_a_json_range_from_the_environment(monkeypatch):
    monkeypatch.setenv("PNEUMONIA_INTENDED_AGE_YEARS", "[0, 18]")
    assert Settings().intended_age_years == (0.0, 18.0)


# --- age --------------------------------------------------------------------------------


@pytest.mark.parametrize(("age", "years"), [
    ("045Y", 45.0), ("003M", 0.25), ("010W", 70 / 365.25), ("020D", 20 / 365.25),
    ("45Y", 45.0), ("004Y", 4.0),
    # Written off the standard's nnnU, but unambiguous: more zeros, lower case, spaces.
    ("0030Y", 30.0), ("030y", 30.0), ("0004Y", 4.0), ("3 m", 0.25)])
def test_patients_age_is_read_in_years(age, years):
    info = _info(PatientAge=age, PatientBirthDate=None)
    assert info.age_years == pytest.approx(years)
    assert info.age_from == f"Patient's Age (0010,1010) {age.strip()}"
    assert not any("Patient's Age" in warning for warning in info.warnings)


@pytest.mark.parametrize("age", ["4 years", "4.5Y", "Y", "-03Y", "0.5Y", "4YM"])
def test_a_malformed_patients_age_falls_back_to_the_dates_and_says_so(age):
    info = _info(PatientAge=age)  # born 2020-02-29, studied 2024-11-26
    assert info.age_years == pytest.approx(years_between(date(2020, 2, 29),
                                                         date(2024, 11, 26)))
    assert info.age_from == "Patient's Birth Date (0010,0030) and Study Date"
    assert f"Patient's Age (0010,1010) '{age}' is not an age string (such as 004Y), so it " \
           "was not read." in info.warnings


@pytest.mark.parametrize("age", ["-03Y", "0.5Y", "030 years"])
def test_a_malformed_age_and_no_dates_leave_the_age_unknown_with_both_warnings(age):
    info = _info(PatientAge=age, PatientBirthDate=None)
    assert info.age_years is None
    assert any("is not an age string" in warning for warning in info.warnings)
    reasons, warnings = GATE.findings(info)
    assert reasons == [] and "so it was not checked" in warnings[0]


@pytest.mark.parametrize(("tags", "outside"), [
    # Patient's Age says a child; the birth date says an adult (or a newborn).
    ({"PatientAge": "004Y", "PatientBirthDate": "19700101"}, True),
    ({"PatientAge": "004Y", "PatientBirthDate": "20241101"}, True),
    # Patient's Age says an adult; the birth date says a child: its own reason, as before.
    ({"PatientAge": "045Y"}, True),
    # Both inside the range, disagreeing: ranked.
    ({"PatientAge": "002Y"}, False),
    # Agreeing (the age string is truncated to its unit).
    ({"PatientAge": "004Y"}, False), ({"PatientAge": "056M"}, False)])
def test_a_header_whose_ages_disagree_is_held_to_the_one_outside_the_range(tags, outside):
    # FILM: born 2020-02-29, studied 2024-11-26 (4.74 years)
    assert _codes(**tags) == (["outside_intended_age"] if outside else [])


def test_the_reason_of_a_contradicting_header_names_both_ages():
    info = _info(PatientAge="004Y", PatientBirthDate="19700101")
    assert info.age_years == 4.0 and info.age_other[0] == pytest.approx(
        years_between(date(1970, 1, 1), date(2024, 11, 26)))
    [(code, text)] = GATE.findings(info)[0]
    assert code == "outside_intended_age"
    assert text == ("The patient's age from Patient's Birth Date (0010,0030) and Study Date "
                    "is 54 years (from Patient's Age (0010,1010) 004Y: 4 years): the model "
                    "was validated on ages 1 to under 6 years.")
    assert "1970" not in repr(info) + text


@pytest.mark.parametrize(("tags", "source"), [
    ({"StudyDate": None, "AcquisitionDate": "20221201"}, "Acquisition Date"),
    ({"StudyDate": None, "ContentDate": "20221201"}, "Content Date"),
    ({"StudyDate": "20190101", "AcquisitionDate": "20221201"}, "Acquisition Date"),
])
def test_the_age_from_the_dates_takes_the_first_film_date_after_the_birth(tags, source):
    info = _info(**tags)
    assert info.age_years == pytest.approx(years_between(date(2020, 2, 29), date(2022, 12, 1)))
    assert info.age_from.endswith(source)


@pytest.mark.parametrize("tags", [
    {"PatientBirthDate": None}, {"StudyDate": None}, {"PatientBirthDate": "20200230"},
    {"StudyDate": "20190101-20190201"}, {"StudyDate": "20190101"}])
def test_an_age_that_cannot_be_known_is_none_and_only_a_warning(tags):
    info = _info(**tags)
    assert info.age_years is None and info.age_from is None
    reasons, warnings = GATE.findings(info)
    assert reasons == []
    assert warnings == ["The patient's age is not in the DICOM header (Patient's Age, or "
                        "Patient's Birth Date and Study Date), so it was not checked: the "
                        "model was validated on ages 1 to under 6 years."]


def test_the_birth_date_is_never_kept_only_the_age_in_years():
    info = _info(PatientBirthDate="20190304", StudyDate="20230101")
    assert info.age_years == pytest.approx(years_between(date(2019, 3, 4), date(2023, 1, 1)))
    shown = repr(info) + " ".join(text for _, text in GATE.findings(info)[0])
    assert not any(part in shown for part in ("20190304", "2019-03-04", "2019"))


@pytest.mark.parametrize(("birth", "day", "years"), [
    (date(2019, 3, 4), date(2025, 3, 4), 6.0),  # the 6th birthday
    (date(2019, 3, 4), date(2025, 3, 3), 5.0 + 364 / 365),  # the day before it
    (date(2020, 2, 29), date(2021, 2, 28), 1.0),  # a leap-day birth, in a common year
    (date(2020, 2, 29), date(2024, 2, 29), 4.0)])
def test_years_between_is_exact_on_birthdays(birth, day, years):
    assert years_between(birth, day) == pytest.approx(years)


@pytest.mark.parametrize(("tags", "outside"), [
    ({"PatientAge": "000Y"}, True), ({"PatientAge": "011M"}, True),
    ({"PatientAge": "052W"}, True), ({"PatientAge": "365D"}, True),
    ({"PatientAge": "012M"}, False), ({"PatientAge": "001Y"}, False),
    ({"PatientAge": "005Y"}, False), ({"PatientAge": "071M"}, False),
    ({"PatientAge": "006Y"}, True), ({"PatientAge": "072M"}, True),
    ({"PatientAge": "045Y"}, True),
    ({"PatientBirthDate": "20190304", "StudyDate": "20250303"}, False),  # a day before 6
    ({"PatientBirthDate": "20190304", "StudyDate": "20250304"}, True),  # 6th birthday
    ({"PatientBirthDate": "19800101"}, True)])
def test_ages_from_the_first_birthday_up_to_the_sixth_are_intended(tags, outside):
    assert _codes(**tags) == (["outside_intended_age"] if outside else [])


def test_the_age_reason_says_where_the_age_came_from_and_the_range():
    [(code, text)] = GATE.findings(_info(PatientAge="045Y"))[0]
    assert code == "outside_intended_age"
    assert text == ("The patient's age from Patient's Age (0010,1010) 045Y is 45 years: the "
                    "model was validated on ages 1 to under 6 years.")


def test_a_site_range_widens_the_cards_and_says_so():
    site = IntendedUse(KERMANY, site_age_years=(0.0, 18.0))
    assert _codes(site, PatientAge="010Y") == [] and _codes(GATE, PatientAge="010Y") == [
        "outside_intended_age"]
    assert _codes(site, PatientAge="003M") == []
    [(_, text)] = site.findings(_info(PatientAge="045Y"))[0]
    assert text.endswith("validated on ages 1 to under 6 years, and this site on 0 to under "
                         "18 years.")
    apart = IntendedUse(KERMANY, site_age_years=(12.0, 18.0))  # the card's ages still count
    assert _codes(apart, PatientAge="004Y") == [] and _codes(apart, PatientAge="008Y") == [
        "outside_intended_age"]


# --- body part, SOP class, pixel kind, projection ----------------------------------------------


@pytest.mark.parametrize("body_part", ["CHEST", "Chest", "THORAX", "LUNG", "PORTABLE CHEST",
                                       "CHEST PA", "PED CHEST 1 VIEW", "chest_ap"])
def test_the_chest_alone_is_the_chest(body_part):
    assert is_chest_alone(body_part)
    assert _codes(BodyPartExamined=body_part) == []


@pytest.mark.parametrize("body_part", ["CHESTABDOMEN", "CHEST ABDOMEN", "CHEST/ABDOMEN",
                                       "CHEST AND ABDOMEN", "BABYGRAM", "WHOLEBODY",
                                       "WHOLE BODY", "ABDOMEN", "KNEE", "NECKCHEST", "SKULL"])
def test_any_other_body_part_is_not_chest(body_part):
    assert not is_chest_alone(body_part)
    [(code, text)] = GATE.findings(_info(BodyPartExamined=body_part))[0]
    assert code == "not_chest" and f"Body Part Examined (0018,0015) is {body_part}" in text


def test_no_body_part_is_no_reason():
    assert _codes(BodyPartExamined=None) == []


@pytest.mark.parametrize(("sop_class", "codes"), [
    ("1.2.840.10008.5.1.4.1.1.1", []),  # Computed Radiography
    ("1.2.840.10008.5.1.4.1.1.1.1", []),  # Digital X-Ray - For Presentation
    ("1.2.840.10008.5.1.4.1.1.7", []),  # Secondary Capture: a scanned film, as before
    ("1.2.840.10008.5.1.4.1.1.1.1.1", ["not_for_presentation"]),  # DX For Processing
    (MG, ["not_chest_radiograph"]),
    ("1.2.840.10008.5.1.4.1.1.1.2.1", ["not_chest_radiograph", "not_for_presentation"]),
    ("1.2.840.10008.5.1.4.1.1.1.3", ["not_chest_radiograph"]),  # Intra-Oral
    ("1.2.840.10008.5.1.4.1.1.1.3.1", ["not_chest_radiograph", "not_for_presentation"]),
    ("1.2.840.10008.5.1.4.1.1.13.1.3", ["not_chest_radiograph"]),  # Breast Tomosynthesis
    ("1.2.840.10008.5.1.4.1.1.13.1.4", ["not_chest_radiograph"]),  # Breast Projection
    ("1.2.840.10008.5.1.4.1.1.12.1", ["not_chest_radiograph"]),  # X-Ray Angiographic
    ("1.2.840.10008.5.1.4.1.1.2", ["not_chest_radiograph"]),  # CT, labelled DX
    ("1.2.826.0.1.3680043.9.9999.1", []),  # a private class: nothing to hold to the card
])
def test_sop_classes_other_than_a_chest_radiographs_are_named(sop_class, codes):
    assert _codes(SOPClassUID=sop_class) == codes


def test_a_mammography_class_labelled_dx_is_named_by_its_class():
    [(code, text)] = GATE.findings(_info(SOPClassUID=MG))[0]
    assert code == "not_chest_radiograph"
    assert text.startswith("SOP Class UID (0008,0016) is Digital Mammography X-Ray Image "
                           "Storage - For Presentation: not a chest radiograph (CR, DX)")


@pytest.mark.parametrize(("intent", "codes"), [
    ("FOR PROCESSING", ["not_for_presentation"]), ("for processing", ["not_for_presentation"]),
    ("FOR PRESENTATION", []), (None, [])])
def test_presentation_intent_for_processing_is_not_for_presentation(intent, codes):
    assert _codes(PresentationIntentType=intent) == codes


def test_a_card_that_lists_fewer_projections_holds_the_others_back():
    ap_only = IntendedUse(KERMANY.model_copy(update={"projections": ("AP",)}))
    assert _codes(ap_only, ViewPosition="PA") == ["not_frontal"]
    assert _codes(ap_only, ViewPosition="AP") == []
    assert _codes(ViewPosition="PA") == []


def test_a_film_without_a_dicom_header_states_nothing_to_hold():
    assert GATE.findings(None) == ([], [])


def test_every_code_has_its_sentence_for_the_sr():
    from app.contract.assessability import REASONS

    assert {"outside_intended_age", "not_chest", "not_chest_radiograph",
            "not_for_presentation"} <= REASONS.keys()


def test_a_card_round_trips_its_population(tmp_path):
    card = read_card(CARDS[1])
    card.write(tmp_path)
    assert ModelCard.model_validate_json((tmp_path / CARD_FILE).read_text()
                                         ).intended_population == KERMANY
