#!/usr/bin/env python3
"""The two commands of the quick start, and nothing a newcomer has to install by hand.

    python3 dev.py up      # set up, build the demo data if missing, start the platform
    python3 dev.py test    # set up, then ruff and the whole test suite

Set-up is the same for both and is safe to repeat: it creates ``.venv`` with the Python
running this script (3.11 or newer), installs the project with the pinned versions in
``requirements.lock``, installs configurable-http-proxy into ``node_modules`` with npm (never
globally), and skips each step whose inputs have not changed since it last succeeded.
``test`` also installs Chromium, a CJK font and libfaketime for the tests from the system's
packages (``apt-get``, only as root and only if they are missing), and after the whole suite
runs the tests whose rules depend on dates again with every clock moved years ahead.
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


# The browser tests' Chromium and a CJK font; libfaketime for the date-bomb pass.
TEST_PACKAGES = ("chromium", "fonts-wqy-microhei", "faketime")
TEST_FILES = (
    Path("/usr/bin/chromium"),
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/bin/faketime"),
)
# The date-bomb pass: the tests whose rules depend on dates run again with the clock of every
# process they start moved years ahead (libfaketime), so a test or a demo that only works
# around today fails the day it is written, not the day it goes off.
FUTURE = "2031-06-01 03:00:00"
DATED_TESTS = (
    "tests/test_store.py",
    "tests/test_contest.py",
    "tests/test_ranking.py",
    "tests/test_schedule.py",
    "tests/test_submission_checks.py",
    "tests/test_leaderboard_app.py",
)


def setup_test_packages() -> None:
    """Chromium, a CJK font and faketime for the tests, from the system's packages (root + apt only)."""
    if all(f.exists() for f in TEST_FILES):
        return
    stamp, key = VENV / ".contesthub-test-packages", " ".join(TEST_PACKAGES)
    apt = shutil.which("apt-get")
    if step_done(stamp, key) or not apt or os.geteuid() != 0:
        return  # tried already, or cannot: the tests that need them say why they skip
    say(f"installing {', '.join(TEST_PACKAGES)} for the tests (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = {"stdout": subprocess.DEVNULL, "env": env}
    if (
        subprocess.run([apt, "-qq", "update"], **quiet).returncode
        or subprocess.run([apt, "-qq", "install", "-y", "--no-install-recommends", *TEST_PACKAGES], **quiet).returncode
    ):
        say("apt-get could not install them; the tests that need them will be skipped")
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
        setup_test_packages()
        say("ruff check")
        run(BIN / "ruff", "check", ".")
        say("pytest")
        run(BIN / "pytest", *rest)
        if rest:
            return  # a chosen part of the suite: no date-bomb pass
        faketime = shutil.which("faketime")
        if not faketime:
            say("WARNING: faketime was not found (Debian package faketime): the date-bomb pass was skipped")
            return
        say(f"pytest again with every clock at {FUTURE} (faketime): the tests whose rules depend on dates")
        run(faketime, FUTURE, BIN / "pytest", "-p", "no:cacheprovider", *DATED_TESTS)
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
