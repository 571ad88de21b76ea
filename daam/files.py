"""A user's file as bytes, from a path or the bytes themselves: shared by the image and audio inputs."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError

MAX_FILE_BYTES = 256 * 2**20  # the app caps uploads far lower; this guards library callers


def file_bytes(source, kind: str) -> bytes:
    """The file's bytes; an InputError naming the problem for a missing, empty, huge or unreadable source."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"no {kind} file at {path.name!r}")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InputError(f"the {kind} file is {path.stat().st_size / 2**20:.0f} MB; the limit is "
                             f"{MAX_FILE_BYTES / 2**20:.0f} MB")
        data = path.read_bytes()
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        raise InputError(f"cannot read {kind} data from a {type(source).__name__}")
    if not data:
        raise InputError(f"the {kind} file is empty")
    return data
