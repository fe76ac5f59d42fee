"""How deep a DICOM data set's sequences nest, counted from its bytes without recursion.

pydicom reads a sequence by recursing into its items; a private sequence nested a few
hundred levels deep (200 delimited levels, about 2 KB) exhausts Python's recursion limit
there, and each later step that walks the data set (copying it, writing it) would again.
So the doors count the depth first, in a loop, and refuse a data set nested deeper than
MAX_SEQUENCE_DEPTH before pydicom sees it. Real headers nest a few levels (an SR's content
tree of TID 1500 about six); pydicom reads 100 levels without trouble.

Counted as pydicom reads: an element of VR SQ, of undefined length, or, where the VR is
not given (implicit VR, or UN), whose value starts with an Item tag, opens a sequence; the
content of a UN sequence of undefined length is implicit VR (PS3.5 6.2.2). Encapsulated
Pixel Data's fragments are skipped. A data set that is malformed in any other way is left
to pydicom: the count stops where the bytes stop making sense.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset, read_preamble
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

MAX_SEQUENCE_DEPTH = 32

_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
# Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 Table 7.1-1).
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})


class NestingTooDeepError(ValueError):
    """The data set's sequences nest deeper than the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit

    @property
    def message(self) -> str:
        return f"sequences nested deeper than {self.limit} levels"


@dataclass
class _Open:
    sequence: bool  # a sequence, or one of its items
    end: int | None  # where its value ends; None: at its delimiter
    implicit: bool  # how the elements inside it are encoded


def check_file_nesting(data: bytes) -> None:
    """`check_nesting` of a Part 10 file's data set, in the transfer syntax its file meta
    names; nothing for bytes without the preamble or readable file meta (pydicom guesses
    their encoding, and will say what it makes of them)."""
    if data[128:132] != b"DICM":
        return
    try:
        fp = DicomBytesIO(data)
        read_preamble(fp, False)
        meta = read_dataset(fp, is_implicit_VR=False, is_little_endian=True,
                            stop_when=lambda tag, vr, length: tag.group != 2)
    except Exception:  # noqa: BLE001 - not for us to judge: the whole read will say
        return
    syntax = meta.get("TransferSyntaxUID")
    check_nesting(data, fp.tell(), implicit=syntax == ImplicitVRLittleEndian,
                  little=syntax != ExplicitVRBigEndian)


def check_nesting(data: bytes | memoryview, start: int = 0, *, implicit: bool = False,
                  little: bool = True, limit: int = MAX_SEQUENCE_DEPTH) -> None:
    """Raise NestingTooDeepError when the data set that begins at `start` in `data`, encoded
    as `implicit` VR and `little` endian, nests sequences deeper than `limit`."""
    order = "<" if little else ">"
    head = struct.Struct(order + "HHI")  # tag and 4-byte length (implicit VR, items)
    long_length, short_length = struct.Struct(order + "I"), struct.Struct(order + "H")
    item = struct.pack(order + "HH", 0xFFFE, 0xE000)
    opened: list[_Open] = []
    depth, position, size = 0, start, len(data)
    while position + 8 <= size:
        while opened and opened[-1].end is not None and position >= opened[-1].end:
            depth -= opened.pop().sequence
        group, element, length = head.unpack_from(data, position)
        tag = group << 16 | element
        if group == 0xFFFE:
            position += 8
            if tag == _ITEM:
                encoding = opened[-1].implicit if opened else implicit
                opened.append(_Open(False, None if length == _UNDEFINED else position + length,
                                    encoding))
            elif tag in (_ITEM_END, _SEQUENCE_END):
                if not opened or opened[-1].sequence != (tag == _SEQUENCE_END):
                    return  # a delimiter out of place: pydicom will say what it makes of it
                depth -= opened.pop().sequence
            continue
        inside = opened[-1].implicit if opened else implicit
        if inside:
            vr, value = None, position + 8
        else:
            vr = bytes(data[position + 4:position + 6])
            if vr in _LONG_VRS:
                (length,) = long_length.unpack_from(data, position + 8)
                value = position + 12
            else:
                (length,) = short_length.unpack_from(data, position + 6)
                value = position + 8
        if tag == _PIXEL_DATA and length == _UNDEFINED:
            position = _after_fragments(data, value, head)
            continue
        starts_items = bytes(data[value:value + 4]) == item
        if vr == b"SQ" or length == _UNDEFINED or (vr in (None, b"UN") and starts_items):
            depth += 1
            if depth > limit:
                raise NestingTooDeepError(limit)
            opened.append(_Open(True, None if length == _UNDEFINED else value + length,
                                inside or vr == b"UN"))
            position = value
            continue
        position = value + length


def _after_fragments(data: bytes | memoryview, position: int, head: struct.Struct) -> int:
    """Past encapsulated Pixel Data: its items (offset table, fragments) to its delimiter."""
    while position + 8 <= len(data):
        group, element, length = head.unpack_from(data, position)
        position += 8
        if (group << 16 | element) == _SEQUENCE_END or length == _UNDEFINED:
            return position
        position += length
    return position
