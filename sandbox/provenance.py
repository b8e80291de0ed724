"""What a submission from a kernel says about where it came from (sent by ``sandbox.submit``).

* the notebook the kernel belongs to (``JPY_SESSION_NAME``, set by jupyter_server): its name,
  the SHA-256 and size of the file as last saved, and its content. A notebook larger than
  :data:`MAX_NOTEBOOK` is sent without its outputs (its code is what a re-run needs; the digest
  stays the saved file's), and one still larger with its digest only;
* the environment: every installed distribution as ``name==version``, sorted, and the SHA-256
  of that list (two kernels with the same digest have the same packages);
* the datasets, versions and tables the kernel read through the sandbox API
  (:func:`sandbox.api.reads`).

Everything is bounded, so the whole fits the submission service's 1 MiB request body.
The service stores it beside the submission (``leaderboard/provenance.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path

MAX_NOTEBOOK = 640 * 1024  # bytes of notebook content sent (JSON text)
MAX_PACKAGES = 2000
MAX_PACKAGE_TEXT = 200


def packages() -> list[str]:
    """Every distribution importable in this kernel as ``name==version``, sorted, without repeats."""
    from importlib import metadata

    seen = set()
    for dist in metadata.distributions():
        name = (dist.metadata.get("Name") or "").strip()
        if name:
            seen.add(f"{name}=={dist.version}"[:MAX_PACKAGE_TEXT])
    return sorted(seen, key=str.lower)[:MAX_PACKAGES]


def packages_sha256(listing: list[str]) -> str:
    return hashlib.sha256("\n".join(listing).encode("utf-8")).hexdigest()


def notebook_path() -> Path | None:
    """The notebook of this kernel's session, if it has one and it is a file this account can read."""
    name = os.environ.get("JPY_SESSION_NAME")
    if not name:
        return None
    path = Path(name)
    candidates = [path] if path.is_absolute() else [Path.cwd() / path.name, Path.home() / path]
    return next((p for p in candidates if p.is_file()), None)


def _without_outputs(raw: bytes) -> bytes | None:
    try:
        nb = json.loads(raw)
        for cell in nb.get("cells", []):
            if cell.get("cell_type") == "code":
                cell["outputs"], cell["execution_count"] = [], None
        return json.dumps(nb, ensure_ascii=False, indent=1).encode("utf-8")
    except (ValueError, AttributeError, TypeError):
        return None


def notebook(path: Path) -> dict:
    raw = path.read_bytes()
    doc = {"name": path.name[:255], "sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)}
    if len(raw) <= MAX_NOTEBOOK:
        content, stripped = raw, False
    else:
        content, stripped = _without_outputs(raw), True
    if content is not None and len(content) <= MAX_NOTEBOOK:
        try:
            doc["content"] = content.decode("utf-8")
            doc["outputs_stripped"] = stripped
        except UnicodeDecodeError:
            pass
    return doc


def collect() -> dict:
    """The provenance of a submission made now from this process."""
    from sandbox import api

    listing = packages()
    out: dict = {
        "packages": listing,
        "packages_sha256": packages_sha256(listing),
        "python": sys.version.split()[0],
        "reads": api.reads(),
    }
    path = notebook_path()
    if path is not None:
        with contextlib.suppress(OSError):
            out["notebook"] = notebook(path)
    return out
