"""Starter notebooks handed out into a contestant's home: :func:`copy_starter_notebooks`.

A home belongs to its contestant, who may put anything in it, links included: a link
``~/getting_started.ipynb -> /etc/ld.so.preload`` or ``~/.contesthub -> <private root>``.
So this code never runs with more rights than the home's owner has: in secure mode the hub
runs it as the contestant's own Unix account, in a child process (``python -I -m hub.starters
HOME``, see hub/sandboxes.py), as Zero to JupyterHub's postStart runs it in the user's own pod
(config/kubernetes/z2jh-values.yaml). And it refuses links itself: every file is opened
relative to the home's descriptor with ``O_NOFOLLOW``, and created with ``O_CREAT | O_EXCL``
(which never follows a link, dangling or not), so a link where a notebook or the record would
go is left alone, untouched, and reported.

``~/.contesthub/starters.json`` records what was handed out: a notebook the contestant deleted
or renamed stays gone, one added to the platform later still arrives.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import json
import os
import secrets
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

RECORD_DIR, RECORD = ".contesthub", "starters.json"
MAX_RECORD = 1 << 20  # the record is a short list of names; a larger file is not ours


def starters_dir() -> Path:
    """``sandbox/notebooks``, found without importing ``sandbox`` (this runs in a small child)."""
    spec = importlib.util.find_spec("sandbox")
    if spec is None or spec.origin is None:
        raise RuntimeError("the sandbox package is not importable: no starter notebooks")
    return Path(spec.origin).resolve().parent / "notebooks"


@dataclass
class Handout:
    """What one run did: notebooks copied, and paths refused because they are links (or not files)."""

    copied: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def _open_dir(name: str, dir_fd: int | None = None) -> int:
    """A folder's descriptor, never through a link (ELOOP / ENOTDIR when ``name`` is one)."""
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def _read_record(home_fd: int) -> set[str] | None:
    """Names already handed out; None when the record's folder or file is a link (refused)."""
    try:
        fd = _open_dir(RECORD_DIR, home_fd)
    except FileNotFoundError:
        return set()
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return None
        raise
    try:
        f = os.open(RECORD, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
    except FileNotFoundError:
        return set()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise
    finally:
        os.close(fd)
    with os.fdopen(f, "rb") as fh:
        try:
            names = json.loads(fh.read(MAX_RECORD + 1)[:MAX_RECORD])
        except ValueError:
            return set()
    return {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()


def _write_record(home_fd: int, names: set[str]) -> bool:
    """Write the record atomically (temporary name, rename); False when its folder is a link."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(RECORD_DIR, 0o700, dir_fd=home_fd)
    try:
        fd = _open_dir(RECORD_DIR, home_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return False
        raise
    try:
        tmp = f".{RECORD}.{secrets.token_hex(4)}.tmp"
        _create(tmp, json.dumps(sorted(names)).encode("utf-8"), fd)
        # rename replaces whatever is at RECORD (a link included) without following it
        os.replace(tmp, RECORD, src_dir_fd=fd, dst_dir_fd=fd)
        return True
    finally:
        os.close(fd)


def _create(name: str, data: bytes, dir_fd: int, mode: int = 0o644) -> None:
    """A new file ``name`` in ``dir_fd`` with ``data``; never over anything that exists, never through a link."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=dir_fd)
        raise


def copy_starter_notebooks(home: Path, starters: Path | None = None) -> Handout:
    """Copy each starter notebook into ``home`` once; never overwrite, bring back, or follow a link.

    Run it as the home's owner (it changes no owner or mode): in secure mode the hub does so
    through :func:`main` in a child process with the contestant's uid and groups.
    """
    starters = starters or starters_dir()
    out = Handout()
    home_fd = _open_dir(str(home))
    try:
        given = _read_record(home_fd)
        if given is None:
            out.refused.append(f"{RECORD_DIR}/{RECORD}")
        handed = set(given or ())
        for src in sorted(starters.glob("*.ipynb")):
            if src.name in handed:
                continue
            try:
                _create(src.name, src.read_bytes(), home_fd)
            except FileExistsError:  # the contestant's own file, or a link: left alone
                st = os.stat(src.name, dir_fd=home_fd, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    out.refused.append(src.name)
                    continue  # not recorded: once the link is gone, the notebook arrives
            else:
                out.copied.append(src.name)
            handed.add(src.name)
        if given is not None and handed != given and not _write_record(home_fd, handed):
            out.refused.append(f"{RECORD_DIR}/{RECORD}")
    finally:
        os.close(home_fd)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -I -m hub.starters HOME``: hand out the starters, print what was done as JSON."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -I -m hub.starters HOME", file=sys.stderr)
        return 2
    done = copy_starter_notebooks(Path(args[0]))
    print(json.dumps({"copied": done.copied, "refused": done.refused}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
