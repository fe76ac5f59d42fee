"""The drift monitor (app/services/drift.py): each model's window of recent films against its
validation films, as GET /metrics, GET /operations/drift and the pages' banner show it; a film
counted once per window, however often it is sent.

The real-data test streams films through the app: validation films first (no drift), then
negatives of other validation films, then low-contrast copies, and watches the gauges cross
the threshold and the banner appear."""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from prometheus_client.parser import text_string_to_metric_families

from app.contract.drift import DriftReference
from app.services.drift import DriftMonitor
from training import defaults
from training.data import load_parts

WINDOW = 150  # films per window in the real-data test: 9/150 + 9/522 = 0.077 by chance
BATCH = 50


@dataclass(frozen=True)
class _Card:
    name: str
    version: int


@dataclass(frozen=True)
class _Model:
    card: _Card
    path: Path | None
    guard: None = None


def _model_with_reference(tmp_path: Path, name: str = "m") -> _Model:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (300, 16, 16, 3), dtype=np.uint8)
    DriftReference.of(rng.random(300), images, None).write(tmp_path)
    return _Model(_Card(name, 1), tmp_path)


def test_a_window_is_judged_only_once_it_holds_min_films(tmp_path):
    model = _model_with_reference(tmp_path)
    monitor = DriftMonitor(window=20, min_films=10, threshold=0.2)
    rng = np.random.default_rng(1)
    for _ in range(9):
        monitor.observe(model, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
                        float(rng.random()))
    [state] = monitor.state().models
    assert (state.films, state.psi, state.drifted) == (9, {}, ())
    monitor.observe(model, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), 0.5)
    [state] = monitor.state().models
    assert state.films == 10 and set(state.psi) == {"score", "brightness", "contrast"}


def test_the_window_keeps_the_last_films_and_a_shift_crosses_the_threshold(tmp_path):
    model = _model_with_reference(tmp_path)
    monitor = DriftMonitor(window=200, min_films=200, threshold=0.2)
    rng = np.random.default_rng(2)
    for _ in range(400):
        monitor.observe(model, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
                        float(rng.random()))
    state = monitor.state()
    assert state.models[0].films == 200 and not state.drifted
    for _ in range(200):  # the same inputs, every score near 1
        monitor.observe(model, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), 0.99)
    [drift] = monitor.state().models
    assert drift.drifted == ("score",) and drift.psi["score"] > 0.2


def test_a_model_without_a_reference_is_not_watched_and_said_so_once(tmp_path, caplog):
    monitor = DriftMonitor(window=10, min_films=5, threshold=0.2)
    bare = _Model(_Card("bare", 3), tmp_path)
    with caplog.at_level(logging.WARNING, logger="app.drift"):
        for _ in range(3):
            monitor.observe(bare, np.zeros((8, 8, 3), np.uint8), 0.5)
    assert monitor.state().models == ()
    assert [r.getMessage() for r in caplog.records] == [
        "model bare v3 has no drift reference; drift not watched"]


def test_the_same_film_counts_once_per_window(tmp_path):
    """One film posted 120 times is one film of the window, not 120 (which alone raised the
    alarm): known by its model input's digest, whatever array carries those pixels."""
    model = _model_with_reference(tmp_path)
    monitor = DriftMonitor(window=20, min_films=10, threshold=0.2)
    rng = np.random.default_rng(3)
    film = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    for copy in [film] * 118 + [film.copy(), np.asfortranarray(film)]:
        monitor.observe(model, copy, 0.99)
    [state] = monitor.state().models
    assert (state.films, state.psi, monitor.state().drifted) == (1, {}, False)
    monitor.observe(model, film[:, :, :1].repeat(3, axis=2), 0.99)  # other pixels: counted
    assert monitor.state().models[0].films == 2


def test_a_film_counts_again_once_it_has_left_the_window_and_only_digests_are_kept(tmp_path):
    model = _model_with_reference(tmp_path)
    monitor = DriftMonitor(window=20, min_films=10, threshold=0.2)
    rng = np.random.default_rng(4)
    first = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    monitor.observe(model, first, 0.5)
    for _ in range(500):  # the window moves on past `first`
        monitor.observe(model, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), 0.5)
    window = monitor._windows[("m", 1)]
    assert len(window.seen) == len(window.digests) == 20  # bounded by the window
    assert all(isinstance(d, bytes) and len(d) == 16 for d in window.seen)  # never pixels
    scores_before = list(window.values["score"])
    monitor.observe(model, first, 0.75)
    assert list(window.values["score"]) == scores_before[1:] + [0.75]


def test_one_film_posted_again_and_again_raises_no_alarm(client_factory, monkeypatch):
    """Through the app: the same film sent 12 times (more than min_films) is one film of the
    drift window; the gauge says so and no page shows the banner. The digest that tells
    it is the one the decoder computed: the monitor hashes no film itself."""
    import app.services.drift as drift

    monkeypatch.setattr(drift, "film_digest", lambda *a: pytest.fail("hashed again"))
    data = _png(np.random.default_rng(5).integers(0, 256, (96, 96), dtype=np.uint8))
    with client_factory(drift_window=50, drift_min_films=10, decode_workers=0) as client:
        for _ in range(12):
            response = client.post("/predict", files={"file": ("a.png", data, "image/png")})
            assert response.status_code == 200, response.text
        state = client.get("/operations/drift").json()
        films = {sample.labels["model"]: sample.value for family in
                 text_string_to_metric_families(client.get("/metrics").text)
                 if family.name == "pneumonia_drift_window_films" for sample in family.samples}
        assert films["pneumonia"] == 1 and not state["drifted"]
        assert "Input drift" not in client.get("/").text


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


# --- Through the app, on the dataset ----------------------------------------------------

def _small(path: Path, change=None) -> bytes:
    """A dataset film at most 320 px (JPEG draft mode: fast), optionally changed, as PNG."""
    with Image.open(path) as image:
        image.draft("L", (320, 320))
        film = image.convert("L")
    film.thumbnail((320, 320))
    if change is not None:
        film = change(film)
    buffer = io.BytesIO()
    film.save(buffer, "PNG")
    return buffer.getvalue()


def _distinct(paths: list[Path], count: int) -> list[Path]:
    """The first `count` of `paths` whose files differ: the split holds byte-identical
    films, and each counts once in the drift window."""
    kept: dict[bytes, Path] = {}
    for path in paths:
        kept.setdefault(hashlib.blake2b(path.read_bytes()).digest(), path)
        if len(kept) == count:
            break
    return list(kept.values())


def _low_contrast(film: Image.Image) -> Image.Image:
    pixels = np.asarray(film, dtype=np.float64)
    return Image.fromarray((128 + (pixels - 128) * 0.3).astype(np.uint8))


def _stream(client, films: list[bytes]) -> None:
    for start in range(0, len(films), BATCH):
        part = films[start:start + BATCH]
        response = client.post("/predict/batch", files=[
            ("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(part)])
        assert response.status_code == 200, response.text
        assert response.json()["count"] == len(part)


def _psi_gauges(client) -> dict[str, float]:
    text = client.get("/metrics").text
    return {sample.labels["statistic"]: sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "pneumonia_drift_psi" for sample in family.samples
            if sample.labels["model"] == "pneumonia"}


@pytest.mark.realdata
def test_negative_and_low_contrast_films_cross_the_drift_threshold(data_dir, client_factory):
    validation = list(load_parts(data_dir, defaults.VAL_FRACTION, defaults.SEED)["val"].paths)
    order = np.random.default_rng(7).permutation(len(validation))
    picked = _distinct([validation[i] for i in order], 3 * WINDOW)
    with client_factory(drift_window=WINDOW, drift_min_films=WINDOW) as client:
        _stream(client, [_small(p) for p in picked[:WINDOW]])
        calm = client.get("/operations/drift").json()
        calm_gauges = _psi_gauges(client)
        calm_page = client.get("/").text

        _stream(client, [_small(p, ImageOps.invert) for p in picked[WINDOW:2 * WINDOW]])
        inverted = client.get("/operations/drift").json()
        inverted_gauges = _psi_gauges(client)
        inverted_page = client.get("/").text

        _stream(client, [_small(p, _low_contrast) for p in picked[2 * WINDOW:]])
        flat = client.get("/operations/drift").json()
        flat_gauges = _psi_gauges(client)
    threshold = calm["threshold"]
    [model] = calm["models"]
    assert model["judged"] and model["films"] == WINDOW and not calm["drifted"]
    assert set(calm_gauges) == {"score", "guard_distance", "brightness", "contrast"}
    assert max(calm_gauges.values()) < threshold, calm_gauges
    assert "Input drift" not in calm_page

    assert inverted["drifted"] and inverted_page.count("Input drift") == 1
    assert {"score", "guard_distance", "brightness"} <= set(inverted["models"][0]["drifted"])
    for statistic in ("score", "guard_distance", "brightness"):
        assert inverted_gauges[statistic] > threshold, inverted_gauges

    assert flat["drifted"] and "contrast" in flat["models"][0]["drifted"]
    assert flat_gauges["contrast"] > threshold and flat_gauges["guard_distance"] > threshold


def test_statistics_the_decoder_computed_are_used_as_they_are(tmp_path, monkeypatch):
    """The decode worker sends the film's statistics with it (PreparedFilm.statistics):
    the monitor in the serving process computes none of them again, and they are the
    ones it would have computed."""
    import app.services.drift as drift
    from app.contract.drift import film_statistics
    from app.services.film import input_statistics

    model = _model_with_reference(tmp_path)
    film = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    given = input_statistics(film, None)
    expected = film_statistics(film, None)
    assert dict(given) == pytest.approx(expected)
    monitor = DriftMonitor(window=10, min_films=1, threshold=0.2)
    monkeypatch.setattr(drift, "film_statistics", lambda *a: pytest.fail("computed again"))
    monitor.observe(model, film, 0.4, given)
    assert monitor.state().models[0].films == 1


def test_the_digest_the_decoder_computed_is_used_as_it_is(tmp_path, monkeypatch):
    """The decode worker sends the film's digest with it (PreparedFilm.digest): the
    serving process hashes no film again, and a film sent twice is counted once."""
    import app.services.drift as drift
    from app.contract.drift import film_digest
    from app.services.film import input_statistics

    model = _model_with_reference(tmp_path)
    film = np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    digest = film_digest(film)
    monitor = DriftMonitor(window=10, min_films=1, threshold=0.2)
    monkeypatch.setattr(drift, "film_digest", lambda *a: pytest.fail("hashed again"))
    for _ in range(2):
        monitor.observe(model, film, 0.4, input_statistics(film, None), digest)
    assert monitor.state().models[0].films == 1
