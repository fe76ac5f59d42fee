"""Preprocessing version 2: films much larger than the model input are decoded (JPEG, DCT
scaling) or reduced (PNG, box filter) at half size first. The promises, for every committed
model: on the full-size originals the probability moves by less than 0.01 against a
full-size decode; the test split (224 px, like every training image) gets exactly the old
input; and on the test split enlarged to clinic size, the reduced decode moves the
probability no more than decoding the same film at another size already does.

Why not 0.01 on every enlarged film: model 5 moves by up to 0.06 between the 224 px film and
the same film enlarged to 1024 px, both decoded in full; a 64x64 input rounded to whole grey
levels flips some pixels by one level under any change of resampling, and that small network
is steep for a few films. Measured (model 5, 624 films at 1024 px, quality 92): reduced vs
full decode max 0.029, 99th percentile 0.011, 8 films over 0.01; full 1024 px vs the 224 px
film max 0.037, 12 films over 0.01.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.contract.preprocessing import decode, to_model_input
from app.services.saved_model import ServedModel, available_models, find_model
from tests.servers import REPO

TOLERANCE = 0.01


@pytest.fixture(scope="module")
def models() -> list[ServedModel]:
    names = available_models(REPO / "models")
    return [ServedModel(find_model(REPO / "models", name)) for name in sorted(names)]


def _inputs(data: bytes, card) -> tuple[np.ndarray, np.ndarray]:
    """(reduced, full) model inputs of one file for one card."""
    size, channels, version = card.input_size, card.channels, card.input.preprocessing_version
    reduced = decode(data, target=size)
    full = decode(data)  # no target: every pixel decoded, as version 1 did
    assert (reduced.width, reduced.height) == (full.width, full.height)
    return (to_model_input(reduced.pixels, size, channels, version),
            to_model_input(full.pixels, size, channels, version))


def _gaps(files: list[bytes], model: ServedModel) -> np.ndarray:
    """|P(reduced decode) - P(full decode)| per file."""
    with ThreadPoolExecutor(4) as pool:
        pairs = list(pool.map(lambda data: _inputs(data, model.card), files))
    reduced = model.predict(np.stack([r for r, _ in pairs]))
    full = model.predict(np.stack([f for _, f in pairs]))
    return np.abs(reduced - full)


def _largest_gap(files: list[bytes], models: list[ServedModel]) -> dict[str, float]:
    return {model.card.name: float(_gaps(files, model).max()) for model in models}


def _encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def test_full_size_originals_score_the_same_decoded_at_reduced_scale(samples_dir, models):
    files = [path.read_bytes() for path in sorted(samples_dir.iterdir())]
    assert len(files) == 3
    for data in files:  # the reduced path is really taken: far fewer pixels
        assert decode(data, target=(64, 64)).pixels.size * 4 <= decode(data).pixels.size
    gaps = _largest_gap(files, models)
    assert all(gap < TOLERANCE for gap in gaps.values()), gaps


@pytest.mark.slow
def test_same_films_as_png_and_16_bit_png_score_the_same_reduced(samples_dir, models):
    files = []
    for path in sorted(samples_dir.iterdir()):
        film = Image.open(path).convert("L")
        files.append(_encode(film, "PNG"))
        wide = (np.asarray(film).astype(np.uint16) * 257)
        files.append(_encode(Image.fromarray(wide), "PNG"))
    gaps = _largest_gap(files, models)
    assert all(gap < TOLERANCE for gap in gaps.values()), gaps


@pytest.mark.slow
def test_test_split_enlarged_to_clinic_size_scores_within_the_resolution_noise(data_dir,
                                                                              models):
    """Every test-split film enlarged to 1024 px (a clinic's file is 1000-2900 px): the
    reduced path on 624 real films moves the probability less than the enlargement itself
    does, and by less than 0.01 for all but a few films."""
    paths = sorted(Path(data_dir, "test").glob("*/*.jpeg"))
    assert len(paths) == 624

    def enlarge(path: Path) -> bytes:
        film = Image.open(path).convert("L").resize((1024, 1024), Image.Resampling.BICUBIC)
        return _encode(film, "JPEG", quality=92)

    with ThreadPoolExecutor(4) as pool:
        files = list(pool.map(enlarge, paths))
    originals = [path.read_bytes() for path in paths]
    for model in models:
        size, channels = model.card.input_size, model.card.channels
        version = model.card.input.preprocessing_version
        gaps = _gaps(files, model)
        enlargement = np.abs(
            model.predict(np.stack([to_model_input(decode(d).pixels, size, channels, version)
                                    for d in files]))
            - model.predict(np.stack([to_model_input(decode(d).pixels, size, channels,
                                                     version) for d in originals])))
        summary = (model.card.name, float(gaps.max()), int(np.sum(gaps > TOLERANCE)),
                   float(enlargement.max()), int(np.sum(enlargement > TOLERANCE)))
        assert np.mean(gaps > TOLERANCE) <= 0.03, summary
        assert gaps.max() <= max(enlargement.max(), TOLERANCE), summary
        assert np.quantile(gaps, 0.99) <= np.quantile(enlargement, 0.99) + 0.005, summary


def test_test_split_itself_is_decoded_exactly_as_before(data_dir):
    """224 px films against a 64 px input: no reduction, the version-1 input bit for bit,
    so models trained under version 1 see what they were trained on."""
    for path in sorted(Path(data_dir, "test").glob("*/*.jpeg"))[::8]:
        data = path.read_bytes()
        np.testing.assert_array_equal(decode(data, target=(64, 64)).pixels,
                                      decode(data).pixels)


@pytest.mark.parametrize("factor", [2, 3])
def test_16_bit_reduce_is_each_whole_blocks_rounded_mean(factor):
    """The strip-wise integer reduce of a 16-bit film equals the plain definition: the mean
    of each whole factor x factor block, rounded half up; a partial last block is dropped."""
    from app.contract.preprocessing import _reduce

    rng = np.random.default_rng(factor)
    film = rng.integers(0, 65536, size=(1037, 523), dtype=np.uint16)  # several strips
    film[:4, :4] = 65535  # the largest sums
    reduced = np.asarray(_reduce(Image.fromarray(film), factor))
    rows, cols = 1037 // factor, 523 // factor
    blocks = film[:rows * factor, :cols * factor].reshape(rows, factor, cols, factor)
    expected = np.floor(blocks.astype(np.float64).mean(axis=(1, 3)) + 0.5).astype(np.uint16)
    assert reduced.dtype == np.uint16 and reduced.shape == (rows, cols)
    np.testing.assert_array_equal(reduced, expected)
