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

:class:`RunningHub` drives the hub over HTTP the way a person does: sign up through the form,
approve as the organizer on the approval page, log in through the login form (with the xsrf
cookie), and use the REST API with the session's cookie or a token.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _hub  # benchmarks/_hub.py: contest_file

from hub.accounts import prepare_organizer
from hub.launcher import HubProcess, free_ports
from hub.settings import HubSettings


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
    ports = free_ports(7)
    values = {
        "mode": "demo",
        "port": ports[0],
        "hub_port": ports[1],
        "proxy_api_port": ports[2],
        "submit_port": ports[3],
        "leaderboard_port": ports[4],
        "gateway_port": ports[5],
        "gateway_api_port": ports[6],
        "gateway": False,  # dask-gateway only where a test asks for it (tests/test_hub_dask.py)
        "data_root": data_root,
        "private_root": root / "private",
        "home_root": root / "homes",
        "hub_db_url": "",
        "cpu_limit": 1,
        "mem_limit": "2G",
        "min_password_length": 8,
        "demo_open_login": False,
        "services": available_services(),
        **overrides,
    }
    return HubSettings.load(values, environ={})


@dataclass
class RunningHub:
    settings: HubSettings
    process: HubProcess
    organizer: str
    organizer_password: str
    _sessions: dict[str, requests.Session] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.settings.public_url

    @property
    def services(self) -> tuple[str, ...]:
        return self.settings.service_names or ()

    # --- pages, as a person uses them --------------------------------------------------------

    def new_session(self) -> requests.Session:
        s = requests.Session()
        s.get(f"{self.url}/hub/login", timeout=30).raise_for_status()  # sets the _xsrf cookie
        return s

    def signup(self, name: str, password: str) -> str:
        """Fill in the sign-up form; the page's text."""
        s = self.new_session()
        r = s.post(
            f"{self.url}/hub/signup",
            data={
                "username": name,
                "password": password,
                "password_confirmation": password,
                "_xsrf": s.cookies["_xsrf"],
            },
            timeout=30,
        )
        r.raise_for_status()
        return r.text

    def try_login(self, name: str, password: str) -> tuple[requests.Session, requests.Response]:
        s = self.new_session()
        r = s.post(
            f"{self.url}/hub/login",
            data={"username": name, "password": password, "_xsrf": s.cookies["_xsrf"]},
            allow_redirects=False,
            timeout=30,
        )
        return s, r

    def login(self, name: str, password: str) -> requests.Session:
        s, r = self.try_login(name, password)
        assert r.status_code == 302, (r.status_code, r.text[-2000:])
        return s

    def organizer_session(self) -> requests.Session:
        if "organizer" not in self._sessions:
            self._sessions["organizer"] = self.login(self.organizer, self.organizer_password)
        return self._sessions["organizer"]

    def approve(self, name: str, action: str = "approve") -> None:
        """What an organizer does on /hub/accounts: press the sign-up's "approve" button."""
        s = self.organizer_session()
        page = s.get(f"{self.url}/hub/accounts", timeout=30)
        page.raise_for_status()
        assert f'<tr data-name="{name}">' in page.text, page.text[-3000:]
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        r = s.post(f"{self.url}/hub/accounts", data={"name": name, "action": action, "_xsrf": xsrf}, timeout=30)
        r.raise_for_status()
        assert f"{name}: {action[:-1] if action.endswith('e') else action}ed" in r.text

    def account(self, name: str | None = None, password: str | None = None) -> tuple[str, str, requests.Session]:
        """A contestant who signed up, was approved and logged in: (name, password, session)."""
        name = name or f"c{uuid.uuid4().hex[:10]}"
        password = password or f"pw-{uuid.uuid4().hex}"
        text = self.signup(name, password)
        assert "sent to the organizers" in text, text[-2000:]
        self.approve(name)
        return name, password, self.login(name, password)

    # --- the REST API ----------------------------------------------------------------------

    def api(self, method: str, path: str, *, session=None, token: str | None = None, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"token {token}"
        if session is not None and "_xsrf" in session.cookies:
            headers["X-XSRFToken"] = session.cookies["_xsrf"]
        return (session or requests).request(
            method, f"{self.url}/hub/api{path}", headers=headers, timeout=kw.pop("timeout", 60), **kw
        )

    def new_token(self, session: requests.Session, name: str, note: str = "tests") -> str:
        r = self.api("POST", f"/users/{name}/tokens", session=session, json={"note": note, "expires_in": 3600})
        assert r.status_code == 201, (r.status_code, r.text)
        return r.json()["token"]

    def service(self, method: str, path: str, token: str | None, name: str = "submit", **kw) -> requests.Response:
        """A hub service's API through the proxy: ``/services/<name>/api/<path>``."""
        headers = {"Authorization": f"token {token}"} if token else {}
        return requests.request(
            method, f"{self.url}/services/{name}/api/{path}", headers=headers, timeout=kw.pop("timeout", 120), **kw
        )

    def spawn(self, name: str, token: str, timeout: float = 120) -> dict:
        """Start the user's server and wait until the hub reports it ready; the user model."""
        # The suite's contestants accept the contest rules through the API (hub/rules.py).
        r = self.api("POST", f"/users/{name}/server", token=token, json={"accept_rules": True})
        assert r.status_code in (201, 202, 400), (r.status_code, r.text)  # 400: already running
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api("GET", f"/users/{name}", token=token).json()
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                return model
            if not server and not model.get("pending"):
                raise AssertionError(f"the server of {name} stopped:\n{self.process.log_tail(60)}")
            time.sleep(0.5)
        raise AssertionError(f"the server of {name} was not ready in {timeout} s:\n{self.process.log_tail(60)}")


# The per-team upload limits of the module hub's contest (tests/test_upload_limits.py tests the real ones).
SUITE_LIMITS = {"uploads_per_minute": 1000, "free_invalid_per_day": 1000}


@contextmanager
def running_hub(
    settings: HubSettings,
    log: Path,
    solutions: Path | None = None,
    config: Path | None = None,
    extra_env: dict | None = None,
):
    """JupyterHub with ``settings``, its organizer made first; a :class:`RunningHub`, stopped at the end.

    ``solutions``: the hidden solutions the submission service scores against, linked into
    the private root (a secure-mode test copies them instead, see tests/test_hub_secure.py).
    ``config``: another JupyterHub config file (one that loads config/jupyterhub_config.py and
    changes a few traits; tests/test_hub_accounts.py).
    ``extra_env``: for the hub and its services (``CONTESTHUB_CONTEST``, say).
    """
    settings.private_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    if solutions is not None:
        (settings.private_root / "solutions").symlink_to(solutions)
    password = prepare_organizer(settings.db_url, settings.organizer)
    assert password
    process = HubProcess(settings, log=log, extra_env=extra_env, **({"config": config} if config else {})).start()
    try:
        process.wait_ready(120)
        yield RunningHub(settings, process, settings.organizer, password)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def hub(demo, tmp_path_factory) -> RunningHub:
    root = tmp_path_factory.mktemp("hub")
    settings = hub_settings(root, demo.data_root)
    contest = _hub.contest_file(root / "config", **SUITE_LIMITS)
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


def kernel_run(hub: RunningHub, user: str, token: str, code: str, timeout: float = 120) -> dict:
    """Run ``code`` in a new kernel of ``user``'s server, through the proxy's websocket.

    Returns ``{"stdout": ..., "error": ..., ...}`` (:func:`hub.kernel_client.run_code`); the
    kernel is shut down afterwards.
    """
    from hub.kernel_client import run_code

    return run_code(hub.url, user, token, code, timeout=timeout)
