"""The SHA-256 of a file, read in pieces: how published tables, kept submissions and backups
are checked, so that a file's digest means the same wherever it is compared."""

from __future__ import annotations

import hashlib
import os

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes, read 1 MiB at a time (never the whole file in memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
