import io

import numpy as np
import pytest
from PIL import Image

from app.contract.errors import (
    CorruptImageError,
    EmptyImageError,
    NotAnImageError,
    TooManyPixelsError,
    UnsupportedFormatError,
)
from app.contract.preprocessing import decode, load_model_input, to_model_input
from tests.builders.images import (
    encode,
    exif_rotated_jpeg,
    jpeg_bytes,
    png16_bytes,
    png_bytes,
    xray_like,
)


def _palette_png() -> bytes:
    return encode(Image.fromarray(xray_like()).convert("RGB").quantize(64), "PNG")


def _color_palette_png() -> bytes:
    rgb = np.repeat(xray_like()[:, :, None], 3, axis=2)
    rgb[:4, :4] = (255, 0, 0)  # a red marker: the palette is no longer grey
    return encode(Image.fromarray(rgb).quantize(64), "PNG")


def _rgba_png() -> bytes:
    rgba = Image.fromarray(xray_like()).convert("RGBA")
    rgba.putalpha(255)
    return encode(rgba, "PNG")


@pytest.mark.parametrize(
    ("data", "fmt", "mode", "shape"),
    [
        # A grey picture stored as colour (RGB, CMYK, RGBA) is read as its one channel.
        (jpeg_bytes(mode="L"), "JPEG", "L", (96, 80)),
        (jpeg_bytes(mode="RGB"), "JPEG", "RGB", (96, 80)),
        (jpeg_bytes(mode="CMYK"), "JPEG", "CMYK", (96, 80)),
        (png_bytes(mode="L"), "PNG", "L", (96, 80)),
        (png_bytes(mode="RGB"), "PNG", "RGB", (96, 80)),
        (png16_bytes(), "PNG", "I;16", (96, 80)),
        (_rgba_png(), "PNG", "RGBA", (96, 80)),
        (_palette_png(), "PNG", "P", (96, 80)),  # a grey palette stays grayscale
        (_color_palette_png(), "PNG", "P", (96, 80, 3)),
    ],
    ids=["jpeg-gray", "jpeg-rgb", "jpeg-cmyk", "png-gray", "png-rgb", "png-16bit", "png-rgba",
         "png-gray-palette", "png-colour-palette"],
)
def test_decode_supported_image_gives_8bit_array(data, fmt, mode, shape):
    decoded = decode(data)
    assert (decoded.format, decoded.mode) == (fmt, mode)
    assert decoded.pixels.shape == shape
    assert decoded.pixels.dtype == np.uint8
    # Every variant was made from the same picture: the content must survive conversion.
    gray = decoded.pixels if decoded.pixels.ndim == 2 else decoded.pixels.mean(axis=2)
    assert abs(float(gray.mean()) - float(xray_like().mean())) < 8


def test_decode_16bit_scales_full_range_instead_of_clipping():
    decoded = decode(png16_bytes())
    expected = xray_like()  # the 8-bit picture that was widened by *257
    np.testing.assert_array_equal(decoded.pixels, expected)


def test_decode_exif_orientation_turns_image_upright():
    decoded = decode(exif_rotated_jpeg(height=60, width=100, orientation=6))
    assert (decoded.width, decoded.height) == (60, 100)
    assert decoded.pixels.shape == (100, 60)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", EmptyImageError),
        (b"hello, this is not an X-ray\n", NotAnImageError),
        (encode(Image.fromarray(xray_like()), "GIF"), UnsupportedFormatError),
        (jpeg_bytes(400, 400)[:2000], CorruptImageError),
    ],
    ids=["empty", "text", "gif", "truncated-jpeg"],
)
def test_decode_bad_input_raises_specific_error(data, error):
    with pytest.raises(error):
        decode(data)


def test_decode_too_many_pixels_checked_from_header():
    # 9000 x 9000 of zeros compresses to a few KB: a decompression bomb for a 50 MP limit.
    bomb = encode(Image.new("L", (9000, 9000)), "PNG")
    with pytest.raises(TooManyPixelsError) as info:
        decode(bomb, max_pixels=50_000_000)
    assert info.value.pixels == 81_000_000


def test_decode_huge_bomb_caught_even_beyond_pillows_own_guard():
    bomb = encode(Image.new("1", (20000, 20000)), "PNG")
    with pytest.raises(TooManyPixelsError) as caught:
        decode(bomb, max_pixels=50_000_000)
    assert caught.value.limit == 50_000_000  # our limit is named, not Pillow's own


@pytest.mark.parametrize("channels", [1, 3])
def test_to_model_input_gives_requested_shape(channels):
    out = to_model_input(xray_like(300, 200), (64, 64), channels)
    assert out.shape == (64, 64, channels)
    assert out.dtype == np.uint8


def test_to_model_input_gray_and_rgb_copies_agree():
    gray = xray_like(224, 224)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(to_model_input(gray, (64, 64), 3),
                                  to_model_input(rgb, (64, 64), 3))


def test_to_model_input_downscale_is_antialiased():
    # A 1-pixel checkerboard must average to grey, not alias into stripes.
    board = (np.indices((640, 640)).sum(axis=0) % 2 * 255).astype(np.uint8)
    out = to_model_input(board, (64, 64), 1)
    assert abs(float(out.mean()) - 127.5) < 2
    assert float(out.std()) < 3


def test_load_model_input_jpeg_and_png_of_same_picture_are_close():
    a = load_model_input(jpeg_bytes(), (64, 64), 3).astype(int)
    b = load_model_input(png_bytes(), (64, 64), 3).astype(int)
    assert np.abs(a - b).mean() < 2


def test_16_bit_scaling_rounds_like_the_float_formula_for_every_value():
    from app.contract.preprocessing import _to_8bit_array

    every = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    expected = np.round(every.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    assert (_to_8bit_array(Image.fromarray(every)) == expected).all()


@pytest.mark.parametrize("subsampling", [0, 1, 2])  # 4:4:4, 4:2:2, 4:2:0
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_a_jpeg_decodes_to_pillows_own_pixels(mode, subsampling):
    """The strict libjpeg-turbo decode that checks a JPEG is also its decode: the pixels
    are exactly Pillow's (what the models were trained on), colour upsampling included."""
    rng = np.random.default_rng(subsampling)
    base = xray_like()
    pixels = (np.stack([base, base // 2, 255 - base], axis=-1) if mode == "RGB" else base)
    noisy = np.clip(pixels.astype(int) + rng.integers(-20, 21, pixels.shape), 0, 255)
    data = encode(Image.fromarray(noisy.astype(np.uint8)), "JPEG", quality=85,
                  subsampling=subsampling)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert(mode))
    np.testing.assert_array_equal(decode(data).pixels, expected)


def test_the_dataset_jpegs_decode_to_pillows_own_pixels(data_dir, samples_dir):
    """Every 20th film of the test split and the full-size originals: the same pixels as
    Pillow's decode of the file."""
    paths = sorted((data_dir / "test").glob("*/*.jpeg"))[::20] + sorted(samples_dir.iterdir())
    for path in paths:
        data = path.read_bytes()
        image = Image.open(io.BytesIO(data))
        expected = np.asarray(image.convert("L" if image.mode == "L" else "RGB"))
        pixels = decode(data).pixels
        if pixels.ndim == 2 and expected.ndim == 3:  # a grey film stored as colour
            pixels = np.repeat(pixels[:, :, None], 3, axis=2)
        np.testing.assert_array_equal(pixels, expected, err_msg=path.name)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_grey_film_stored_as_colour_is_read_as_its_one_channel(fmt):
    """Equal channels everywhere: (H, W), the channel itself; one pixel of colour anywhere
    (not only where the strided sample looks): the colour film as it is."""
    grey = xray_like(300, 260)  # sampled every 4th pixel
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    decoded = decode(encode(Image.fromarray(rgb), fmt, **({"quality": 100} if fmt == "JPEG"
                                                             else {})))
    assert decoded.pixels.shape == grey.shape and decoded.mode == "RGB"
    if fmt == "PNG":
        np.testing.assert_array_equal(decoded.pixels, grey)
        coloured = rgb.copy()
        coloured[37, 41] = (200, 10, 10)  # off every stride of the sample
        pixels = decode(encode(Image.fromarray(coloured), fmt)).pixels
        np.testing.assert_array_equal(pixels, coloured)


def test_a_grey_film_stored_as_colour_gets_the_same_model_input():
    """Its model input (3 channels or 1) is the colour file's, byte for byte."""
    grey = xray_like(300, 260)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    for channels in (1, 3):
        np.testing.assert_array_equal(to_model_input(grey, (64, 64), channels),
                                      to_model_input(rgb, (64, 64), channels))
