"""A file's identity and its row: the upload door's UIDs, the node's pixel hash and ignored
kinds, /predict's names, and no patient identity."""

from __future__ import annotations

from datetime import UTC, datetime

from app.archive.rows import SCHEMA, Prepared, identify, row
from app.contract.identifiers import pixel_hash, read_header_at
from app.services.film import ImageFacts
from app.services.intake import upload_facts
from app.services.pipeline import Prediction
from tests.builders.dicom import COMPREHENSIVE_SR, file_bytes, study_film, study_object
from tests.builders.images import jpeg_bytes, xray_like


def test_a_dicom_is_keyed_by_its_sop_instance_uid_with_its_pixels_hash():
    data = file_bytes(study_film(xray_like(64, 64)))
    identity = identify(data)
    header, at = read_header_at(data)
    assert identity.key == header.SOPInstanceUID
    assert identity.facts.study_instance_uid == header.StudyInstanceUID
    assert identity.content_hash == pixel_hash(data, at) and identity.ignored is None


def test_a_plain_image_is_keyed_as_an_upload_of_it():
    data = jpeg_bytes()
    assert identify(data).facts == upload_facts(data) and identify(data).content_hash is None


def test_a_report_is_an_instance_the_node_never_lists():
    report = study_object(study_film(xray_like(64, 64)), COMPREHENSIVE_SR, "SR")
    assert identify(file_bytes(report)).ignored == "structured_report"


def test_a_row_names_the_outcome_as_predict_does():
    film = Prepared("a.jpeg", 10, identify(jpeg_bytes()))
    prediction = Prediction(probability=0.9, label=None, flagged=False, threshold=0.2,
                            model_name="m", model_version=2, elapsed_ms=1.0,
                            image=ImageFacts(80, 96, "JPEG", "L", None), reasons=("rotated",))
    values = row(film, prediction, "m", 2, "run", datetime.now(UTC))
    assert values["decision"] == "needs_human_look" and values["probability"] is None
    assert values["unvalidated_probability"] == 0.9 and values["triage_score"] is None
    assert values["reasons"] == ["rotated"] and values["sop_class_uid"] is None


def test_the_schema_has_no_column_for_the_patients_identity():
    names = " ".join(SCHEMA.names)
    for word in ("name", "patient_id", "birth", "patient_key"):
        assert word not in names


def test_a_dicoms_row_carries_its_equipment_for_the_validations_subgroups():
    ds = study_film(xray_like(64, 64))
    ds.Manufacturer, ds.ManufacturerModelName, ds.PixelSpacing = "Acme", "CR-1", [0.143, 0.14]
    values = row(Prepared("a.dcm", 10, identify(file_bytes(ds))), None, "m", 2, "run",
                 datetime.now(UTC))
    assert (values["manufacturer"], values["manufacturer_model"],
            values["pixel_spacing_mm"]) == ("Acme", "CR-1", 0.143)
    del ds.PixelSpacing
    ds.ImagerPixelSpacing = [0.2, 0.2]  # a projection radiograph's detector spacing
    assert identify(file_bytes(ds)).equipment.pixel_spacing_mm == 0.2
    ds.ImagerPixelSpacing = "0\\0"  # malformed: no spacing rather than a wrong one
    assert identify(file_bytes(ds)).equipment.pixel_spacing_mm is None
