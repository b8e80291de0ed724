#!/usr/bin/env python3
"""The two commands of the quick start, and nothing a newcomer has to install by hand.

    python3 dev.py up      # set up, build the demo data if missing, start the platform
    python3 dev.py test    # set up, then ruff and the whole test suite

Set-up is the same for both and is safe to repeat: it creates ``.venv`` with the Python
running this script (3.11 or newer), installs the project with the pinned versions in
``requirements.lock``, installs configurable-http-proxy into ``node_modules`` with npm (never
globally), and skips each step whose inputs have not changed since it last succeeded.
``test`` also installs Chromium and a CJK font for the browser tests from the system's
packages (``apt-get``, only as root and only if they are missing).
``python3 dev.py bench NAME`` runs a benchmark from ``benchmarks/``; ``python3 dev.py lock``
re-pins the dependencies after pyproject.toml changed.

Only the standard library is used here, so the script runs on a fresh machine.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
PY = BIN / "python"
LOCK = ROOT / "requirements.lock"


def say(msg: str) -> None:
    print(f"\033[1m[dev]\033[0m {msg}", flush=True)


def run(*cmd: str | os.PathLike, **kw) -> None:
    result = subprocess.run([str(c) for c in cmd], cwd=ROOT, **kw)
    if result.returncode:
        sys.exit(result.returncode)


def digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes() if p.exists() else b"-")
    return h.hexdigest()


def step_done(stamp: Path, key: str) -> bool:
    return stamp.exists() and stamp.read_text() == key


def setup_python() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 -- dev.py runs under whatever python3 the machine has
        sys.exit(f"contesthub needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not PY.exists():
        say(f"creating .venv with Python {sys.version.split()[0]}")
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    stamp, key = VENV / ".contesthub-installed", digest(ROOT / "pyproject.toml", LOCK)
    if step_done(stamp, key):
        return
    say("installing Python dependencies (pinned in requirements.lock)")
    run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    constraints = ["-c", str(LOCK)] if LOCK.exists() else []
    run(PY, "-m", "pip", "install", "--quiet", *constraints, "-e", ".[dev]")
    stamp.write_text(key)


def setup_node() -> None:
    stamp, key = (
        ROOT / "node_modules" / ".contesthub-installed",
        digest(ROOT / "package.json", ROOT / "package-lock.json"),
    )
    if step_done(stamp, key):
        return
    npm = shutil.which("npm")
    if not npm:
        sys.exit("npm was not found: install Node.js (it provides npm), then run this again")
    say("installing configurable-http-proxy into node_modules (npm ci)")
    run(
        npm, "ci" if (ROOT / "package-lock.json").exists() else "install", "--no-audit", "--no-fund", "--loglevel=error"
    )
    stamp.write_text(key)


def setup() -> None:
    setup_python()
    setup_node()


BROWSER_PACKAGES = ("chromium", "fonts-wqy-microhei")  # the browser tests' Chromium and a CJK font
BROWSER_FILES = (Path("/usr/bin/chromium"), Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"))


def setup_browser() -> None:
    """Chromium and a CJK font for the browser tests, from the system's packages (root + apt only)."""
    if all(f.exists() for f in BROWSER_FILES):
        return
    stamp, key = VENV / ".contesthub-browser", " ".join(BROWSER_PACKAGES)
    apt = shutil.which("apt-get")
    if step_done(stamp, key) or not apt or os.geteuid() != 0:
        return  # tried already, or cannot: the browser tests say why they skip
    say(f"installing {', '.join(BROWSER_PACKAGES)} for the browser tests (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = {"stdout": subprocess.DEVNULL, "env": env}
    if (
        subprocess.run([apt, "-qq", "update"], **quiet).returncode
        or subprocess.run(
            [apt, "-qq", "install", "-y", "--no-install-recommends", *BROWSER_PACKAGES], **quiet
        ).returncode
    ):
        say("apt-get could not install them; the browser tests will be skipped")
        return
    stamp.write_text(key)


def build_demo_data() -> None:
    say("building the demo datasets (skipped where already up to date)")
    run(BIN / "contesthub", "datasets", "build")


def main(argv: list[str]) -> None:
    cmd, rest = (argv[0], argv[1:]) if argv else ("help", [])
    os.environ["PATH"] = f"{BIN}{os.pathsep}{ROOT / 'node_modules' / '.bin'}{os.pathsep}{os.environ['PATH']}"
    if cmd == "up":
        setup()
        build_demo_data()
        os.execv(BIN / "contesthub", [str(BIN / "contesthub"), "up", *rest])
    elif cmd == "test":
        setup()
        setup_browser()
        say("ruff check")
        run(BIN / "ruff", "check", ".")
        say("pytest")
        result = subprocess.run([str(BIN / "pytest"), *rest], cwd=ROOT)
        sys.exit(result.returncode)
    elif cmd == "bench":
        setup()
        if not rest:
            sys.exit("usage: python3 dev.py bench NAME [ARGS]   (NAME: a file in benchmarks/ without .py)")
        os.execv(PY, [str(PY), str(ROOT / "benchmarks" / f"{rest[0]}.py"), *rest[1:]])
    elif cmd == "lock":
        setup()
        frozen = subprocess.run(
            [str(PY), "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, check=True
        ).stdout
        LOCK.write_text("# Pinned by `python3 dev.py lock`; used as pip constraints by `python3 dev.py`.\n" + frozen)
        say(f"wrote {LOCK.name}")
    else:
        print(__doc__)
        sys.exit(0 if cmd in ("help", "-h", "--help") else 2)


if __name__ == "__main__":
    main(sys.argv[1:])
