"""Sizes in bytes, read from and written for people: one parser, one formatter.

``parse_size`` reads what settings, Kubernetes and JupyterHub's spawners write (``4G``,
``512M``, ``2GiB``, ``1.5T``, a plain number of bytes); ``format_bytes`` writes what the CLI
and the catalog pages show (binary units, ``12.3 MiB``).
"""

from __future__ import annotations

UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str) -> int:
    """A size such as 4G, 512M, 2GiB or 1048576 in bytes; ValueError when it is not one."""
    clean = str(text).strip().upper().removesuffix("B").removesuffix("I")
    if clean and clean[-1] in UNITS:
        return int(float(clean[:-1]) * UNITS[clean[-1]])
    return int(float(clean))


def format_bytes(n: float) -> str:
    """``n`` bytes in the largest binary unit below it, up to GiB: ``512 B``, ``1.5 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
