"""A real JupyterHub for tests: configurable-http-proxy, the real config, real accounts.

=================  =========  ===============================================================
fixture            scope      what it gives
=================  =========  ===============================================================
``hub``            module     JupyterHub started with config/jupyterhub_config.py (demo mode)
                              on free ports (public, hub, proxy API, services), its own private
                              root (cookie secret, database, tokens) and home root in a tmp
                              folder, the data root of the session's ``demo`` build; the
                              organizer account made as on ``contesthub up``'s first start. A
                              :class:`RunningHub`. Its contest is the demo's with the per-team
                              upload limits lifted (:data:`SUITE_LIMITS`): the hostile and load
                              suites send one team's files far faster than a person would.
=================  =========  ===============================================================

:func:`running_hub` starts a hub with any :func:`hub_settings` (tests/test_hub_secure.py runs
one in secure mode) and :func:`kernel_run` runs code in a contestant's kernel.

:class:`RunningHub` (:class:`hub.testing.HubDriver`, shared with the benchmarks) drives the hub
over HTTP the way a person does: sign up through the form, approve as the organizer on the
approval page, log in through the login form (with the xsrf cookie), and use the REST API with
the session's cookie or a token.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from hub import testing
from hub.settings import HubSettings

RunningHub = testing.HubDriver


def importable(module: str) -> bool:
    """Whether ``module`` imports in a fresh interpreter (a service being written may not yet)."""
    run = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=300)
    if run.returncode:
        print(f"{module} does not import; its service is left out:\n{run.stderr[-2000:]}")
    return run.returncode == 0


@functools.cache
def available_services() -> str:
    """The optional services whose code is there and imports; the hub exits if a managed one dies."""
    from hub.services import leaderboard_available, submit_service_available

    names = []
    if submit_service_available() and importable("hub.submit_service"):
        names.append("submit")
    if leaderboard_available():
        names.append("leaderboard")
    return ",".join(names) or "none"


def hub_settings(root: Path, data_root: Path, **overrides) -> HubSettings:
    """:func:`hub.testing.hub_settings` with the services whose code imports."""
    return testing.hub_settings(root, data_root, **{"services": available_services(), **overrides})


# The per-team upload limits of the module hub's contest (tests/test_upload_limits.py tests the real ones).
SUITE_LIMITS = {"uploads_per_minute": 1000, "free_invalid_per_day": 1000}


# JupyterHub with given settings, its organizer made first; a RunningHub, stopped at the end.
running_hub = testing.start_hub


@pytest.fixture(scope="module")
def hub(demo, tmp_path_factory) -> RunningHub:
    root = tmp_path_factory.mktemp("hub")
    settings = hub_settings(root, demo.data_root)
    contest = testing.contest_file(root / "config", **SUITE_LIMITS)
    # The submission service scores against the hidden solutions of the session's demo build.
    with running_hub(
        settings,
        root / "jupyterhub.log",
        solutions=demo.private_root / "solutions",
        extra_env={"CONTESTHUB_CONTEST": str(contest)},
    ) as running:
        yield running


CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "var" / "test-artifacts"


@contextmanager
def chromium_page(width: int = 1280, height: int = 800):
    """A page in Debian's headless Chromium (skips the test, saying why, where it is missing)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (python3 dev.py test installs it with apt-get as root)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def accept_rules(page) -> str:
    """On the hub's spawn page after a first login: tick the rules box and start; the rules' text."""
    page.wait_for_selector("#contesthub-rules", timeout=60_000)
    text = page.locator("#contesthub-rules").inner_text()
    page.check("#accept_rules")
    page.locator("#spawn_form [type=submit]").click()
    return text


def kernel_run(
    hub: RunningHub, user: str, token: str, code: str, timeout: float = 120, notebook: str | None = None
) -> dict:
    """Run ``code`` in a new kernel of ``user``'s server, through the proxy's websocket.

    Returns ``{"stdout": ..., "error": ..., ...}`` (:func:`hub.kernel_client.run_code`); the
    kernel is shut down afterwards. ``notebook``: start it for this notebook, as JupyterLab does.
    """
    from hub.kernel_client import run_code

    return run_code(hub.url, user, token, code, timeout=timeout, notebook=notebook)
