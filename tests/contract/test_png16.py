"""16-bit grey PNGs: damaged image data refused (tests/builders/corpus.py has the damaged
files, which tests/web/test_corpus.py also sends through every entry point), and the
half-size reduce of a large one."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.contract import preprocessing
from app.contract.errors import DamagedImageError
from app.contract.preprocessing import decode
from tests.builders.corpus import png16_damaged


@pytest.mark.parametrize("kind", ["short", "adler", "adler-apart", "cut", "extra", "crc"])
def test_damaged_16bit_image_data_is_refused(kind):
    with pytest.raises(DamagedImageError):
        decode(png16_damaged(kind), target=(64, 64))


def test_halving_rounds_each_block_s_mean_half_up():
    pixels = np.array([[0, 1, 65535, 65535], [1, 1, 65534, 65535]], dtype=np.uint16)
    # Blocks (0, 1, 1, 1): mean 0.75 -> 1; (65535, 65535, 65534, 65535): 65534.75 -> 65535.
    assert preprocessing._block_means_16bit(pixels, 2).tolist() == [[1, 65535]]
    three = np.arange(36, dtype=np.uint16).reshape(6, 6)
    expected = np.floor(three.reshape(2, 3, 2, 3).mean(axis=(1, 3)) + 0.5)
    assert np.array_equal(preprocessing._block_means_16bit(three, 3), expected)


def test_a_halved_16bit_film_is_the_mean_of_its_blocks():
    rng = np.random.default_rng(5)
    wide = rng.integers(0, 65536, (1031, 777), dtype=np.uint16)
    reduced = np.asarray(preprocessing._reduce_16bit(Image.fromarray(wide), 2))
    blocks = wide[:1030, :776].astype(np.uint64).reshape(515, 2, 388, 2).sum(axis=(1, 3))
    assert np.array_equal(reduced, (blocks + 2) // 4)
