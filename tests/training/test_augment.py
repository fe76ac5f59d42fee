import numpy as np

from training.augment import random_affine, random_xray


def _images(n=6):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 64, 64, 3)).astype(np.uint8)


def test_random_affine_without_transforms_is_identity():
    images = _images()
    out = random_affine(images, np.random.default_rng(1), shear_degrees=0, zoom=0,
                        horizontal_flip=False)
    np.testing.assert_allclose(out, images.astype(np.float32), atol=1e-3)


def test_random_affine_flip_only_mirrors_some_images():
    images = _images(40)
    out = random_affine(images, np.random.default_rng(1), shear_degrees=0, zoom=0)
    mirrored = [np.allclose(o, i[:, ::-1], atol=1e-3) for o, i in zip(out, images)]
    kept = [np.allclose(o, i, atol=1e-3) for o, i in zip(out, images)]
    assert all(m or k for m, k in zip(mirrored, kept))
    assert 5 < sum(mirrored) < 35


def test_random_affine_zoom_changes_pixels_but_keeps_range_and_shape():
    images = _images()
    out = random_affine(images, np.random.default_rng(2))
    assert out.shape == images.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, images)


def test_random_affine_is_reproducible_with_a_seed():
    images = _images()
    a = random_affine(images, np.random.default_rng(5))
    b = random_affine(images, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


def test_xray_augmentation_keeps_shape_and_range_and_never_mirrors():
    rng = np.random.default_rng(0)
    films = rng.integers(0, 256, (5, 32, 32, 1)).astype(np.uint8)
    out = random_xray(films, rng)
    assert out.shape == films.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, films)
    same = random_xray(films, rng, rotation_degrees=0, zoom=0, shift=0, intensity=0)
    np.testing.assert_allclose(same, films, atol=1e-3)  # no hidden flip or transform
    # A left-bright film stays left-bright under the largest rotation and shift drawn.
    half = np.zeros((50, 32, 32, 1), np.uint8)
    half[:, :, :16] = 200
    moved = random_xray(half, rng)
    assert np.all(moved[:, :, :8].mean(axis=(1, 2, 3)) > moved[:, :, -8:].mean(axis=(1, 2, 3)))
