"""The served model's trust features, end to end: operating point, calibration inside the
SavedModel, the heatmap signature, and the input guard."""

import csv
import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageDraw

from app.contract.card import read_card
from app.contract.guard import InputGuard
from app.contract.preprocessing import decode, load_model_input
from app.services.saved_model import ServedModel, find_model
from tests.builders.images import encode
from tests.servers import REPO

SERVED = find_model(REPO / "models", "pneumonia")  # the newest version: what the app serves
CARD = read_card(SERVED)


def _non_chest_images() -> dict[str, bytes]:
    """Ten images that are not chest films: photos shipped with scikit-image, text, noise."""
    import skimage.data

    images = {name: getattr(skimage.data, name)() for name in
              ("chelsea", "coffee", "astronaut", "camera", "text", "page", "coins", "moon")}
    rng = np.random.default_rng(0)
    images["noise"] = rng.integers(0, 256, (400, 400), dtype=np.uint8)
    letter = Image.new("L", (420, 400), 255)
    draw = ImageDraw.Draw(letter)
    for row in range(18):
        draw.text((20, 10 + 21 * row), "Discharge summary: patient stable, follow up.", fill=0)
    images["letter"] = np.asarray(letter)
    return {name: encode(Image.fromarray(a), "PNG") for name, a in images.items()}


def test_card_holds_an_operating_point_chosen_on_validation():
    op = CARD.operating_point
    assert op is not None and op.chosen_on == "validation"
    assert op.validation.sensitivity >= op.target_sensitivity
    assert op.validation.sensitivity_ci[0] <= op.validation.sensitivity <= \
        op.validation.sensitivity_ci[1]
    assert op.test is not None and CARD.threshold == op.threshold
    assert CARD.calibration is not None and CARD.calibration.inside_model


@pytest.mark.realdata
def test_saved_model_output_alone_is_the_calibrated_probability(data_dir):
    """TensorFlow alone (as TensorFlow Serving) gives what the training run measured."""
    serving = tf.saved_model.load(str(SERVED)).signatures[CARD.signature.name]
    with (SERVED / "test_predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))[::40]
    batch = np.stack([load_model_input((data_dir / r["file"]).read_bytes(), CARD.input_size,
                                       CARD.channels,
                                       version=CARD.input.preprocessing_version)
                      for r in rows]).astype(np.float32)
    served = serving(**{CARD.signature.input: tf.constant(batch)})[CARD.signature.output]
    expected = np.asarray([float(r["probability"]) for r in rows])
    assert np.max(np.abs(served.numpy() - expected)) < 1e-5
    raw = np.asarray([float(r["raw_probability"]) for r in rows])
    assert np.max(np.abs(raw - expected)) > 1e-3  # calibration really changes the output


def test_report_shows_calibration_and_the_operating_point_on_test(client):
    report = json.loads((REPO / "models" / "report.json").read_text())
    trust = report["trust"]
    assert trust["operating_point"]["test"]["sensitivity_ci"]
    page = client.get("/report").text
    assert 'id="operating-point"' in page and 'id="calibration"' in page
    assert "figures/reliability.png" in page
    assert client.get("/report/figures/reliability.png").status_code == 200


def _column_centre(heat: np.ndarray) -> float:
    """The heat's horizontal centre of mass, in pixels."""
    return float((heat.sum(axis=0) * np.arange(heat.shape[1])).sum() / heat.sum())


@pytest.mark.realdata
@pytest.mark.parametrize("explainer", ["served", "signature"])
def test_heatmap_differs_between_films_and_follows_a_mirror(data_dir, explainer):
    """The app's map (coarse to fine, app/services/occlusion.py) and the SavedModel's own."""
    # Version 2 (model 5 as the full run exported it) was trained with mirrored films (the
    # study's horizontal_flip), so its map must follow a mirrored film; version 3 never saw
    # one (a chest film has a side), and a map of an impossible film promises nothing.
    mirrored_model = find_model(REPO / "models", "pneumonia", 2)
    card = read_card(mirrored_model)
    if explainer == "served":
        served = ServedModel(mirrored_model)

        def heat(images: list[np.ndarray]) -> np.ndarray:
            return served.explain(np.stack(images))[1]
    else:
        explain = tf.saved_model.load(str(mirrored_model)).signatures[card.signature.explain]

        def heat(images: list[np.ndarray]) -> np.ndarray:
            batch = tf.constant(np.stack(images).astype(np.float32))
            return explain(**{card.signature.input: batch})[card.signature.heatmap].numpy()

    def film(name: str) -> np.ndarray:
        return load_model_input((data_dir / "test" / name).read_bytes(), card.input_size,
                                card.channels, version=card.input.preprocessing_version)

    normal = film("NORMAL/IM-0001-0001.jpeg")
    sick = [film(f"PNEUMONIA/{p.name}") for p in
            sorted((data_dir / "test" / "PNEUMONIA").glob("*.jpeg"))[:12]]
    maps = heat([normal, *sick])
    assert maps.shape == (13, *card.input_size)
    assert np.mean(np.abs(maps[0] - maps[1])) > 0.05  # a normal and a pneumonia film differ
    # The film whose map leans furthest to one side: mirrored, its map must lean the other
    # way and its peak must move.
    middle = (card.input_size[1] - 1) / 2
    lean = [abs(_column_centre(m) - middle) for m in maps[1:]]
    chosen = int(np.argmax(lean))
    original, mirrored = maps[1 + chosen], heat([sick[chosen][:, ::-1]])[0]
    assert (_column_centre(original) - middle) * (_column_centre(mirrored) - middle) < 0
    assert np.argmax(original) != np.argmax(mirrored)


@pytest.mark.realdata
def test_the_served_model_s_heatmaps_differ_between_films(data_dir):
    """The default model's own maps (version 3 and later: no mirrored films in training)."""
    served = ServedModel(SERVED)
    films = [load_model_input(path.read_bytes(), CARD.input_size, CARD.channels,
                              version=CARD.input.preprocessing_version)
             for path in (data_dir / "test/NORMAL/IM-0001-0001.jpeg",
                          *sorted((data_dir / "test" / "PNEUMONIA").glob("*.jpeg"))[:3])]
    maps = served.explain(np.stack(films))[1]
    assert maps.shape == (4, *CARD.input_size)
    assert min(np.mean(np.abs(maps[0] - m)) for m in maps[1:]) > 0.05


@pytest.mark.realdata
def test_predict_with_explain_returns_a_film_and_overlay(client, samples_dir):
    data = (samples_dir / "person1945_bacteria_4872.jpeg").read_bytes()
    body = client.post("/predict?explain=true", files={"file": ("x.png", data)}).json()
    heatmap = body["heatmap"]
    assert heatmap["film"].startswith("data:image/png;base64,")
    overlay = Image.open(io.BytesIO(__import__("base64").b64decode(
        heatmap["overlay"].split(",", 1)[1])))
    assert overlay.size == (heatmap["width"], heatmap["height"])
    opacity = np.asarray(overlay.convert("RGBA"))[..., 3]  # a palette PNG with transparency
    assert opacity.min() == 0 and opacity.max() > 0  # clear where cool, opaque where hot
    assert "64x64" in heatmap["note"]
    assert client.post("/predict", files={"file": ("x.png", data)}).json()["heatmap"] is None


def test_guard_flags_nine_of_ten_non_chest_images(client):
    flagged = {}
    for name, data in _non_chest_images().items():
        body = client.post("/predict", files={"file": (name + ".png", data)}).json()
        flagged[name] = bool(body["warnings"])
        assert body["assessable"] is False and body["label"] is None  # needs a human look
    assert sum(flagged.values()) >= 9, flagged


@pytest.mark.realdata
def test_guard_false_alarms_on_the_validation_split_stay_under_5_percent(data_dir):
    from training import defaults
    from training.data import list_split, split_train_validation

    guard = InputGuard.read(SERVED)
    _, val = split_train_validation(list_split(data_dir, "train"), defaults.VAL_FRACTION,
                                    defaults.SEED)
    alarms = 0
    for path in val.paths:
        decoded = decode(path.read_bytes())
        from app.contract.preprocessing import to_model_input

        x = to_model_input(decoded.pixels, CARD.input_size, CARD.channels,
                           CARD.input.preprocessing_version)
        alarms += bool(guard.warnings(x, decoded.pixels, decoded.width, decoded.height))
    rate = alarms / len(val.paths)
    assert rate <= 0.05
    assert rate == pytest.approx(CARD.input_guard.validation_false_alarm_rate, abs=0.02)
