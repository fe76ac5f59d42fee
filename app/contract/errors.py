"""Film errors: why a film was not turned into model input. One vocabulary for every door.

Each error carries a short `code` (machine-readable, stable: it is part of the API, the CSV
and, later, DICOM failure statuses) and a `message` for the person who sent the film. How an
error is answered (an HTTP status, a DICOM status) is the caller's layer's business: this
module imports nothing beyond the standard library, so it can be raised in a decode worker,
in training and in the app alike, and pickled between processes (every constructor argument
is passed to `Exception.__init__` for that).
"""

from __future__ import annotations


def size_text(n_bytes: int) -> str:
    """A byte limit for people, never rounded to 0: '20 MiB', '4 KiB', '512 bytes'."""
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n_bytes >= size:
            return f"{n_bytes / size:.3g} {unit}"
    return f"{n_bytes} bytes"


def pixels_text(pixels: int) -> str:
    """'50 million pixels', '10,000 pixels': never '0 million'."""
    if pixels >= 1_000_000:
        return f"{pixels / 1e6:.3g} million pixels"
    return f"{pixels:,} pixels"


class ImageError(ValueError):
    """Base class for films that cannot be turned into model input: never scored."""

    code = "bad_image"

    @property
    def message(self) -> str:
        return "The image could not be processed."


class EmptyImageError(ImageError):
    code = "empty_file"

    @property
    def message(self) -> str:
        return "The uploaded file is empty."


class NotAnImageError(ImageError):
    code = "not_an_image"

    @property
    def message(self) -> str:
        return ("The file is not an image we can read. Upload a chest X-ray as JPEG, PNG or "
                "DICOM.")


class UnsupportedFormatError(ImageError):
    code = "unsupported_format"

    def __init__(self, image_format: str | None) -> None:
        super().__init__(image_format)
        self.image_format = image_format

    @property
    def message(self) -> str:
        return f"{self.image_format or 'This'} images are not supported. Upload a JPEG, PNG or " \
               "DICOM."


class CorruptImageError(ImageError):
    """Undecodable, or decodable only by guessing what is missing: never scored."""

    code = "corrupt_image"

    @property
    def message(self) -> str:
        return ("The image is damaged or truncated and was not scored: part of the film is "
                "missing or unreadable. Upload the complete original file.")


class DamagedImageError(CorruptImageError):
    """Readable, but the file does not hold the whole image it declares (integrity checks)."""


class UnsupportedEncodingError(ImageError):
    """An intact file whose pixels are in an encoding the decoder does not read (a transfer
    syntax such as JPEG XL, float pixel data, ...): not damaged, and sending it again will
    not help; exporting it in another encoding will. `feature` names what is not read, in
    a few words a person can act on ("transfer syntax JPEG XL (1.2.840.10008.1.2.4.112)"),
    `brief` the same in at most 42 characters, for a DICOM Error Comment (an LO of 64 with
    the code before it): "transfer syntax 1.2.840.10008.1.2.4.112". `syntax` is the
    transfer syntax's UID when that is what the decoder does not read."""

    code = "unsupported_encoding"

    def __init__(self, feature: str, brief: str | None = None,
                 syntax: str | None = None) -> None:
        super().__init__(feature, brief, syntax)
        self.feature = feature
        self.syntax = syntax
        self.brief = (brief or (f"transfer syntax {syntax}" if syntax else feature))[:42]

    @property
    def message(self) -> str:
        return (f"The file is intact, but its pixels are stored as {self.feature}, which this "
                "server does not read, so it was not scored. Export the film again "
                "uncompressed or as JPEG baseline, JPEG lossless, JPEG-LS, JPEG 2000 or RLE.")


class MultiFrameError(ImageError):
    code = "multi_frame"

    def __init__(self, frames: int) -> None:
        super().__init__(frames)
        self.frames = frames

    @property
    def message(self) -> str:
        return f"The image has {self.frames} frames (an animation). Upload a single X-ray."


class TooManyPixelsError(ImageError):
    """Over the pixel limit; `pixels` or `limit` is None where the decoder did not say."""

    code = "image_too_large"

    def __init__(self, pixels: int | None, limit: int | None) -> None:
        super().__init__(pixels, limit)
        self.pixels = pixels
        self.limit = limit

    @property
    def message(self) -> str:
        size = f"has {pixels_text(self.pixels)}" if self.pixels else "is too large to decode"
        limit = f"; the limit is {pixels_text(self.limit)}" if self.limit else ""
        return f"The image {size}{limit}."


class DicomNotScoredError(ImageError):
    """A readable DICOM that must not be scored (CT, lateral view, no pixels, ...); `reason`
    is a short code (the error code is `dicom_<reason>`), `text` names the deciding tag."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(reason, text)
        self.reason = reason
        self.text = text

    @property
    def code(self) -> str:  # type: ignore[override]
        return f"dicom_{self.reason}"

    @property
    def message(self) -> str:
        return self.text


class DecodeBudgetError(ImageError):
    """The film took longer than the per-image decode budget: stopped, never scored."""

    code = "decode_too_slow"

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds

    @property
    def message(self) -> str:
        return (f"The image took longer than {self.seconds:g} s to decode and was stopped. "
                "Export the film again as a plain JPEG or PNG.")


class WorkerLostError(ImageError):
    """The worker decoding the film died (killed for memory, or crashed): not scored."""

    code = "image_too_large"

    @property
    def message(self) -> str:
        return "The image needed more memory to decode than the server allows per film."


class DicomRescaleError(ImageError):
    """Rescale Slope or Intercept (the modality LUT) that no film can be computed from: 0,
    NaN, infinite, or so large that the film's values overflow."""

    code = "dicom_unusable_rescale"

    def __init__(self, tag: str, value: str) -> None:
        super().__init__(tag, value)
        self.tag = tag
        self.value = value

    @property
    def message(self) -> str:
        return (f"{self.tag} is {self.value}: the stored pixel values cannot be turned into "
                "the film's values, so it was not scored. Export the film again from the "
                "modality or the archive.")


class MissingFileMetaError(ImageError):
    """A bare DICOM dataset (no preamble, no file meta) whose pixels the standard's default
    transfer syntax does not decode: which codec wrote them is unknown."""

    code = "dicom_no_file_meta"

    @property
    def message(self) -> str:
        return ("The DICOM file has no file meta information (no Transfer Syntax UID, "
                "0002,0010), and its pixel data cannot be read as the standard's default "
                "(implicit VR little endian, uncompressed). Export it again as a DICOM Part 10 "
                "file.")


class RequestBudgetError(ImageError):
    """The film's request ran out of its time budget before the film's turn: not scored,
    not damaged either; send it again."""

    code = "request_too_slow"

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds

    @property
    def message(self) -> str:
        return (f"Not scored: the request's {self.seconds:g} s budget ran out before this "
                "file's turn. Send it again, or send fewer files at once.")


class FileTooLargeError(ImageError):
    """One file of a worklist request over the per-file byte limit: its bytes were read past
    and dropped, never held, and the request's other files go on (a whole body over its
    limit is the request's error, app/errors.py UploadTooLargeError)."""

    code = "file_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit

    @property
    def message(self) -> str:
        return f"The file is larger than the {size_text(self.limit)} upload limit."
