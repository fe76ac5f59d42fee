"""The real-film augmentations of training/augment.py: text, markers, tubes, borders, geometry,
tone, JPEG, and the on-the-fly RealFilmAugmentation that draws them."""

import numpy as np
import pytest

from tests.builders.images import xray_like
from training import augment
from training.augment import (
    APPLICATION_ORDER,
    DEFAULT_PROBABILITIES,
    DESCRIPTIONS,
    FAMILIES,
    STRENGTHS,
    RealFilmAugmentation,
    add_border,
    adjust_tone,
    central_line_path,
    draw_arrow,
    draw_marker,
    draw_text,
    draw_tube,
    endotracheal_tube_path,
    nasogastric_tube_path,
    recompress_jpeg,
    rotate_zoom,
    text_extent,
)

LUNG, MEDIASTINUM = 40, 180


def _chest(height: int = 224, width: int = 224) -> np.ndarray:
    """(H, W) uint8: dark lungs, a bright mediastinum band over the central 20 % of the width."""
    film = np.full((height, width), LUNG, np.uint8)
    film[:, round(0.4 * width):round(0.6 * width)] = MEDIASTINUM
    return film


def _bright_rows(film: np.ndarray, rows: slice, level: int) -> np.ndarray:
    """Which rows of `rows` have a pixel >= level inside the central band (columns 40-60 %)."""
    width = film.shape[1]
    return (film[rows, round(0.4 * width):round(0.6 * width)] >= level).any(axis=1)


def _line_angle(film: np.ndarray) -> float:
    """Angle in degrees (counter-clockwise as displayed) of the bright (> 220) pixels' line."""
    rows, cols = np.nonzero(film > 220)
    return float(np.degrees(np.arctan(-np.polyfit(cols, rows, 1)[0])))


def _with_line(height: int = 224, width: int = 224) -> np.ndarray:
    film = np.full((height, width), LUNG, np.uint8)
    film[height // 2 - 1:height // 2 + 2, width // 5:width - width // 5] = 255
    return film


# --- every family ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_at_strength_zero_returns_the_same_pixels_in_a_new_array(name):
    film = _chest()
    out = FAMILIES[name](film, np.random.default_rng(0), 0.0)
    np.testing.assert_array_equal(out, film)
    assert not np.shares_memory(out, film)


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("shape", [(224, 224), (300, 200)])
def test_family_is_deterministic_for_a_seed_keeps_uint8_2d_and_leaves_its_input(name, shape):
    film = xray_like(*shape)
    before = film.copy()
    first = FAMILIES[name](film, np.random.default_rng(7), 0.8)
    second = FAMILIES[name](film, np.random.default_rng(7), 0.8)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(film, before)
    assert first.dtype == np.uint8 and first.ndim == 2
    assert not np.array_equal(first, film)
    if name != "borders":  # only borders may pad
        assert first.shape == film.shape


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_never_writes_to_its_input(name):
    film = _chest()
    film.flags.writeable = False  # any write into it raises
    for seed in range(8):
        FAMILIES[name](film, np.random.default_rng(seed), 1.0)


def test_every_family_works_on_a_large_non_square_film():
    film = xray_like(2000, 1600)
    for name, family in FAMILIES.items():
        out = family(film, np.random.default_rng(1), 1.0)
        assert out.dtype == np.uint8 and out.ndim == 2, name
        assert not np.array_equal(out, film), name


def test_strengths_name_every_family_low_to_high_with_a_thin_middle_border():
    assert set(STRENGTHS) == set(FAMILIES)
    for low, middle, high in STRENGTHS.values():
        assert 0 < low < middle < high <= 1


# --- text -----------------------------------------------------------------------------------

def _box(shape, top, left, rows, cols) -> np.ndarray:
    inside = np.zeros(shape, bool)
    inside[max(0, top):top + rows, max(0, left):left + cols] = True
    return inside


@pytest.mark.parametrize("box_value", [None, 0])
@pytest.mark.parametrize("position", [(30, 20), (150, 90), "top_left", "bottom_right"])
def test_draw_text_changes_pixels_inside_the_asked_block_only(position, box_value):
    film, text, height = _chest(), "AP SUPINE\n12/03/2019", 12
    rows, cols = text_extent(text, height)
    inset = round(0.02 * 224)  # corners: 2 % of the shorter side in
    top, left = {"top_left": (inset, inset),
                 "bottom_right": (224 - inset - rows, 224 - inset - cols)}.get(position, position)
    out = draw_text(film, text, position, height, value=255, box_value=box_value)
    changed = out != film
    inside = _box(film.shape, top, left, rows, cols)
    assert not changed[~inside].any()
    assert changed[inside].sum() > 50
    assert out[inside].max() == 255
    if box_value is not None:
        assert (out[inside] == 0).mean() > 0.5


def test_draw_text_block_grows_with_the_height():
    short, tall = text_extent("PORTABLE", 8), text_extent("PORTABLE", 24)
    assert tall[0] > 2 * short[0] and tall[1] > 2 * short[1]


def test_draw_text_rejects_an_unknown_corner():
    with pytest.raises(ValueError, match="corner"):
        draw_text(_chest(), "PA", "middle", 10)


def test_burned_in_text_draws_more_and_taller_lines_with_the_strength(monkeypatch):
    blocks = []  # (strength, font size in px) per block drawn
    draw_block = augment._text_on

    def record(draw, shape, text, layout, *rest):
        blocks.append((strength, layout[0].size))
        draw_block(draw, shape, text, layout, *rest)

    monkeypatch.setattr(augment, "_text_on", record)
    film = _chest()
    for strength in (0.1, 1.0):
        for seed in range(20):
            out = augment.burned_in_text(film, np.random.default_rng(seed), strength)
            assert (out != film).any()
    weak = [size for s, size in blocks if s == 0.1]
    strong = [size for s, size in blocks if s == 1.0]
    assert len(strong) > 1.5 * len(weak)
    assert max(weak) <= 0.03 * 224 + 1 < max(strong) <= 0.06 * 224 + 1


# --- markers and arrows ---------------------------------------------------------------------

@pytest.mark.parametrize("box", ["none", "outline", "filled"])
def test_draw_marker_draws_the_letter_inside_its_square(box):
    film = _chest()
    out = draw_marker(film, "R", (40, 30), 20, value=255, box=box)
    changed = out != film
    inside = _box(film.shape, 29, 19, 23, 23)  # the 20 px square about (40, 30), +-1 px
    assert changed[inside].sum() > 20 and not changed[~inside].any()
    assert out[inside].max() == 255
    if box == "filled":  # a bright plate with a dark letter
        assert (out[inside] == 255).sum() > 150 and (out[inside] == 0).any()


def test_draw_arrow_draws_a_shaft_and_a_wider_head_at_the_tip():
    film = _chest()
    out = draw_arrow(film, (100, 10), (100, 70), 2, value=255)
    drawn = out == 255
    assert drawn[:, 10:70].any(axis=0).all()  # the shaft runs the whole length
    assert not drawn[:, 72:].any() and not drawn[:, :9].any()
    assert drawn[:, 60:68].sum(axis=0).max() >= 3 * drawn[:, 15:30].sum(axis=0).max()


def test_side_markers_draw_near_the_edges_and_never_in_the_centre():
    film = _chest()
    for seed in range(20):
        out = augment.side_markers(film, np.random.default_rng(seed), 1.0)
        changed = out != film
        assert changed.sum() > 20
        assert not changed[90:134, 90:134].any()


# --- tubes and lines ------------------------------------------------------------------------

def test_nasogastric_tube_runs_down_the_mediastinum_past_the_diaphragm():
    film = _chest()
    for seed in range(5):
        path = nasogastric_tube_path(film.shape, np.random.default_rng(seed))
        out = draw_tube(film, path, 3, value=255)
        assert _bright_rows(out, slice(0, 33), 250).all()  # the neck (rows 0-15 %)
        assert _bright_rows(out, slice(90, 134), 250).all()  # the middle (rows 40-60 %)
        assert (out[180:200] == 255).any()  # below the diaphragm (row ~70 %)


def test_endotracheal_tube_runs_down_the_neck_and_stops_above_the_carina():
    film = _chest()
    for seed in range(5):
        out = draw_tube(film, endotracheal_tube_path(film.shape, np.random.default_rng(seed)),
                        3, value=255)
        assert _bright_rows(out, slice(0, 40), 250).all()
        assert not (out[75:] == 255).any()  # rows below ~33 %


def test_central_line_runs_from_a_shoulder_to_the_mediastinum():
    for seed in range(10):
        path = central_line_path((224, 224), np.random.default_rng(seed)) / 224
        start, tip = path[0], path[-1]
        assert start[0] < 0.2 and (start[1] < 0.25 or start[1] > 0.75)
        assert 0.3 <= tip[0] <= 0.4 and 0.4 <= tip[1] <= 0.6


def test_draw_tube_brightens_and_stays_visible_over_the_mediastinum():
    film = _chest()
    out = draw_tube(film, [(0, 112), (224, 112)], 3, value=150)
    assert (out >= film).all()
    assert out[:, 112].min() > MEDIASTINUM  # a grey-150 tube still shows over grey 180


def test_draw_tube_rejects_a_single_point():
    with pytest.raises(ValueError, match="K >= 2"):
        draw_tube(_chest(), [(0, 0)], 2)


def test_tubes_and_lines_at_full_strength_cross_the_neck_and_the_mediastinum():
    film = _chest()
    for seed in range(5):
        out = augment.tubes_and_lines(film, np.random.default_rng(seed), 1.0)
        assert (out >= film).all()
        assert _bright_rows(out, slice(0, 33), MEDIASTINUM + 10).mean() > 0.8
        assert _bright_rows(out, slice(90, 134), MEDIASTINUM + 10).mean() > 0.8


# --- borders --------------------------------------------------------------------------------

@pytest.mark.parametrize("pad", [False, True])
@pytest.mark.parametrize("value", [0, 255])
@pytest.mark.parametrize("sides", [("top",), ("left", "right"), ("top", "bottom", "left",
                                                                   "right")])
def test_add_border_has_the_asked_width_value_and_sides(sides, value, pad):
    film, width = _chest(200, 160), 7
    out = add_border(film, sides, width, value, pad=pad)
    grow = {s: width if pad and s in sides else 0 for s in ("top", "bottom", "left", "right")}
    assert out.shape == (200 + grow["top"] + grow["bottom"], 160 + grow["left"] + grow["right"])
    strips = {"top": out[:width], "bottom": out[-width:], "left": out[:, :width],
              "right": out[:, -width:]}
    next_in = {"top": out[width], "bottom": out[-width - 1], "left": out[:, width],
               "right": out[:, -width - 1]}
    for side in ("top", "bottom", "left", "right"):
        if side in sides:
            assert (strips[side] == value).all(), side
            assert (next_in[side] != value).any(), side  # exactly `width`, not one more
        else:
            assert (strips[side] != value).any(), side
    inner = out[grow["top"]:grow["top"] + 200, grow["left"]:grow["left"] + 160]
    keep = slice(width, -width)
    np.testing.assert_array_equal(inner[keep, keep], film[keep, keep])


def _band_depths(out: np.ndarray) -> list[int]:
    """Depth of the uniform band on each side, counting lines of one value not in the chest."""
    depths = []
    for lines in (out, out[::-1], out.T, out.T[::-1]):
        depth = 0
        for line in lines:
            if line.min() != line.max() or line[0] in (LUNG, MEDIASTINUM):
                break
            depth += 1
        depths.append(depth)
    return depths


def test_borders_middle_strength_is_thin_and_full_strength_about_a_tenth():
    film = _chest()
    _, middle, high = STRENGTHS["borders"]
    thin = [_band_depths(augment.borders(film, np.random.default_rng(s), middle))
            for s in range(30)]
    wide = [_band_depths(augment.borders(film, np.random.default_rng(s), high))
            for s in range(30)]
    assert max(max(d) for d in thin) <= 0.04 * 224 + 1
    assert np.median([max(d) for d in thin]) >= 0.02 * 224
    assert max(max(d) for d in wide) <= 0.12 * 224 + 1
    assert np.median([max(d) for d in wide]) >= 0.08 * 224


def test_borders_both_pad_and_replace_the_edge():
    film = _chest()
    shapes = {augment.borders(film, np.random.default_rng(s), 1.0).shape for s in range(30)}
    assert film.shape in shapes and len(shapes) > 1


def test_add_border_rejects_an_unknown_side():
    with pytest.raises(ValueError, match="sides"):
        add_border(_chest(), ["middle"], 3, 0, pad=False)


# --- geometry -------------------------------------------------------------------------------

def test_rotate_zoom_turns_a_line_by_the_asked_angle():
    film = _with_line()
    for angle in (-8.0, 5.0):
        out = rotate_zoom(film, angle, 1.0)
        assert out.shape == film.shape
        assert abs(_line_angle(out) - angle) < 0.7


@pytest.mark.parametrize("fill", ["edge", "black"])
def test_rotate_zoom_fills_by_edge_repeat_or_black(fill):
    out = rotate_zoom(_chest(), 10.0, 0.85, fill=fill)
    if fill == "black":
        assert out[0, 0] == 0 and out[-1, -1] == 0
    else:
        assert out.min() >= LUNG


def test_rotate_zoom_zooms_in_about_the_centre():
    film = _chest()
    out = rotate_zoom(film, 0.0, 1.25)
    band = (out[112] >= MEDIASTINUM - 1).sum()
    assert abs(band - 1.25 * (film[112] == MEDIASTINUM).sum()) <= 2


def test_geometry_rotates_between_5_and_10_degrees_at_full_strength():
    film = _with_line()
    angles = [_line_angle(augment.geometry(film, np.random.default_rng(s), 1.0))
              for s in range(10)]
    assert all(4.5 < abs(a) < 10.5 for a in angles)
    assert min(angles) < 0 < max(angles)


# --- tone and JPEG --------------------------------------------------------------------------

def test_adjust_tone_gamma_moves_the_histogram_the_expected_way():
    ramp = np.tile(np.arange(256, dtype=np.uint8), (8, 1))
    darker, brighter = adjust_tone(ramp, 1.6), adjust_tone(ramp, 0.6)
    assert darker.mean() < ramp.mean() - 15 and brighter.mean() > ramp.mean() + 15
    assert darker[0, 0] == brighter[0, 0] == 0 and darker[0, -1] == brighter[0, -1] == 255
    assert (np.diff(darker[0].astype(int)) >= 0).all()


def test_adjust_tone_contrast_spreads_and_brightness_shifts():
    film = xray_like(64, 64)
    assert adjust_tone(film, 1.0, contrast=1.3).std() > 1.2 * film.std()
    shifted = adjust_tone(film, 1.0, brightness=20).astype(float)
    unclipped = film < 230
    np.testing.assert_allclose(shifted[unclipped] - film[unclipped], 20)


def test_contrast_keeps_the_order_of_grey_levels_and_moves_them():
    ramp = np.tile(np.arange(256, dtype=np.uint8), (8, 1))
    for seed in range(10):
        out = augment.contrast(ramp, np.random.default_rng(seed), 1.0)
        assert (np.diff(out[0].astype(int)) >= 0).all()
        assert np.abs(out.astype(int) - ramp).mean() > 5


def test_jpeg_changes_pixels_a_little_and_more_at_full_strength():
    film = xray_like(224, 224)
    diff = {s: np.abs(augment.jpeg(film, np.random.default_rng(0), s).astype(float)
                      - film).mean() for s in (0.1, 1.0)}
    assert 0 < diff[0.1] < diff[1.0] < 12


def test_recompress_jpeg_rejects_quality_out_of_range():
    with pytest.raises(ValueError, match="quality"):
        recompress_jpeg(_chest(), 0)


def test_families_reject_a_colour_film_and_a_strength_out_of_range():
    with pytest.raises(ValueError, match="uint8"):
        augment.jpeg(np.zeros((8, 8, 3), np.uint8), np.random.default_rng(0), 0.5)
    with pytest.raises(ValueError, match="strength"):
        augment.borders(_chest(), np.random.default_rng(0), 1.5)


# --- RealFilmAugmentation -------------------------------------------------------------------

@pytest.mark.parametrize("probabilities", [{"text": 1.5}, {"jpeg": -0.1}, {"text": float("nan")},
                                           {"stickers": 0.5}])
def test_real_film_augmentation_rejects_bad_probabilities(probabilities):
    with pytest.raises(ValueError):
        RealFilmAugmentation(probabilities)


def test_real_film_augmentation_rejects_a_max_strength_above_one():
    with pytest.raises(ValueError, match="max_strength"):
        RealFilmAugmentation(max_strength=1.5)


def test_real_film_augmentation_defaults_cover_every_family_in_an_order():
    assert set(DEFAULT_PROBABILITIES) == set(FAMILIES) == set(APPLICATION_ORDER)
    assert RealFilmAugmentation().probabilities == DEFAULT_PROBABILITIES
    assert "real_films" in DESCRIPTIONS


@pytest.mark.parametrize("name", list(FAMILIES))
def test_real_film_augmentation_applies_only_the_family_with_probability_one(name, monkeypatch):
    calls = []

    def spy(family):
        def record(image, rng, strength):
            calls.append((family, strength))
            return image.copy()
        return record

    for family in FAMILIES:
        monkeypatch.setitem(augment.FAMILIES, family, spy(family))
    augmentation = RealFilmAugmentation({f: float(f == name) for f in FAMILIES},
                                        max_strength=0.4)
    for seed in range(5):
        augmentation(_chest(), np.random.default_rng(seed))
    assert [family for family, _ in calls] == [name] * 5
    assert all(0 <= strength <= 0.4 for _, strength in calls)


def test_real_film_augmentation_with_nothing_drawn_returns_a_copy():
    film = _chest()
    out = RealFilmAugmentation(dict.fromkeys(FAMILIES, 0.0))(film, np.random.default_rng(0))
    np.testing.assert_array_equal(out, film)
    assert out is not film


def test_real_film_augmentation_draws_everything_on_a_non_square_film_reproducibly():
    film = xray_like(300, 200)
    augmentation = RealFilmAugmentation(dict.fromkeys(FAMILIES, 1.0))
    first = augmentation(film, np.random.default_rng(3))
    second = augmentation(film, np.random.default_rng(3))
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.uint8 and first.ndim == 2 and not np.array_equal(first, film)
