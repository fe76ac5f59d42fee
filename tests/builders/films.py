"""Films built from dataset films the way scanners, archives and exports write them: the cases
of issue 17 (rendering and assessability). Each builder takes an (H, W) uint8 film (a
dataset film's pixels) and returns file bytes; nothing is read from or written to disk."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import (
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
)

from tests.builders.dicom import dicom_bytes


def gray_of(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def jpeg_of(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _save(ds: Dataset, *, file_format: bool = True, implicit: bool = False) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=file_format, implicit_vr=implicit,
               little_endian=True)
    return buffer.getvalue()


def edited(data: bytes, **tags) -> bytes:
    """The DICOM with tags set (a value of None deletes the tag)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    for keyword, value in tags.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return _save(ds)


def with_element(data: bytes, tag: int, vr: str, value) -> bytes:
    """The DICOM with one element added as `vr` (for tags whose VR is ambiguous)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.add_new(tag, vr, value)
    return _save(ds)


def with_raw_tag(data: bytes, tag: int, vr: str, raw: bytes) -> bytes:
    """The DICOM with one element's value written as raw bytes (NaN and such, which pydicom
    will not write from a number)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.add_new(tag, vr, raw.decode("ascii"))
    return _save(ds)


# --- display pipeline -----------------------------------------------------------------------

def twelve_bit_no_window(gray: np.ndarray) -> bytes:
    """12-bit data spanning about 300..3000, no window, no VOI LUT."""
    return dicom_bytes((gray.astype(np.uint16) * 10 + 300), bits=12)


def twelve_bits_in_16(gray: np.ndarray) -> bytes:
    """12-bit values in a container whose Bits Stored says 16."""
    return dicom_bytes(gray.astype(np.uint16) * 16, bits=16)


def voi_lut_16_bit_descriptor_12_bit_entries(gray: np.ndarray) -> bytes:
    """12-bit stored data; a VOI LUT Sequence whose descriptor says 16 bits per entry while
    its entries use 12 (0..4095), mapping the data onto the full 12-bit range."""
    stored = gray.astype(np.uint16) * 16  # 0..4080
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(stored, bits=12)))
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 16])
    item.add_new(0x00283006, "US", [min(v, 4095) for v in range(4096)])
    ds.VOILUTSequence = [item]
    return _save(ds)


def voi_lut(gray: np.ndarray, entries: np.ndarray, bits: int) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(gray)))
    item = Dataset()
    item.add_new(0x00283002, "US", [len(entries), 0, bits])
    item.add_new(0x00283006, "US", [int(v) for v in entries])
    ds.VOILUTSequence = [item]
    return _save(ds)


def presentation_inverse_on_monochrome2(gray: np.ndarray) -> bytes:
    """The film stored as its negative, MONOCHROME2, with Presentation LUT Shape INVERSE."""
    return edited(dicom_bytes(255 - gray), PresentationLUTShape="INVERSE")


def monochrome1_with_inverse(gray: np.ndarray) -> bytes:
    """MONOCHROME1 with the INVERSE shape the DX module requires of it: one inversion."""
    return edited(dicom_bytes(255 - gray, photometric="MONOCHROME1"),
                  PresentationLUTShape="INVERSE")


# --- 16-bit PNG -----------------------------------------------------------------------------

def png16_twelve_bit(gray: np.ndarray, sbit: int | None) -> bytes:
    """A 16-bit grey PNG holding 12-bit values (0..4080), with or without an sBIT chunk."""
    buffer = io.BytesIO()
    Image.fromarray(gray.astype(np.uint16) * 16).save(buffer, "PNG")
    data = buffer.getvalue()
    if sbit is None:
        return data
    body = bytes([sbit])
    chunk = struct.pack(">I", 1) + b"sBIT" + body + struct.pack(">I", zlib.crc32(b"sBIT" + body))
    end_of_ihdr = 8 + 25
    return data[:end_of_ihdr] + chunk + data[end_of_ihdr:]


# --- bare datasets and colour containers ----------------------------------------------------

def _without_file_meta(data: bytes) -> Dataset:
    bare = Dataset()
    bare.update(pydicom.dcmread(io.BytesIO(data)))
    return bare


def bare_dataset(gray: np.ndarray) -> bytes:
    """A dataset without preamble and file meta, implicit VR little endian (legal for older
    systems)."""
    buffer = io.BytesIO()
    _without_file_meta(dicom_bytes(gray)).save_as(buffer, enforce_file_format=False,
                                                  implicit_vr=True, little_endian=True)
    return buffer.getvalue()


def bare_compressed_dataset(gray: np.ndarray) -> bytes:
    """A bare dataset (explicit VR) whose pixel data is an encapsulated JPEG: without file
    meta, which codec wrote it is unknown."""
    buffer = pydicom.filebase.DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = False, True
    pydicom.filewriter.write_dataset(buffer, _without_file_meta(dicom_bytes(
        gray, syntax="jpeg-baseline")))
    return buffer.getvalue()


def colour_container(gray: np.ndarray, photometric: str, tint: int = 0) -> bytes:
    """The grey film as a colour secondary capture: RGB or YBR_FULL_422 (native), with equal
    channels, or with `tint` added to red (a truly coloured picture)."""
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(gray, modality="OT")))
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.PhotometricInterpretation = photometric
    rgb = np.dstack([gray] * 3).astype(np.int16)
    rgb[..., 0] += tint
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    if photometric == "RGB":
        ds.PixelData = rgb.tobytes()
    else:  # YBR_FULL_422: Y0 Y1 Cb Cr for each pair of pixels (PS3.3 C.7.6.3.1.2)
        y = rgb.astype(np.float64) @ [0.299, 0.587, 0.114]
        cb = 128 + rgb.astype(np.float64) @ [-0.168736, -0.331264, 0.5]
        cr = 128 + rgb.astype(np.float64) @ [0.5, -0.418688, -0.081312]
        y, cb, cr = (np.clip(np.round(c), 0, 255).astype(np.uint8) for c in (y, cb, cr))
        pairs = np.stack([y[:, 0::2], y[:, 1::2], cb[:, 0::2], cr[:, 0::2]], axis=-1)
        ds.PixelData = pairs.tobytes()
    return _save(ds)


# --- compressed frames ----------------------------------------------------------------------

def _segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def lossless_jpeg(pixels: np.ndarray, precision: int = 8, predictor: int = 1) -> bytes:
    """(H, W) unsigned -> a lossless JPEG (process 14, SOF3), one component, one Huffman
    table of 17 five-bit codes. No library here writes one; pylibjpeg decodes it."""
    x = pixels.astype(np.int64)
    ra = np.zeros_like(x)
    ra[:, 1:] = x[:, :-1]
    rb = np.zeros_like(x)
    rb[1:, :] = x[:-1, :]
    rc = np.zeros_like(x)
    rc[1:, 1:] = x[:-1, :-1]
    pred = {1: ra, 2: rb, 3: rc, 4: ra + rb - rc, 5: ra + ((rb - rc) >> 1),
            6: rb + ((ra - rc) >> 1), 7: (ra + rb) >> 1}[predictor].copy()
    pred[0, :] = ra[0, :]
    pred[1:, 0] = rb[1:, 0]
    pred[0, 0] = 1 << (precision - 1)
    diff = (x - pred) % 65536
    diff = np.where(diff >= 32768, diff - 65536, diff).ravel()
    magnitude = np.abs(diff)
    category = np.zeros_like(magnitude)
    category[magnitude > 0] = np.floor(np.log2(magnitude[magnitude > 0])).astype(np.int64) + 1
    extra_len = np.where(category == 16, 0, category)
    extra = np.where(diff >= 0, diff, diff - 1) & ((1 << extra_len) - 1)
    value, length = (category << extra_len) | extra, 5 + extra_len
    bits = ((value[:, None] >> np.arange(31, -1, -1)[None, :]) & 1).astype(np.uint8)
    stream = bits[np.arange(32)[None, :] >= (32 - length)[:, None]]
    stream = np.concatenate([stream, np.ones((-len(stream)) % 8, np.uint8)])
    data = np.packbits(stream).tobytes().replace(b"\xff", b"\xff\x00")
    height, width = pixels.shape
    dht = _segment(0xC4, bytes([0x00, 0, 0, 0, 0, 17] + [0] * 11) + bytes(range(17)))
    sof = _segment(0xC3, struct.pack(">BHHB", precision, height, width, 1) + b"\x01\x11\x00")
    sos = _segment(0xDA, bytes([1, 1, 0x00, predictor, 0, 0]))
    return b"\xff\xd8" + dht + sof + sos + data + b"\xff\xd9"


def extended_jpeg(pixels: np.ndarray, **params) -> bytes:
    """An 8-bit JPEG of the extended sequential process (SOF1): Pillow's baseline file with
    its frame marker changed, which every extended decoder reads the same."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95, **params)
    data = bytearray(buffer.getvalue())
    at = data.index(b"\xff\xc0") if b"\xff\xc0" in data else data.index(b"\xff\xc2")
    if data[at + 1] == 0xC0:
        data[at + 1] = 0xC1
    return bytes(data)


def encapsulated(pixels: np.ndarray, frame: bytes, syntax, bits: int = 8) -> bytes:
    """A DX DICOM of `pixels`' size whose one frame is `frame`, under `syntax`."""
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(pixels.astype(np.uint16 if bits > 8
                                                              else np.uint8), bits=bits)))
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    return _save(ds)


SYNTAXES = {"jpeg-extended": JPEGExtended12Bit, "jpeg-lossless": JPEGLossless,
            "jpeg-lossless-sv1": JPEGLosslessSV1, "jpeg-baseline": JPEGBaseline8Bit}


def frame_of(data: bytes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    return next(generate_frames(ds.PixelData, number_of_frames=1))


def cut(frame: bytes, keep: float = 0.35) -> bytes:
    """The frame cut short, with an end-of-image marker so it still looks well formed."""
    return frame[: int(len(frame) * keep)] + b"\xff\xd9"


def with_frame(data: bytes, frame: bytes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.PixelData = encapsulate([frame])
    return _save(ds)


def poisoning_jpeg_extended(gray: np.ndarray, claimed: int = 30000) -> bytes:
    """A JPEG-Extended DICOM of a 512x512 film whose frame header claims claimed x claimed
    (Rows/Columns say 512): what once exhausted a decode worker's memory."""
    film = np.asarray(Image.fromarray(gray).resize((512, 512)))
    frame = bytearray(extended_jpeg(film))
    sof = frame.index(b"\xff\xc1")
    frame[sof + 5:sof + 9] = struct.pack(">HH", claimed, claimed)
    return encapsulated(film, bytes(frame), JPEGExtended12Bit)
