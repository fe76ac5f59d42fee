"""Decoders talk about the files they read: python-multipart quotes bytes of malformed
bodies, Pillow quotes EXIF tags, pydicom quotes tag values it finds malformed (a body part,
a date: possibly a patient's). Nothing derived from an upload is logged, so the serving
processes silence them."""

from __future__ import annotations

import logging
import warnings


def silence_decoder_chatter() -> None:
    for name in ("python_multipart", "pydicom"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # pynetdicom logs every association and request at INFO (three lines a film); its
    # warnings and errors (a rejected association, an aborted one) stay.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    for module in ("PIL", "pydicom"):
        warnings.filterwarnings("ignore", module=module)
