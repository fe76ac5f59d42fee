"""Image bytes -> pixel array -> model input. The one place that decodes and resizes X-rays.

Training (dataset cache, evaluation) and the app (uploads) both import this module, so a
file gives the model exactly the same input whichever path it comes through. It depends on
Pillow, NumPy and simplejpeg (libjpeg-turbo, for the damage check) only.

It is also the boundary for user bytes: whatever a decoder raises on them becomes one of the
ImageError classes of app/contract/errors.py (`_user_bytes`), so callers map a closed set of
errors to answers, not a list of third-party exception types to keep up to date.

Two steps, kept apart so that other decoders (DICOM) can feed the second one:
  decode(bytes)        -> DecodedImage: an 8-bit grayscale (H, W) or RGB (H, W, 3) array
  to_model_input(arr)  -> (size, size, channels) uint8, raw 0-255; scaling is a model layer.
                          Its film is `model_film(arr, version)`: from version 3 without its
                          uniform borders (app/contract/borders.py), as the model's card says.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from app.contract.borders import Box, crop_borders
from app.contract.dicom import DicomInfo, looks_like_dicom, read_dicom
from app.contract.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageError,
    MultiFrameError,
    NotAnImageError,
    TooManyPixelsError,
    UnsupportedFormatError,
)
from app.contract.integrity import (
    check_jpeg,
    check_jpeg_scans,
    check_png,
    is_lossless_jpeg,
    strict_jpeg_decode,
)

# Formats the tool accepts. Anything else Pillow can read (GIF, TIFF, ...) is refused so that
# what we claim to support is what we test. MPO is the multi-picture JPEG that many phone
# cameras write: its first picture is an ordinary JPEG, and that is the one read. DICOM is
# recognised by content and read by app/contract/dicom.py.
SUPPORTED_FORMATS = ("JPEG", "PNG", "MPO")
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")  # how their files begin

# Bumped whenever decode/resize changes, so cached training arrays are rebuilt.
# 2: a film at least 2 x REDUCE_MARGIN times the model input on both sides is decoded at
#    half size (JPEG: libjpeg's DCT scaling, in the strict decode that is also its damage
#    check; PNG: a 2x2 box filter, 16-bit in strips), then resized as before. Smaller films,
#    every training image among them (224 px against a 64 px input), give exactly version
#    1's input. Half size, not 1/4 or 1/8: libjpeg's 1/4 and 1/8 scaling moved model 5's
#    probability by 0.014 on a 2482x2570 original, half size by 0.001; and the time goes
#    to entropy decoding, which no scaling avoids.
# 3: uniform borders (black, white or flat grey strips along whole sides: a crop, a
#    scanner's or a detector's edge, a collimator's frame) are cropped from the decoded film
#    before the resize (app/contract/borders.py). A black edge of 2-4% of the width moved
#    a pneumonia test film from 0.86 to 0.36-0.53 (issue 28). Decoding is unchanged.
PREPROCESSING_VERSION = "3"
# Versions whose models this module serves, each given its own version's input: the crop
# only for version 3 (`model_film`, by the card's input.preprocessing_version), so models
# of versions 1 and 2 get exactly the input they had. Version 2 gives films of the training
# images' size version 1's input, and on large films stays within 0.01 of version 1's
# probability (tests/contract/test_reduced_decode.py, on the test split and full-size
# originals), so models of version 1 are given version 2's input.
SERVES_PREPROCESSING_VERSIONS = ("1", "2", "3")
CROPS_BORDERS_FROM = 3  # the first version whose models see films without their borders
RESAMPLING = ("uniform borders cropped, then bilinear, antialiased (Pillow), aspect ratio not "
              "preserved; films at least eight times the input size first decoded at half "
              "size")
# A film is halved only if the half still has this many pixels per model input pixel on
# each side, so the final antialiased resize averages over many pixels of the film.
REDUCE_MARGIN = 4


@dataclass(frozen=True)
class DecodedImage:
    """An upright 8-bit image and what the file said about itself."""

    pixels: np.ndarray  # (H, W) or (H, W, 3) uint8
    width: int  # upright, after EXIF orientation
    height: int
    format: str  # "JPEG" | "PNG" | "MPO" | "DICOM"
    mode: str  # Pillow mode of the file ("L", "I;16", "RGB", "CMYK", "P", ...); DICOM: photometric
    dicom: DicomInfo | None = None  # what a DICOM file's tags said
    warnings: tuple[str, ...] = ()  # how the file was read, where a person should know


def decode(data: bytes, max_pixels: int | None = None,
           target: tuple[int, int] | None = None) -> DecodedImage:
    """Decode JPEG/PNG/DICOM bytes into an upright 8-bit grayscale or RGB array.

    With `target` (the model input's (height, width)), a film far larger on both sides is
    decoded or reduced to half size (see PREPROCESSING_VERSION);
    `width` and `height` still give the file's upright size. The pixel count is checked
    from the header before any pixel is decoded, so a decompression bomb costs nothing.
    Raises ImageError subclasses only.
    """
    if not data:
        raise EmptyImageError()
    with _user_bytes():
        if looks_like_dicom(data):
            pixels, info = read_dicom(data, max_pixels)
            return DecodedImage(pixels=pixels, width=pixels.shape[1], height=pixels.shape[0],
                                format="DICOM", mode=info.photometric, dicom=info)
        img = _open(data, max_pixels)
        if img.format == "PNG":
            # Proved whole before any pixel is decoded, and decoded from the stored copy
            # that the check's inflate leaves (integrity.check_png): the same bytes, not
            # inflated twice.
            rebuilt = check_png(data, stored_up_to=STORED_PNG_BYTES)
            if rebuilt is not None:
                img = _open(rebuilt, max_pixels)
            # Decoded here, where a failure is the file's: Pillow's getexif() below loads a
            # PNG whose EXIF it has not met yet, and an error there (a row with an unknown
            # filter type) must not leave the rows it never decoded black, and scored.
            img.load()
        mode, image_format = img.mode, img.format
        if image_format in ("JPEG", "MPO") and is_lossless_jpeg(data):
            raise UnsupportedFormatError("Lossless JPEG")
        width, height = img.size
        orientation = _orientation(img)
        halve = _halve(width, height, target)
        notes: tuple[str, ...] = ()
        if image_format in ("JPEG", "MPO") and _plain_jpeg(img):
            # One strict libjpeg-turbo decode, at half scale when halving: the damage check
            # and the pixels. At full scale they are Pillow's own (both libjpeg-turbo with
            # its default slow integer DCT and fancy upsampling: equal on all 5,843 films
            # of the dataset), in half of Pillow's time.
            check_jpeg_scans(data)
            if halve:
                pixels = strict_jpeg_decode(data, min_height=-(-height // 2),
                                            min_width=-(-width // 2))
                # libjpeg rounds half sizes up; the last row or column would then stand for
                # one row of the film, not two: dropped, so every pixel is a 2x2 block.
                pixels = pixels[:height // 2, :width // 2]
            else:
                pixels = strict_jpeg_decode(data, min_height=height, min_width=width)
            pixels = pixels[:, :, 0] if pixels.shape[2] == 1 else pixels
            pixels = _transpose(pixels, orientation)
        else:
            if image_format != "PNG":  # a PNG is checked already, above
                _check_whole(img, data)
            significant = png_significant_bits(data) if mode.startswith("I;16") else None
            img.load()
            img = _reduce(img) if halve and image_format == "PNG" else img
            full, note = _16bit_range(img, significant)
            notes = (note,) if note else ()
            pixels = _transpose(_to_8bit_array(img, full), orientation)
        pixels = _one_channel_if_grey(pixels)
    if orientation in _SWAPS_SIDES:
        width, height = height, width
    return DecodedImage(pixels=pixels, width=width, height=height, format=image_format,
                        mode=mode, warnings=notes)


def _one_channel_if_grey(pixels: np.ndarray) -> np.ndarray:
    """An (H, W, 3) film whose three channels are equal everywhere (a grey film stored as
    colour: 5,840 of the dataset's 5,843 JPEGs) -> its one channel, (H, W); any other array
    as it is. Every later step gives the same results on it (the model input, resized per
    channel, is the same bytes; the checks read one channel or the channels' mean) and
    reads a third of the bytes: 2.7 -> 2.1 ms a 224 px film. A strided sample is compared
    first, so a colour film costs almost nothing here."""
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        return pixels
    step = max(1, int(np.sqrt(pixels.shape[0] * pixels.shape[1] / 4096)))
    sample = pixels[::step, ::step]
    if not (np.array_equal(sample[..., 0], sample[..., 1])
            and np.array_equal(sample[..., 1], sample[..., 2])):
        return pixels
    if np.array_equal(pixels[..., 0], pixels[..., 1]) and \
            np.array_equal(pixels[..., 1], pixels[..., 2]):
        return np.ascontiguousarray(pixels[..., 0])
    return pixels


def _halve(width: int, height: int, target: tuple[int, int] | None) -> bool:
    """Whether half the film keeps REDUCE_MARGIN times the input's larger side on both of
    its sides (so orientation does not matter)."""
    return target is not None and min(width, height) // 2 >= REDUCE_MARGIN * max(target)


def _plain_jpeg(img: Image.Image) -> bool:
    """Grey or YCbCr/RGB: what libjpeg-turbo turns into grey or RGB itself (CMYK it cannot)."""
    return img.mode in ("L", "RGB")


def _reduce(img: Image.Image, factor: int = 2) -> Image.Image:
    """A large PNG reduced by `factor` (box filter, whole blocks only) before any conversion,
    so a 49-megapixel film never becomes a full-size RGBA, uint32 or float copy. 16-bit grey,
    which Pillow's reduce does not take, is averaged in strips of rows."""
    if img.mode.startswith("I;16"):
        return _reduce_16bit(img, factor)
    if img.mode == "1" or (img.mode == "P" and "transparency" not in img.info
                           and _palette_is_gray(img)):
        img = img.convert("L")  # as _to_8bit_array would, before reducing
    elif img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    width, height = img.size
    return img.reduce(factor, box=(0, 0, width // factor * factor, height // factor * factor))


# A PNG whose image data inflates to at most this is decoded from its stored copy: a 16 MP
# 16-bit grey film, a 10 MP colour one. The copy is held beside the decoded film (a worker
# holds up to twice this more for a moment), so larger films are inflated twice instead.
STORED_PNG_BYTES = 32 << 20

_STRIP_ROWS = 256  # rows of a 16-bit film held as NumPy at once while reducing


def _reduce_16bit(img: Image.Image, factor: int) -> Image.Image:
    width, height = img.size
    out_w, out_h = width // factor, height // factor
    out = np.empty((out_h, out_w), dtype=np.uint16)
    rows = max(1, _STRIP_ROWS // factor) * factor
    for top in range(0, out_h * factor, rows):
        bottom = min(top + rows, out_h * factor)
        strip = np.asarray(img.crop((0, top, out_w * factor, bottom)), dtype=np.uint16)
        out[top // factor:bottom // factor] = _block_means_16bit(strip, factor)
    return Image.fromarray(out)  # uint16 -> "I;16"


def _block_means_16bit(strip: np.ndarray, factor: int) -> np.ndarray:
    """(H, W) uint16, both multiples of `factor` -> (H // factor, W // factor) uint16: the
    mean of each factor x factor block, rounded half up."""
    # Each block's sum, added up one strided view at a time in uint32 (room for 65,536
    # samples of 65,535): four times faster than a uint64 sum over reshaped axes; a shift
    # divides by a power of two (the largest sample's reduce: 15.1 -> 14.4 ms).
    count = factor * factor
    sums = strip[::factor, ::factor].astype(np.uint32)
    for down in range(factor):
        for across in range(factor):
            if down or across:
                sums += strip[down::factor, across::factor]
    sums += count // 2
    if count & (count - 1) == 0:
        sums >>= count.bit_length() - 1
    else:
        sums //= count
    return sums.astype(np.uint16)


@contextmanager
def _user_bytes() -> Iterator[None]:
    """Any failure while reading user bytes is the user's file, never a server error."""
    try:
        yield
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        # Pillow's own guard (over twice Image.MAX_IMAGE_PIXELS) fired before ours could.
        raise TooManyPixelsError(None, 2 * (Image.MAX_IMAGE_PIXELS or 0)) from exc
    except MemoryError as exc:
        raise TooManyPixelsError(None, None) from exc
    except Exception as exc:  # noqa: BLE001 - Pillow raises OSError, ValueError, SyntaxError,
        # struct.error, TypeError, IndexError... on hostile files: all mean "cannot be read"
        raise CorruptImageError(f"{type(exc).__name__}: {exc}") from exc


def _open(data: bytes, max_pixels: int | None) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        # Pillow's own guard fired first (over twice Image.MAX_IMAGE_PIXELS): the limit to
        # name is ours, when there is one.
        if max_pixels is not None:
            raise TooManyPixelsError(None, max_pixels) from exc
        raise
    except UnidentifiedImageError as exc:
        if data.startswith(_SIGNATURES):  # a JPEG or PNG by its first bytes, but broken
            raise CorruptImageError("unreadable header") from exc
        raise NotAnImageError() from exc
    if img.format not in SUPPORTED_FORMATS:
        raise UnsupportedFormatError(img.format)
    width, height = img.size
    if max_pixels is not None and width * height > max_pixels:
        raise TooManyPixelsError(width * height, max_pixels)
    frames = getattr(img, "n_frames", 1)
    if frames != 1 and img.format != "MPO":  # an animated PNG: which frame is the film?
        raise MultiFrameError(frames)
    if getattr(img, "custom_mimetype", None) == "image/apng":
        # One frame, but an animation's: Pillow draws it where its frame control chunk
        # says, which need not be the image the header and the image data describe.
        raise UnsupportedFormatError("Animated PNG (APNG)")
    return img


def _check_whole(img: Image.Image, data: bytes) -> None:
    """Refuse JPEGs that decode only by filling in what is missing (see integrity.py)."""
    if img.format in ("JPEG", "MPO"):  # MPO: libjpeg reads its first picture, the one scored
        check_jpeg(data)


# EXIF orientation -> the transpose that makes the image upright (as ImageOps.exif_transpose,
# which also rewrites the EXIF block and so fails on files with one malformed tag).
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


_SWAPS_SIDES = {5, 6, 7, 8}


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation; a missing, malformed or out-of-range one means upright (1)."""
    try:
        orientation = img.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 - unreadable EXIF says nothing about orientation
        return 1
    return orientation if isinstance(orientation, int) and orientation in _UPRIGHT else 1


def _transpose(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Make a decoded (H, W[, 3]) array upright, as Pillow's transpose would."""
    if orientation == 1:
        return pixels
    img = Image.fromarray(pixels).transpose(_UPRIGHT[orientation])
    return np.asarray(img, dtype=np.uint8)


# A 16-bit grey PNG without sBIT whose largest value fits in this many bits uses at most a
# quarter of its range: 12- or 14-bit detector data written unscaled, which over 0-65535
# would be a near-black film (a 12-bit one scored 0.995).
SMALL_RANGE_BITS = 14


def png_significant_bits(data: bytes) -> int | None:
    """The grey sample's significant bits from a PNG's sBIT chunk (before IDAT), or None."""
    position = len(b"\x89PNG\r\n\x1a\n")
    while position + 8 <= len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        kind = data[position + 4:position + 8]
        if kind in (b"IDAT", b"IEND"):
            return None
        if kind == b"sBIT" and length >= 1:
            bits = data[position + 8]
            return bits if 1 <= bits <= 16 else None
        position += 12 + length
    return None


def _16bit_range(img: Image.Image, significant: int | None) -> tuple[int, str | None]:
    """The value that is white in a 16-bit grey image, and a note when it is not 65535.

    PNG says samples are scaled to the full 16 bits and sBIT tells how many were
    significant; archives also write 12-bit values unscaled with sBIT 12. Both read right:
    with sBIT n, values under 2^n are unscaled n-bit data, larger ones scaled. Without sBIT,
    a film using at most SMALL_RANGE_BITS bits is taken as that many bits of data, and the
    answer says so."""
    if not img.mode.startswith("I;16"):
        return 65535, None
    top = int(img.getextrema()[1])
    if significant is not None:
        return (2 ** significant - 1, None) if top < 2 ** significant else (65535, None)
    used = max(top.bit_length(), 8)
    if used > SMALL_RANGE_BITS:
        return 65535, None
    return 2 ** used - 1, (f"The 16-bit PNG uses only {used} of its 16 bits and has no sBIT "
                           f"chunk: read as {used}-bit data (0 to {2 ** used - 1}).")


def _to_8bit_array(img: Image.Image, full: int = 65535) -> np.ndarray:
    """Any Pillow mode -> (H, W) uint8 for single-channel images, (H, W, 3) uint8 otherwise;
    `full` is the 16-bit grey value shown white (_16bit_range)."""
    if img.mode.startswith("I;16"):
        # 16-bit grayscale: scale 0..full to 0-255 (Pillow's own convert("L") clips at 255,
        # which turns almost every 16-bit X-ray white). Integer arithmetic in place, one
        # uint32 array: a 49-megapixel film never becomes float64 copies. (x * 255 + 32767)
        # // 65535 equals round(x * 255 / 65535) for every 16-bit x, as no x lands on .5.
        arr = np.asarray(img).astype(np.uint32)
        np.minimum(arr, full, out=arr)
        arr *= 255
        arr += full // 2
        arr //= full
        return arr.astype(np.uint8)
    if img.mode == "I":
        # 32-bit integer grayscale: scale its range (or 0-65535 when it fits) to 0-255.
        arr = np.asarray(img, dtype=np.float64)
        full = 65535.0 if img.mode.startswith("I;16") or arr.max() <= 65535 else float(arr.max())
        return np.round(np.clip(arr, 0, full) * (255.0 / full)).astype(np.uint8)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return np.round(scaled).astype(np.uint8)
    if img.mode in ("1", "L"):
        return np.asarray(img.convert("L"), dtype=np.uint8)
    if img.mode == "P" and img.info.get("transparency") is None and _palette_is_gray(img):
        return np.asarray(img.convert("L"), dtype=np.uint8)
    if "A" in img.mode or img.mode == "P" or "transparency" in img.info:
        # Transparent areas become black, the background of a radiograph, as a viewer
        # shows them over it: never the pixels under them, which nobody sees (grey with
        # alpha too: grey again after).
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        shown = Image.alpha_composite(black, rgba)
        return np.asarray(shown.convert("L" if img.mode == "LA" else "RGB"), dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _palette_is_gray(img: Image.Image) -> bool:
    palette = img.getpalette() or []
    triples = np.asarray(palette, dtype=np.int32).reshape(-1, 3)
    return bool(np.all(triples[:, 0] == triples[:, 1]) and np.all(triples[:, 1] == triples[:, 2]))


def crops_borders(version: str) -> bool:
    """Whether a model of preprocessing `version` (its card's input.preprocessing_version)
    sees films without their uniform borders. Raises ValueError for a version this module
    does not serve (app/contract/card.py refuses such a card before any film)."""
    if version not in SERVES_PREPROCESSING_VERSIONS:
        raise ValueError(f"preprocessing version {version!r} is not one of "
                         f"{SERVES_PREPROCESSING_VERSIONS}")
    return int(version) >= CROPS_BORDERS_FROM


def model_film(pixels: np.ndarray, version: str = PREPROCESSING_VERSION
               ) -> tuple[np.ndarray, Box]:
    """The part of a decoded (H, W) or (H, W, 3) uint8 film that a model of preprocessing
    `version` sees, and where it lies: from version 3 the film without its uniform borders
    (app/contract/borders.py; a view, not a copy), before it the whole film and
    Box(0, 0, H, W). What the app shows beside a heatmap, which is drawn on this film."""
    if crops_borders(version):
        return crop_borders(pixels)
    return pixels, Box(0, 0, pixels.shape[0], pixels.shape[1])


def to_model_input(pixels: np.ndarray, size: tuple[int, int], channels: int,
                   version: str = PREPROCESSING_VERSION) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 decoded film -> (height, width, channels) uint8 model input
    for a model of preprocessing `version` (its card's; this code's by default): its
    `model_film` resized. Training calls it on every film, augmented ones included, and the
    app on every upload, so both give a model the same input.

    `size` is (height, width) as the model card states it. Pillow's bilinear resize widens its
    kernel when shrinking (antialiasing), so a 2500 px original and the dataset's 224 px copy
    of it land on nearly the same 64x64 input. Raises ValueError for `channels` other than 1
    or 3 and for a version not served.
    """
    return resize_to_input(model_film(pixels, version)[0], size, channels)


def resize_to_input(film: np.ndarray, size: tuple[int, int], channels: int) -> np.ndarray:
    """The resize step of `to_model_input` alone, for a caller that already holds the
    `model_film` (the app's film step, which also shows it): (H, W) or (H, W, 3) uint8 ->
    (height, width, channels) uint8. Raises ValueError for `channels` other than 1 or 3."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    height, width = size
    gray = film.ndim == 2
    img = Image.fromarray(np.ascontiguousarray(film), mode="L" if gray else "RGB")
    if channels == 1 and not gray:
        img = img.convert("L")
    img = img.resize((width, height), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if channels == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return arr


def load_model_input(data: bytes, size: tuple[int, int], channels: int,
                     max_pixels: int | None = None,
                     version: str = PREPROCESSING_VERSION) -> np.ndarray:
    """Bytes straight to the model input of a model of preprocessing `version`; what
    training uses for every file on disk. Raises ImageError subclasses for the bytes."""
    return to_model_input(decode(data, max_pixels, target=size).pixels, size, channels,
                          version)


# Other formats, by their first bytes: refused without a decode (precheck).
_OTHER_FORMATS = ((b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"II*\x00", "TIFF"),
                  (b"MM\x00*", "TIFF"), (b"BM", "BMP"), (b"\x00\x00\x01\x00", "ICO"))


def precheck(data: bytes) -> None:
    """The refusals that need no decoder, for the server to make before a file reaches a
    decode worker: an empty file (EmptyImageError), a format we do not read recognised by
    its first bytes (UnsupportedFormatError), or text (NotAnImageError). The same answers
    `decode` gives these files; anything else passes to it."""
    if not data:
        raise EmptyImageError()
    if data.startswith(_SIGNATURES) or looks_like_dicom(data):
        return
    for signature, name in _OTHER_FORMATS:
        if data.startswith(signature):
            raise UnsupportedFormatError(name)
    head = data[:512]
    if all(32 <= byte < 127 or byte in b"\t\r\n" for byte in head):
        raise NotAnImageError()
