"""The intended-use gate at the DICOM node's C-STORE door: a film whose header is outside the
card's population (an adult, a babygram, a mammography class labelled DX, raw 'for
processing' pixels) is taken (Success, never refused), listed as needing a human look with
its reason, and its SR and secondary capture never say flagged. The same film within the
population, the control, is flagged: 'never flagged' then means the gate did it."""

from __future__ import annotations

import io

import highdicom as hd
import numpy as np
import pytest
from PIL import Image

from app.contract.assessability import REASONS
from app.dicom.results import (
    FLAGGED,
    NEEDS_REVIEW,
    PROBABILITY,
    SHORT_CODES,
    TRIAGE_SCORE,
    ResultBuilder,
)
from tests.builders.dicom import file_bytes, study_film
from tests.builders.images import xray_like
from tests.dicom.nodes import NODE_AE, built, running_node, scoring_ingest, store
from tests.servers import free_port

MG = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image Storage - For Pres.
MG_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
DX = "1.2.840.10008.5.1.4.1.1.1.1"
DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
# (name, reason codes, SOP class, header edits of a film of a 4-year-old's chest)
CASES = [
    ("adult-by-age", {"outside_intended_age"}, DX, {"PatientAge": "045Y"}),
    ("adult-by-dates", {"outside_intended_age"}, DX,
     {"PatientAge": None, "PatientBirthDate": "19800101"}),
    ("babygram", {"not_chest"}, DX, {"BodyPartExamined": "CHESTABDOMEN"}),
    ("mammography-class-labelled-dx", {"not_chest_radiograph"}, MG, {}),
    ("mammography-for-processing", {"not_chest_radiograph", "not_for_presentation"},
     MG_FOR_PROCESSING, {}),
    ("dx-for-processing", {"not_for_presentation"}, DX_FOR_PROCESSING, {}),
    ("presentation-intent-for-processing", {"not_for_presentation"}, DX,
     {"PresentationIntentType": "FOR PROCESSING"}),
]
IDS = [name for name, *_ in CASES]


def film(pixels: np.ndarray, sop_class: str = DX, **tags):
    """A DX film as a PACS sends it, in a study of its own, with `tags` set (None: removed)."""
    ds = study_film(pixels, sop_class=sop_class, modality="DX")
    for keyword, value in tags.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def _sr_and_sc(result):
    sr, sc = built(result)
    back = hd.sr.srread(io.BytesIO(file_bytes(sr)))
    [group] = back.content.get_image_measurement_groups()
    evaluations: dict[str, list] = {}
    for evaluation in group.get_qualitative_evaluations():
        evaluations.setdefault(evaluation.name.meaning, []).append(evaluation.value)
    return group, evaluations, sc


@pytest.mark.parametrize(("name", "codes", "sop_class", "tags"), CASES, ids=IDS)
def test_c_store_takes_it_lists_it_for_a_look_and_its_results_never_say_flagged(
        name, codes, sop_class, tags):
    ingest, recorder = scoring_ingest(0.9, results=ResultBuilder())  # 0.9: flagged if judged
    control, case = film(xray_like(160, 128)), film(xray_like(160, 128), sop_class, **tags)
    with running_node(ingest) as node:
        statuses = store(node.port, [control, case])
    assert [s.Status for s in statuses] == [0x0000, 0x0000]  # taken, never refused
    judged, looked = (next(r for r in recorder.committed if r.facts.sop_instance_uid ==
                           ds.SOPInstanceUID) for ds in (control, case))
    assert judged.prediction.flagged and judged.prediction.assessable
    prediction = looked.prediction
    assert prediction is not None and looked.error is None and looked.ignored is None
    assert codes <= set(prediction.reasons) and not prediction.flagged
    assert prediction.label is None and prediction.triage_score is None
    _, evaluations, sc = _sr_and_sc(judged)
    assert [v.meaning for v in evaluations["Triage outcome"]] == [FLAGGED]
    group, evaluations, sc = _sr_and_sc(looked)
    assert [v.meaning for v in evaluations["Triage outcome"]] == [NEEDS_REVIEW]
    assert {v.value for v in evaluations["Reason not assessed"]} >= {
        SHORT_CODES.get(code, code.upper()) for code in codes}
    meanings = {v.meaning for v in evaluations["Reason not assessed"]}
    assert all(REASONS[code].split(" (")[0].rstrip(".")[:64] in meanings for code in codes)
    assert group.get_measurements(name=PROBABILITY) == []
    assert group.get_measurements(name=TRIAGE_SCORE) == []
    assert sc.DerivationDescription.startswith(NEEDS_REVIEW)


@pytest.mark.realdata
def test_the_app_node_lists_them_needing_a_look_on_the_worklist(client_factory, data_dir,
                                                               tmp_path):
    """The app's own node, model and worklist store: a real pneumonia film the model flags,
    and the same pixels under each case, each a study of its own."""
    image = Image.open(sorted((data_dir / "test" / "PNEUMONIA").glob("*.jpeg"))[0]).convert("L")
    image.thumbnail((256, 256))
    pixels = np.asarray(image)
    films = [film(pixels)] + [film(pixels, sop_class, **tags)
                              for _, _, sop_class, tags in CASES]
    port = free_port()
    with client_factory(dicom_port=port, dicom_ae_title=NODE_AE,
                        state_dir=tmp_path / "state") as client:
        statuses = store(port, films)
        entries = {e.study_instance_uid: e for e in client.app.state.store.entries(
            limit=100).entries}
    assert [s.Status for s in statuses] == [0x0000] * len(films)
    control = entries[films[0].StudyInstanceUID]
    assert control.group == "flagged", "the control must be flagged for the test to mean it"
    for (name, codes, _, _), ds in zip(CASES, films[1:], strict=True):
        entry = entries[ds.StudyInstanceUID]
        [listed] = entry.films
        assert entry.group == "needs_review" and not entry.flagged, name
        assert codes <= set(listed.reasons) and not listed.flagged, (name, listed.reasons)
