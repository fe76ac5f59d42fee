"""On-the-fly augmentation of the training split, in NumPy on the CPU.

Reproduces what the original study's `ImageDataGenerator(shear_range=0.2, zoom_range=0.2,
horizontal_flip=True)` does to each image, including Keras' units: `shear_range` is an angle
in DEGREES (so 0.2 is a tiny shear), `zoom_range=0.2` draws independent row and column zooms
from [0.8, 1.2], the transform is bilinear about the image centre with edge pixels repeated
(`fill_mode="nearest"`), and half the images are mirrored left-right.

It runs in the input pipeline rather than as Keras layers (random-transform layers inside a
model were about 150x slower under JAX on a GPU), one whole epoch at a time, vectorised.

The second part ("Real films") draws what films from clinics carry and the dataset's films
mostly do not: burned-in text, L/R lead markers and arrows, tubes, lines and ECG leads, borders
and collimation, positioning, exposure and JPEG loss. Each family (`FAMILIES`) takes ONE
(H, W) uint8 film at its source resolution, before the app's preprocessing, and a strength in
[0, 1]; `RealFilmAugmentation` applies them on the fly to training films and `STRENGTHS` are
the robustness suite's three levels. Pillow draws, NumPy composes; no OpenCV. Median time per
call at a strength drawn from [0, 1], one core of the 2-core development machine, in ms:

    film         text  markers  tubes  borders  geometry  contrast  jpeg  all (defaults)
    224x224       1.6     0.5    0.5     0.02      0.5       0.1     0.6     2.0
    2000x1600     3.4     1.9    9.3     0.4      29         7.4    30      39
    3000x3000     8.6     4.0   53       1.4      82        22      77     134

(jpeg on noise; a smooth film compresses faster).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_CHUNK = 16

# What each experiment's `augmentation` does, in the words the report and the card use.
DESCRIPTIONS = {
    "study": ("on the fly, a new random draw every epoch, training part only: Keras "
              "ImageDataGenerator semantics with shear_range=0.2 (degrees), zoom_range=0.2 "
              "(row and column zoom each in [0.8, 1.2]), horizontal_flip=True; bilinear, "
              "edges repeated"),
    "xray": ("on the fly, a new random draw every epoch, training part only: rotation "
             "within ±10°, zoom within ±10%, shift within ±5% of each side, contrast and "
             "brightness within ±10%; no mirroring; bilinear, edges repeated"),
}


def random_affine(
    images: np.ndarray,
    rng: np.random.Generator,
    shear_degrees: float = 0.2,
    zoom: float = 0.2,
    horizontal_flip: bool = True,
) -> np.ndarray:
    """(N, H, W, C) uint8/float -> (N, H, W, C) float32, one random transform per image."""
    n, height, width, _ = images.shape
    shear = np.deg2rad(rng.uniform(-shear_degrees, shear_degrees, n)).astype(np.float32)
    zoom_rows, zoom_cols = rng.uniform(1 - zoom, 1 + zoom, (2, n)).astype(np.float32)
    # Output (row, col) -> input (row, col), as Keras' apply_affine_transform: shear @ zoom.
    a = zoom_rows  # row <- row
    b = -np.sin(shear) * zoom_cols  # row <- col
    d = np.cos(shear) * zoom_cols  # col <- col
    rows, cols = np.meshgrid(np.arange(height, dtype=np.float32),
                             np.arange(width, dtype=np.float32), indexing="ij")
    r0, c0 = np.float32((height - 1) / 2), np.float32((width - 1) / 2)
    dr, dc = rows - r0, cols - c0  # (H, W)
    src_r = a[:, None, None] * dr + b[:, None, None] * dc + r0  # (N, H, W)
    src_c = d[:, None, None] * dc + c0
    out = np.empty(images.shape, dtype=np.float32)
    for start in range(0, n, _CHUNK):  # chunks keep the gathers in cache
        part = slice(start, start + _CHUNK)
        out[part] = _bilinear(images[part], src_r[part], src_c[part])
    if horizontal_flip:
        flip = rng.random(n) < 0.5
        out[flip] = out[flip, :, ::-1]
    return out


def _bilinear(images: np.ndarray, src_r: np.ndarray, src_c: np.ndarray) -> np.ndarray:
    """Sample (N, H, W, C) images at fractional (N, H, W) coordinates, edges repeated."""
    n, height, width, channels = images.shape
    src_r = np.clip(src_r, 0, height - 1)
    src_c = np.clip(src_c, 0, width - 1)
    r_lo = np.minimum(src_r.astype(np.int32), height - 2)  # coords >= 0, so int() floors
    c_lo = np.minimum(src_c.astype(np.int32), width - 2)
    fr = (src_r - r_lo)[..., None]
    fc = (src_c - c_lo)[..., None]
    # One flat gather per corner: much faster than 3-D fancy indexing.
    flat = images.reshape(n * height * width, channels)
    base = (np.arange(n, dtype=np.int32) * (height * width))[:, None, None] + r_lo * width + c_lo
    top_left = flat[base].astype(np.float32)
    top_right = flat[base + 1].astype(np.float32)
    bottom_left = flat[base + width].astype(np.float32)
    bottom_right = flat[base + width + 1].astype(np.float32)
    top = top_left + (top_right - top_left) * fc
    bottom = bottom_left + (bottom_right - bottom_left) * fc
    return top + (bottom - top) * fr


def random_xray(
    images: np.ndarray,
    rng: np.random.Generator,
    rotation_degrees: float = 10.0,
    zoom: float = 0.1,
    shift: float = 0.05,
    intensity: float = 0.1,
) -> np.ndarray:
    """(N, H, W, C) -> (N, H, W, C) float32: augmentation suited to frontal chest films.

    A small rotation (positioning), one isotropic zoom (distance to the detector), a shift
    (framing), and brightness and contrast (exposure), each drawn per image. No mirroring:
    the heart is on the left of a frontal film, and a mirrored one is not a film a clinic
    takes. Bilinear, edges repeated, as `random_affine`.
    """
    n, height, width, _ = images.shape
    angle = np.deg2rad(rng.uniform(-rotation_degrees, rotation_degrees, n)).astype(np.float32)
    scale = rng.uniform(1 - zoom, 1 + zoom, n).astype(np.float32)
    shift_r = (rng.uniform(-shift, shift, n) * height).astype(np.float32)
    shift_c = (rng.uniform(-shift, shift, n) * width).astype(np.float32)
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    rows, cols = np.meshgrid(np.arange(height, dtype=np.float32),
                             np.arange(width, dtype=np.float32), indexing="ij")
    r0, c0 = np.float32((height - 1) / 2), np.float32((width - 1) / 2)
    dr, dc = rows - r0, cols - c0
    # Output pixel -> input pixel: rotate and scale about the centre, then shift.
    src_r = cos[:, None, None] * dr - sin[:, None, None] * dc + r0 + shift_r[:, None, None]
    src_c = sin[:, None, None] * dr + cos[:, None, None] * dc + c0 + shift_c[:, None, None]
    out = np.empty(images.shape, dtype=np.float32)
    for start in range(0, n, _CHUNK):
        part = slice(start, start + _CHUNK)
        out[part] = _bilinear(images[part], src_r[part], src_c[part])
    # Contrast about the film's own mean, then brightness, within the 0-255 range.
    contrast = rng.uniform(1 - intensity, 1 + intensity, n).astype(np.float32)
    brightness = (rng.uniform(-intensity, intensity, n) * 255).astype(np.float32)
    mean = out.mean(axis=(1, 2, 3), keepdims=True)
    out = (out - mean) * contrast[:, None, None, None] + mean + brightness[:, None, None, None]
    return np.clip(out, 0, 255, out=out)


# --- Real films: the marks that films from clinics carry -------------------------------------
#
# Each family takes ONE (H, W) uint8 MONOCHROME2 film (bone bright, air dark) at its source
# resolution, before the app's preprocessing, and returns a new (H', W') uint8 film; the input
# is never written to. Sizes are fractions of the film's shorter side, so a 224 px cache film
# and a 3000 px original get the same drawing. Positions that follow anatomy use fixed
# fractions of a frontal chest film (rows from the top, columns from the image's left, which is
# the patient's right): the neck is the top centre (rows 0-15 %, columns 42-58 %); the
# mediastinum is the central ~20 % of the width (columns 40-60 %), rows ~15-70 %; the carina is
# near row 30-35 %, the diaphragm near row 65-70 %, the stomach below it on the image's right.

Perturb = Callable[[np.ndarray, np.random.Generator, float], np.ndarray]

CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
SIDES = ("top", "bottom", "left", "right")


def _check(image: np.ndarray, strength: float = 0.0) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W) uint8 film, got {getattr(image, 'shape', None)} "
                         f"{getattr(image, 'dtype', type(image).__name__)}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")


def _font(height_px: float) -> ImageFont.FreeTypeFont:
    # Pillow's bundled scalable font (Pillow >= 10.1, FreeType); loading one takes ~0.05 ms,
    # so each call loads its own and no font object is shared between threads.
    return ImageFont.load_default(size=max(1, round(height_px)))


def _xy(points: np.ndarray) -> list[tuple[float, float]]:
    """(K, 2) (row, col) -> Pillow's [(x, y), ...]."""
    return [(float(c), float(r)) for r, c in points]


# Text ---------------------------------------------------------------------------------------

def _text_layout(text: str, height_px: float):
    """Font, line spacing, ink box relative to the anchor, padding and (rows, cols) extent."""
    font = _font(height_px)
    spacing = max(1, round(0.25 * height_px))
    scratch = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = scratch.textbbox((0, 0), text, font=font, spacing=spacing)
    pad = max(1, round(0.2 * height_px))
    return font, spacing, (left, top), pad, (bottom - top + 2 * pad, right - left + 2 * pad)


def text_extent(text: str, height_px: float) -> tuple[int, int]:
    """(rows, cols) of the block `draw_text` draws: the text's ink plus a padding of 20 % of
    `height_px` on each side (the black box, when there is one, fills exactly this)."""
    return _text_layout(text, height_px)[4]


def _place(shape: tuple[int, int], position, extent: tuple[int, int]) -> tuple[int, int]:
    """Top-left (row, col) of a block of `extent` at `position`: (row, col), or a corner name
    (an inset of 2 % of the shorter side from that corner)."""
    if isinstance(position, str):
        if position not in CORNERS:
            raise ValueError(f"unknown corner {position!r}; expected one of {CORNERS}")
        inset = max(1, round(0.02 * min(shape)))
        row = inset if position.startswith("top") else shape[0] - inset - extent[0]
        col = inset if position.endswith("left") else shape[1] - inset - extent[1]
        return row, col
    row, col = position
    return round(row), round(col)


def _text_on(draw: ImageDraw.ImageDraw, shape, text, layout, position, value, box_value):
    font, spacing, (left, top), pad, (rows, cols) = layout
    row, col = _place(shape, position, (rows, cols))
    if box_value is not None:
        draw.rectangle((col, row, col + cols - 1, row + rows - 1), fill=int(box_value))
    draw.text((col + pad - left, row + pad - top), text, font=font, fill=int(value),
              spacing=spacing)


def draw_text(image: np.ndarray, text: str, position, height_px: float, value: int = 255,
              box_value: int | None = None) -> np.ndarray:
    """(H, W) uint8 -> a new (H, W) uint8 film with `text` burned in.

    position: (row, col) of the block's top-left pixel, or one of CORNERS. height_px: the
    font size in pixels (capitals are ~0.7 of it); "\\n" starts a new line. value: the text's
    grey level; box_value: the grey level of a box behind it (None: no box). Everything drawn
    lies inside the `text_extent(text, height_px)` block; what falls off the film is clipped.
    """
    _check(image)
    film = Image.fromarray(image)  # read-only view: Pillow copies before the first drawing
    _text_on(ImageDraw.Draw(film), image.shape, text, _text_layout(text, height_px), position,
             value, box_value)
    return np.array(film)


_WORDS = ("PORTABLE", "AP SUPINE", "AP ERECT", "PA ERECT", "SEMI-ERECT", "SUPINE", "UPRIGHT",
          "CHEST", "CHEST AP", "MOBILE", "INSP", "PEDS", "CR", "DX", "ICU", "WARD 4")


def _stamp_line(rng: np.random.Generator) -> str:
    kind = rng.integers(5)
    if kind == 0:
        return str(rng.choice(_WORDS))
    if kind == 1:
        day, month, year = rng.integers(1, 29), rng.integers(1, 13), rng.integers(2005, 2026)
        return f"{day:02d}/{month:02d}/{year}" if rng.random() < 0.5 else \
            f"{year}-{month:02d}-{day:02d} {rng.integers(24):02d}:{rng.integers(60):02d}"
    if kind == 2:
        prefix = ("ACC ", "ID: ", "#", "")[rng.integers(4)]
        return f"{prefix}{rng.integers(10**6, 10**9)}"
    if kind == 3:
        return f"{rng.integers(50, 96)} kVp {rng.uniform(0.5, 6):.1f} mAs"
    if rng.random() < 0.5:
        return f"SID {rng.integers(100, 185)}cm"
    return f"EI {rng.integers(100, 2000)}"


def burned_in_text(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Dates, accession-like numbers, "PORTABLE", "AP SUPINE", kVp/mAs... in 1-5 blocks of 1-3
    lines in the corners and along the edges; line height 2 % to 2 + 4*strength % of the
    shorter side (6 % at 1), white or light grey, a third of them on a black box."""
    _check(image, strength)
    if strength == 0:
        return image.copy()
    height, width = image.shape
    film = Image.fromarray(image)
    draw = ImageDraw.Draw(film)
    for _ in range(1 + rng.binomial(4, strength)):
        size = max(4.0, min(height, width) * rng.uniform(0.02, 0.02 + 0.04 * strength))
        text = "\n".join(_stamp_line(rng) for _ in range(rng.integers(1, 4)))
        layout = _text_layout(text, size)
        rows, cols = layout[4]
        if rng.random() < 0.6:
            position = CORNERS[rng.integers(4)]
        else:  # along an edge, anywhere on it
            edge = SIDES[rng.integers(4)]
            along_row = rng.uniform(0, max(1, height - rows))
            along_col = rng.uniform(0, max(1, width - cols))
            inset = 0.02 * min(height, width)
            position = {"top": (inset, along_col),
                        "bottom": (height - inset - rows, along_col),
                        "left": (along_row, inset),
                        "right": (along_row, width - inset - cols)}[edge]
        value = 255 if rng.random() < 0.6 else int(rng.integers(170, 241))
        box_value = 0 if rng.random() < 1 / 3 else None
        _text_on(draw, image.shape, text, layout, position, value, box_value)
    return np.array(film)


# Side markers and arrows --------------------------------------------------------------------

def _marker_on(draw, center, letter, height_px, value, box):
    if box not in ("none", "outline", "filled"):
        raise ValueError(f"box must be 'none', 'outline' or 'filled', got {box!r}")
    font = _font(0.85 * height_px)
    row, col = center
    half = height_px / 2
    square = (col - half, row - half, col + half, row + half)
    fill = int(value)
    if box == "filled":  # a bright plate with the letter cut out
        draw.rectangle(square, fill=fill)
        fill = 0
    elif box == "outline":
        draw.rectangle(square, outline=fill, width=max(1, round(height_px / 10)))
    left, top, right, bottom = draw.textbbox((0, 0), letter, font=font)
    draw.text((col - (left + right) / 2, row - (top + bottom) / 2), letter, font=font, fill=fill)


def draw_marker(image: np.ndarray, letter: str, center, height_px: float, value: int = 255,
                box: str = "outline") -> np.ndarray:
    """(H, W) uint8 -> a new one with a lead side marker: `letter` ("L", "R") centred on
    `center` (row, col), inside a `height_px` square that is drawn as an outline, filled
    (the letter then dark on a bright plate) or not at all (box "none")."""
    _check(image)
    film = Image.fromarray(image)
    _marker_on(ImageDraw.Draw(film), center, letter, height_px, value, box)
    return np.array(film)


def _arrow_on(draw, tail, tip, width_px, value):
    tail, tip = np.asarray(tail, float), np.asarray(tip, float)
    along = tip - tail
    length = float(np.hypot(*along))
    if length == 0:
        return
    along /= length
    across = np.array([-along[1], along[0]])
    head = max(3.0, 0.3 * length, 3.0 * width_px)
    base = tip - head * along
    draw.line(_xy(np.stack([tail, base])), fill=int(value), width=max(1, round(width_px)))
    draw.polygon(_xy(np.stack([tip, base + 0.6 * head * across, base - 0.6 * head * across])),
                 fill=int(value))


def draw_arrow(image: np.ndarray, tail, tip, width_px: float, value: int = 255) -> np.ndarray:
    """(H, W) uint8 -> a new one with an arrow from `tail` to `tip` ((row, col) each): a shaft
    `width_px` wide and a filled head 30 % of the length (at least 3 widths)."""
    _check(image)
    film = Image.fromarray(image)
    _arrow_on(ImageDraw.Draw(film), tail, tip, width_px, value)
    return np.array(film)


def _near_edge(rng: np.random.Generator, shape, inset: float) -> tuple[float, float]:
    """(row, col): 60 % in an upper corner (rows 4-30 %, columns 4-20 % from either side),
    else in a band 3-12 % deep along any edge; at least `inset` pixels inside the film."""
    height, width = shape
    if rng.random() < 0.6:
        row, col = rng.uniform(0.04, 0.3) * height, rng.uniform(0.04, 0.2) * width
        if rng.random() < 0.5:
            col = width - col
    else:
        along, depth = rng.uniform(0.05, 0.95), rng.uniform(0.03, 0.12)
        row, col = {0: (depth * height, along * width), 1: ((1 - depth) * height, along * width),
                    2: (along * height, depth * width),
                    3: (along * height, (1 - depth) * width)}[int(rng.integers(4))]
    return (float(np.clip(row, inset, max(inset, height - inset))),
            float(np.clip(col, inset, max(inset, width - inset))))


def side_markers(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """1-2 L/R lead markers (3 % to 3 + 5*strength % of the shorter side) and 0-2 arrows
    (5 % to 5 + 7*strength % long) pointing at the film's centre, near the edges and upper
    corners. The letter and its side are independent: a misplaced marker is a real film too."""
    _check(image, strength)
    if strength == 0:
        return image.copy()
    side = min(image.shape)
    film = Image.fromarray(image)
    draw = ImageDraw.Draw(film)
    for _ in range(1 + rng.binomial(1, strength)):
        size = side * rng.uniform(0.03, 0.03 + 0.05 * strength)
        letter = ("L", "R", "AP")[rng.choice(3, p=(0.45, 0.45, 0.1))]
        value = 255 if rng.random() < 0.7 else int(rng.integers(200, 255))
        box = ("none", "outline", "filled")[rng.choice(3, p=(0.3, 0.5, 0.2))]
        _marker_on(draw, _near_edge(rng, image.shape, size), letter, size, value, box)
    centre = np.array(image.shape, float) / 2
    for _ in range(rng.binomial(2, strength)):
        length = side * rng.uniform(0.05, 0.05 + 0.07 * strength)
        tail = np.array(_near_edge(rng, image.shape, 0.02 * side))
        toward = centre - tail
        tip = tail + length * toward / max(1e-6, float(np.hypot(*toward)))
        _arrow_on(draw, tail, tip, max(1.0, side * 0.006 * (0.5 + strength)), 255)
    return np.array(film)


# Tubes, lines and ECG leads -----------------------------------------------------------------

def _smooth(points: np.ndarray) -> np.ndarray:
    """(K, 2) control points -> (M, 2) points of the Catmull-Rom curve through them, ~2 px apart."""
    ends = np.vstack([points[:1], points, points[-1:]])
    pieces = []
    for i in range(len(points) - 1):
        p0, p1, p2, p3 = ends[i:i + 4]
        n = max(2, int(np.ceil(np.hypot(*(p2 - p1)) / 2)))
        t = np.linspace(0, 1, n, endpoint=False)[:, None]
        pieces.append(0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                             + (3 * p1 - p0 - 3 * p2 + p3) * t**3))
    pieces.append(points[-1:])
    return np.vstack(pieces)


def _curve_on(draw, points, width_px, value):
    draw.line(_xy(_smooth(np.asarray(points, float))), fill=int(value),
              width=max(1, round(width_px)), joint="curve")


def draw_tube(image: np.ndarray, points, width_px: float, value: int = 255) -> np.ndarray:
    """(H, W) uint8 -> a new one with a smooth curve through `points` ((K, 2) (row, col),
    K >= 2), `width_px` wide, `value` grey over black (see `_add_opacity`: it brightens what
    lies under it and never darkens it)."""
    _check(image)
    points = np.asarray(points, float)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 2:
        raise ValueError(f"points must be (K, 2) with K >= 2, got {points.shape}")
    mask = Image.new("L", image.shape[::-1])
    _curve_on(ImageDraw.Draw(mask), points, width_px, value)
    return _add_opacity(image, np.asarray(mask))


def _add_opacity(image: np.ndarray, opacity: np.ndarray) -> np.ndarray:
    """Film and a drawn (H, W) uint8 object -> 255 - (255 - film) * (255 - object) / 255.

    A device in the beam multiplies the transmitted fraction, and a MONOCHROME2 grey level is
    roughly 255 x (1 - transmission), so attenuations combine as a "screen": a line of grey
    `value` shows as `value` over air and stays visible, brighter, over the mediastinum."""
    dark = (255 - image.astype(np.uint16)) * (255 - opacity.astype(np.uint16))
    return (255 - (dark + 127) // 255).astype(np.uint8)


def _path(shape, rows, cols) -> np.ndarray:
    return np.column_stack([np.asarray(rows) * shape[0], np.asarray(cols) * shape[1]])


def endotracheal_tube_path(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(4, 2) control points: from above the film down the neck's midline (columns 48-52 %,
    +-1.5 %) to a tip in the trachea at rows 20-30 %, above the carina."""
    centre = 0.5 + rng.uniform(-0.02, 0.02)
    return _path(shape, [-0.02, 0.07, 0.15, rng.uniform(0.2, 0.3)],
                 centre + rng.uniform(-0.015, 0.015, 4))


def nasogastric_tube_path(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(7, 2) control points: down the midline (columns 47-53 %, +-1.5 %) through the neck and
    mediastinum, past the diaphragm at row ~70 %, into the stomach at rows 80-90 %, columns
    60-68 % (the image's right, the patient's left)."""
    centre = 0.5 + rng.uniform(-0.03, 0.03)
    cols = centre + rng.uniform(-0.015, 0.015, 5)
    return _path(shape, [-0.02, 0.15, 0.35, 0.55, 0.68, 0.76, rng.uniform(0.8, 0.9)],
                 [*cols[:4], cols[4] + 0.02, cols[4] + 0.07, rng.uniform(0.6, 0.68)])


def central_line_path(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(3, 2) control points: from a shoulder (rows 5-18 %, columns 2-20 % from the image's
    left, or its right for a left-sided line in 30 %) to a tip in the superior vena cava at
    rows 30-40 %, columns 44-50 % (the mediastinum's right border on the patient)."""
    start_col, mid_col = rng.uniform(0.02, 0.2), rng.uniform(0.3, 0.36)
    if rng.random() < 0.3:
        start_col, mid_col = 1 - start_col, 1 - mid_col
    return _path(shape, [rng.uniform(0.05, 0.18), rng.uniform(0.18, 0.24), rng.uniform(0.3, 0.4)],
                 [start_col, mid_col, rng.uniform(0.44, 0.5)])


def _ecg_leads_on(draw, shape, rng, count, radius, width_px, value):
    """`count` electrode snaps (bright discs, rows 10-80 %, columns 8-92 %), each with a wire
    that sags out of the nearer side of the film."""
    height, width = shape
    for _ in range(count):
        row, col = rng.uniform(0.1, 0.8) * height, rng.uniform(0.08, 0.92) * width
        exit_col = -0.02 * width if col < width / 2 else 1.02 * width
        exit_row = row + rng.uniform(-0.2, 0.2) * height
        sag = ((row + exit_row) / 2 + rng.uniform(0, 0.08) * height, (col + exit_col) / 2)
        _curve_on(draw, [(row, col), sag, (exit_row, exit_col)], max(1, width_px - 1), value)
        draw.ellipse((col - radius, row - radius, col + radius, row + radius), fill=255)


def tubes_and_lines(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """1-4 devices, each at most once: an endotracheal tube, a nasogastric tube, a central line,
    2-5 ECG leads. Grey level 140 to 140 + 115*strength, width 0.3 % to 0.3 + 0.7*strength %
    of the shorter side (the endotracheal tube half as wide again); snaps are 255."""
    _check(image, strength)
    if strength == 0:
        return image.copy()
    side = min(image.shape)
    value = int(rng.uniform(140, 140 + 115 * strength))
    width = max(1.0, side * rng.uniform(0.003, 0.003 + 0.007 * strength))
    mask = Image.new("L", image.shape[::-1])
    draw = ImageDraw.Draw(mask)
    for device in np.sort(rng.choice(4, 1 + rng.binomial(3, strength), replace=False)):
        if device == 0:
            _curve_on(draw, endotracheal_tube_path(image.shape, rng), 1.5 * width, value)
        elif device == 1:
            _curve_on(draw, nasogastric_tube_path(image.shape, rng), width, value)
        elif device == 2:
            _curve_on(draw, central_line_path(image.shape, rng), width, value)
        else:
            radius = side * rng.uniform(0.012, 0.012 + 0.01 * strength)
            _ecg_leads_on(draw, image.shape, rng, 2 + rng.binomial(3, strength), radius, width,
                          value)
    return _add_opacity(image, np.asarray(mask))


# Borders and collimation --------------------------------------------------------------------

def _frame(image: np.ndarray, widths: dict[str, int], value: int, pad: bool) -> np.ndarray:
    """Uniform `value` bands `widths[side]` pixels wide: added outside the film (pad) or
    replacing its outermost pixels (the film keeps its size)."""
    top, bottom, left, right = (max(0, int(widths.get(s, 0))) for s in SIDES)
    height, width = image.shape
    if pad:
        out = np.full((height + top + bottom, width + left + right), value, np.uint8)
        out[top:top + height, left:left + width] = image
        return out
    out = image.copy()
    out[:top] = value
    out[height - min(bottom, height):] = value
    out[:, :left] = value
    out[:, width - min(right, width):] = value
    return out


def add_border(image: np.ndarray, sides, width_px: int, value: int, pad: bool) -> np.ndarray:
    """(H, W) uint8 -> a uniform border `width_px` wide, grey level `value`, on `sides` (names
    from SIDES): padded outside the film ((H + top + bottom, W + left + right)) or, pad False,
    replacing the film's edge ((H, W))."""
    _check(image)
    sides = (sides,) if isinstance(sides, str) else tuple(sides)
    unknown = set(sides) - set(SIDES)
    if unknown or width_px < 0 or not 0 <= value <= 255:
        raise ValueError(f"sides from {SIDES}, width_px >= 0, value in 0-255; got {sides}, "
                         f"{width_px}, {value}")
    return _frame(image, dict.fromkeys(sides, width_px), value, pad)


def borders(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Three times in four, a black or white border on 1-4 sides, each 0.7-1.0 x 12*strength %
    of that side's length deep (2.5-3.6 % at 0.3, 8.4-12 % at 1), padded or replacing the edge
    at even odds; otherwise collimation: a bright (200-255) unexposed frame on all four sides,
    each 0.3-1.0 x 12*strength % deep, inside the film."""
    _check(image, strength)
    if strength == 0:
        return image.copy()
    height, width = image.shape
    depth = {"top": height, "bottom": height, "left": width, "right": width}
    if rng.random() < 0.75:
        sides = [SIDES[i] for i in rng.choice(4, rng.integers(1, 5), replace=False)]
        fraction = 0.12 * strength * rng.uniform(0.7, 1.0)
        widths = {s: max(1, round(fraction * depth[s])) for s in sides}
        return _frame(image, widths, 0 if rng.random() < 0.5 else 255, bool(rng.random() < 0.5))
    widths = {s: max(1, round(0.12 * strength * rng.uniform(0.3, 1.0) * depth[s])) for s in SIDES}
    return _frame(image, widths, int(rng.integers(200, 256)), False)


# Geometry, tone, compression ----------------------------------------------------------------

def rotate_zoom(image: np.ndarray, angle_degrees: float, zoom: float = 1.0,
                shift: tuple[float, float] = (0.0, 0.0), fill: str = "edge") -> np.ndarray:
    """(H, W) uint8 -> (H, W) uint8: rotated `angle_degrees` counter-clockwise as displayed and
    zoomed `zoom` times (> 1 crops, < 1 shrinks) about the centre, then moved `shift` (rows,
    cols) pixels; bilinear (Pillow). What comes in from outside the film is its edge pixels
    repeated (fill "edge") or black (fill "black")."""
    _check(image)
    if fill not in ("edge", "black") or not zoom > 0:
        raise ValueError(f"fill must be 'edge' or 'black' and zoom > 0; got {fill!r}, {zoom}")
    height, width = image.shape
    theta = np.deg2rad(angle_degrees)
    cos, sin = np.cos(theta) / zoom, np.sin(theta) / zoom
    # Output (x, y) -> input (x, y) about the centre, as Pillow's own Image.rotate.
    cx, cy = width / 2, height / 2
    a, b, d, e = cos, -sin, sin, cos
    c = cx - a * cx - b * cy - shift[1]
    f = cy - d * cx - e * cy - shift[0]
    source = image
    margin = 0
    if fill == "edge":  # pad by edge repeat just enough to cover where the corners come from
        corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], float)
        xs, ys = corners @ [a, b] + c, corners @ [d, e] + f
        margin = int(np.ceil(max(0, -xs.min(), -ys.min(), xs.max() - width,
                                 ys.max() - height))) + 2
        source = np.pad(image, margin, mode="edge")
    out = Image.fromarray(source).transform(
        (width, height), Image.Transform.AFFINE, (a, b, c + margin, d, e, f + margin),
        resample=Image.Resampling.BILINEAR, fillcolor=0)
    return np.array(out)


def _signed(rng: np.random.Generator, magnitude: float) -> float:
    """A magnitude between half and all of `magnitude`, either sign."""
    return magnitude * rng.uniform(0.5, 1.0) * (1 if rng.random() < 0.5 else -1)


def geometry(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Positioning and framing: a rotation of 5-10 x strength degrees, a zoom in or out of
    7.5-15 x strength %, a shift within +-5 x strength % of each side; fill by edge repeat or
    black at even odds. The film keeps its size."""
    _check(image, strength)
    if strength == 0:
        return image.copy()
    angle = _signed(rng, 10.0 * strength)
    zoom = 1 + _signed(rng, 0.15 * strength)
    shift = rng.uniform(-0.05, 0.05, 2) * strength * np.array(image.shape)
    return rotate_zoom(image, angle, zoom, (float(shift[0]), float(shift[1])),
                       "edge" if rng.random() < 0.5 else "black")


def adjust_tone(image: np.ndarray, gamma: float, contrast: float = 1.0,
                brightness: float = 0.0) -> np.ndarray:
    """(H, W) uint8 -> (H, W) uint8 through one look-up table: 255 * (x / 255) ** gamma
    (gamma > 1 darkens the mid-greys), then contrast about mid-grey 127.5, then `brightness`
    grey levels added; clipped to 0-255."""
    _check(image)
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    levels = 255 * (np.arange(256) / 255) ** gamma
    levels = (levels - 127.5) * contrast + 127.5 + brightness
    return np.clip(np.rint(levels), 0, 255).astype(np.uint8)[image]


def contrast(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Exposure and processing: gamma up to 1 + 0.6 x strength or down to 1 - 0.4 x strength
    (0.6-1.6 at 1), contrast x (1 +- 0.3 x strength), brightness +- 20 x strength grey levels;
    each magnitude half to all of its maximum, either sign."""
    _check(image, strength)
    if strength == 0:
        return image.copy()
    gamma = 1 + (0.6 if rng.random() < 0.5 else -0.4) * strength * rng.uniform(0.5, 1.0)
    return adjust_tone(image, gamma, 1 + _signed(rng, 0.3 * strength),
                       _signed(rng, 20.0 * strength))


def recompress_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """(H, W) uint8 -> the same film written as a grayscale JPEG at `quality` (1-95, Pillow's
    scale) and read back."""
    _check(image)
    if not 1 <= quality <= 95:
        raise ValueError(f"quality must be in 1-95, got {quality}")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return np.array(Image.open(buffer).convert("L"))


def jpeg(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Archive or export compression: quality round(95 - 75 x strength), 95 near 0, 20 at 1.
    The rng is not used: the strength alone sets the loss."""
    _check(image, strength)
    if strength == 0:
        return image.copy()
    return recompress_jpeg(image, round(95 - 75 * strength))


FAMILIES: dict[str, Perturb] = {
    "text": burned_in_text, "markers": side_markers, "tubes": tubes_and_lines,
    "borders": borders, "geometry": geometry, "contrast": contrast, "jpeg": jpeg,
}

# Low, middle, high strength for the robustness suite. "borders" is lower: its middle strength
# is a thin border (2.5-3.6 % of the side), a failure the first models showed.
STRENGTHS: dict[str, tuple[float, float, float]] = {
    name: (0.1, 0.3, 1.0) if name == "borders" else (0.25, 0.5, 1.0) for name in FAMILIES
}

# How often each family is drawn on a training film. Chosen, not measured: the point is that a
# mark says nothing about the label, so each is put on films of both classes independently of
# it. About half for the marks most clinic films carry (text, markers) and for the usual
# variation in positioning and exposure (geometry, contrast), where the model must see both
# marked and clean films of each class; less for tubes (they lie over the mediastinum and, with
# ECG leads, over the lungs, so too many would hide the findings the label is about), for
# borders and collimation (common in exports and scans, yet most films fill the frame), and for
# JPEG (most films arrive lossless or at high quality).
DEFAULT_PROBABILITIES: dict[str, float] = {
    "text": 0.5, "markers": 0.5, "tubes": 0.3, "borders": 0.4, "geometry": 0.5,
    "contrast": 0.5, "jpeg": 0.3,
}

# The order in which a film acquires them: devices and lead markers are in the X-ray beam,
# positioning and collimation happen at exposure, then processing (tone), then the text the
# modality burns in, then the borders of a scan or an export, then the archive's compression.
APPLICATION_ORDER = ("tubes", "markers", "geometry", "contrast", "text", "borders", "jpeg")


@dataclass(frozen=True)
class RealFilmAugmentation:
    """Applied on the fly to each training film ((H, W) uint8 at source resolution, before
    preprocessing): each family, in APPLICATION_ORDER, with its probability (a family left out
    of `probabilities` is never applied), at a strength drawn uniformly from [0, max_strength];
    no horizontal flip ever (chest films have a side). Returns a new (H', W') uint8 film
    ("borders" may pad it). ValueError at construction for an unknown family, a probability
    outside [0, 1] or a max_strength outside [0, 1]."""

    probabilities: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PROBABILITIES))
    max_strength: float = 1.0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.probabilities) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown augmentation families {unknown}; known: {list(FAMILIES)}")
        bad = {name: p for name, p in self.probabilities.items() if not 0.0 <= p <= 1.0}
        if bad:
            raise ValueError(f"probabilities must be in [0, 1], got {bad}")
        if not 0.0 <= self.max_strength <= 1.0:
            raise ValueError(f"max_strength must be in [0, 1], got {self.max_strength}")
        object.__setattr__(self, "probabilities", dict(self.probabilities))  # the caller's copy

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check(image)
        out = image
        for name in APPLICATION_ORDER:
            if rng.random() < self.probabilities.get(name, 0.0):
                strength = rng.uniform(0.0, self.max_strength)
                out = FAMILIES[name](out, rng, strength)
        return out.copy() if out is image else out


def describe_real_films(probabilities: dict[str, float]) -> str:
    """The words the card and the report use for a RealFilmAugmentation's `probabilities`."""
    return (
        "on the fly, a new random draw every epoch, training part only, on each film at its "
        "source resolution before preprocessing: marks of real films, each family "
        "independently of the label with probability "
        + ", ".join(f"{name} {probabilities.get(name, 0.0):g}" for name in FAMILIES)
        + " (text: burned-in dates, numbers, 'PORTABLE'; markers: L/R lead markers and arrows; "
        "tubes: endotracheal and nasogastric tubes, central lines, ECG leads; borders: black or "
        "white borders up to 12% of a side, or collimation; geometry: rotation within ±10°, "
        "zoom within ±15%; contrast: gamma 0.6-1.6, contrast ±30%, brightness ±20 levels; "
        "jpeg: quality 95 to 20), each at a strength drawn uniformly from [0, 1]; no mirroring"
    )


DESCRIPTIONS["real_films"] = describe_real_films(DEFAULT_PROBABILITIES)
