"""What a decode worker runs (app/services/film.py): assessability from the DICOM tags, the
film's contrast, the input guard and the detector, each with its sentence."""

import numpy as np
import pytest

from app.contract.assessability import REASONS, OrientationDetector
from app.contract.guard import InputGuard
from app.services.film import FilmJob, prepare_film
from tests.builders import films as fb
from tests.builders.dicom import dicom_bytes
from tests.servers import REPO

pytestmark = pytest.mark.realdata

MODEL = REPO / "models" / "pneumonia" / "2"


def _prepare(data: bytes):
    return prepare_film(FilmJob(data, (64, 64), 3, InputGuard.read(MODEL), 50_000_000,
                                detector=OrientationDetector.read(MODEL)))


@pytest.fixture(scope="module")
def gray(data_dir) -> np.ndarray:
    return fb.gray_of(data_dir / "test/NORMAL/IM-0001-0001.jpeg")


def test_an_upright_chest_film_is_assessable(gray):
    film = _prepare(fb.jpeg_of(gray))
    assert film.assessable and film.reasons == () and film.guard_warnings == ()


@pytest.mark.parametrize(("build", "reason"), [
    (lambda g: fb.jpeg_of(255 - g), "inverted"),
    (lambda g: fb.jpeg_of(np.ascontiguousarray(np.rot90(g, 3))), "rotated"),
    (lambda g: dicom_bytes(g, view="RLD"), "not_frontal"),
    (lambda g: fb.edited(dicom_bytes(g), BodyPartExamined="KNEE"), "not_chest"),
    (lambda g: fb.jpeg_of(np.full_like(g, 90)), "no_contrast"),
], ids=["inverted", "rotated", "decubitus", "knee", "blank"])
def test_a_film_the_model_cannot_judge_says_why(gray, build, reason):
    film = _prepare(build(gray))
    assert not film.assessable and reason in film.reasons
    words = film.guard_warnings + film.facts.warnings
    assert any(REASONS[reason] in w or reason.replace("_", " ") in w.lower() or
               "(0018," in w for w in words), words


def test_a_narrow_strip_is_unlike_the_training_films(gray):
    film = _prepare(fb.jpeg_of(np.ascontiguousarray(gray[:, 90:140])))
    assert "unlike_training" in film.reasons
