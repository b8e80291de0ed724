"""One driver of a real hub, for the test suite and the benchmarks (like jupyterhub/tests/mocking.py).

Nothing here is a mock: :func:`hub_settings` gives settings on free ports over a data root,
:func:`start_hub` starts JupyterHub with config/jupyterhub_config.py behind
configurable-http-proxy (the organizer account made first, as on ``contesthub up``'s first
start), and :class:`HubDriver` drives it over HTTP the way a person or a notebook does: the
sign-up and login forms (with the xsrf cookie), the approval page, the hub's REST API with a
session or a token, spawning a server, the submission service through the proxy.

tests/hub_fixtures.py builds its pytest fixtures on this; benchmarks/_hub.py adds what only the
benchmarks need (memory and CPU of the platform's processes, result files).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from hub.accounts import AccountStore, prepare_organizer
from hub.launcher import HubProcess, free_ports
from hub.settings import HubSettings
from sandbox.settings import PROJECT_ROOT, Paths

CHALLENGE = "outpatient_forecast"
PORT_SETTINGS = (
    "port",
    "hub_port",
    "proxy_api_port",
    "submit_port",
    "leaderboard_port",
    "data_port",
    "gateway_port",
    "gateway_api_port",
)


class HttpError(RuntimeError):
    """A request of a scenario step answered with another status than the step needs."""

    def __init__(self, step: str, r: requests.Response):
        super().__init__(f"{step}: {r.request.method} {r.url} -> {r.status_code} {r.text[:2000]}")
        self.step, self.status = step, r.status_code


def hub_settings(root: Path, data_root: Path, **overrides) -> HubSettings:
    """Demo-mode settings for a hub of its own in ``root`` over ``data_root``, on free ports."""
    values = {
        "mode": "demo",
        **dict(zip(PORT_SETTINGS, free_ports(len(PORT_SETTINGS)), strict=True)),
        "gateway": False,  # dask-gateway only where it is asked for
        "data_root": data_root,
        "private_root": root / "private",
        "home_root": root / "homes",
        "hub_db_url": "",
        "cpu_limit": 1,
        "mem_limit": "2G",
        "min_password_length": 8,
        "demo_open_login": False,
        **overrides,
    }
    return HubSettings.load(values, environ={})


def contest_file(folder: Path, **limits: int) -> Path:
    """config/contest.toml with other ``[limits]`` (``uploads_per_minute=1000``, ...), written
    into ``folder``: a load test, or a test suite, uploads far faster than any person, and a
    hub reads it through ``CONTESTHUB_CONTEST``."""
    text = (PROJECT_ROOT / "config" / "contest.toml").read_text("utf-8")
    for key, value in limits.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {int(value)}", text, count=1, flags=re.M)
        if n != 1:
            raise KeyError(f"config/contest.toml has no [limits] key {key}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "contest.toml"
    path.write_text(text, "utf-8")
    return path


@dataclass
class HubDriver:
    """A running hub and its organizer, driven over HTTP."""

    settings: HubSettings
    process: HubProcess | None
    organizer: str
    organizer_password: str
    _sessions: dict[str, requests.Session] = field(default_factory=dict, repr=False)
    _org_token: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.settings.public_url

    @property
    def services(self) -> tuple[str, ...]:
        return self.settings.service_names or ()

    @property
    def store_paths(self) -> Paths:
        """The paths the submission service uses (its store is under this private root)."""
        return Paths(self.settings.data_root, self.settings.private_root, PROJECT_ROOT / "datasets")

    def stop(self) -> int | None:
        return self.process.stop() if self.process is not None else None

    def wait_services(self, timeout: float = 180) -> None:
        """Until the submission service and the leaderboard (those running) answer through the proxy."""
        deadline = time.monotonic() + timeout
        if "submit" in self.services:
            self.wait_for(f"{self.url}/services/submit/api/health", deadline - time.monotonic())
        if "leaderboard" in self.services:
            self.wait_for(f"{self.url}/services/leaderboard/_stcore/health", deadline - time.monotonic())

    def wait_for(self, url: str, timeout: float = 180) -> None:
        """Until ``url`` answers 200 (the hub answers before its services listen)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if requests.get(url, timeout=10).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer in {timeout:.0f} s\n{self.process.log_tail(80)}")
            if self.process.poll() is not None:
                raise RuntimeError(f"the hub exited\n{self.process.log_tail(80)}")
            time.sleep(0.5)

    # --- pages, as a person uses them --------------------------------------------------------

    def new_session(self, timeout: float = 60) -> requests.Session:
        s = requests.Session()
        s.get(f"{self.url}/hub/login", timeout=timeout).raise_for_status()  # sets the _xsrf cookie
        return s

    def signup(self, name: str, password: str) -> str:
        """Fill in the sign-up form; the page's text."""
        s = self.new_session()
        form = {"username": name, "password": password, "password_confirmation": password}
        r = s.post(f"{self.url}/hub/signup", data={**form, "_xsrf": s.cookies["_xsrf"]}, timeout=60)
        r.raise_for_status()
        return r.text

    def try_login(self, name: str, password: str, timeout: float = 120) -> tuple[requests.Session, requests.Response]:
        """The login form, as a browser fills it in: GET the page (xsrf cookie), POST the form."""
        s = self.new_session(timeout)
        r = s.post(
            f"{self.url}/hub/login",
            data={"username": name, "password": password, "_xsrf": s.cookies["_xsrf"]},
            allow_redirects=False,
            timeout=timeout,
        )
        return s, r

    def login(self, name: str, password: str, timeout: float = 120) -> requests.Session:
        s, r = self.try_login(name, password, timeout)
        if r.status_code != 302:
            raise HttpError("login", r)
        return s

    def organizer_session(self) -> requests.Session:
        if "organizer" not in self._sessions:
            self._sessions["organizer"] = self.login(self.organizer, self.organizer_password)
        return self._sessions["organizer"]

    def approve(self, name: str, action: str = "approve") -> None:
        """What an organizer does on /hub/accounts: press the sign-up's "approve" button."""
        s = self.organizer_session()
        page = s.get(f"{self.url}/hub/accounts", timeout=60)
        page.raise_for_status()
        assert f'<tr data-name="{name}">' in page.text, page.text[-3000:]
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        r = s.post(f"{self.url}/hub/accounts", data={"name": name, "action": action, "_xsrf": xsrf}, timeout=60)
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
            method, f"{self.url}/hub/api{path}", headers=headers, timeout=kw.pop("timeout", 120), **kw
        )

    def new_token(
        self, name: str, *, session=None, token: str | None = None, note: str = "tests", expires_in: int = 86400
    ) -> str:
        """A new API token of ``name``, asked for with a logged-in ``session`` or another ``token``."""
        r = self.api(
            "POST",
            f"/users/{name}/tokens",
            session=session,
            token=token,
            json={"note": note, "expires_in": expires_in},
        )
        if r.status_code != 201:
            raise HttpError("token", r)
        return r.json()["token"]

    def organizer_token(self) -> str:
        if self._org_token is None:
            self._org_token = self.new_token(self.organizer, session=self.organizer_session(), note="organizer")
        return self._org_token

    def service(self, method: str, path: str, token: str | None, name: str = "submit", **kw) -> requests.Response:
        """A hub service's API through the proxy: ``/services/<name>/api/<path>``."""
        headers = {"Authorization": f"token {token}"} if token else {}
        headers.update(kw.pop("headers", {}))
        return requests.request(
            method, f"{self.url}/services/{name}/api/{path}", headers=headers, timeout=kw.pop("timeout", 120), **kw
        )

    def spawn(self, name: str, token: str, timeout: float = 120) -> dict:
        """Start the user's server and wait until the hub reports it ready; the user model."""
        # Contestants driven here accept the contest rules through the API (hub/rules.py).
        r = self.api("POST", f"/users/{name}/server", token=token, json={"accept_rules": True})
        if r.status_code not in (201, 202, 400):  # 400: already running
            raise HttpError("spawn", r)
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

    # --- as an organizer, through the submission service -----------------------------------

    def make_team(self, name: str, members: list[str]) -> None:
        r = self.service("POST", "admin/teams", self.organizer_token(), json={"name": name, "members": members})
        if r.status_code != 201:
            raise HttpError("team", r)

    def grant(self, team: str, extra: int, reason: str = "load test", challenge: str = CHALLENGE) -> None:
        doc = {"challenge": challenge, "extra": extra, "reason": reason}
        r = self.service("POST", f"admin/teams/{team}/grants", self.organizer_token(), json=doc)
        if r.status_code != 201:
            raise HttpError("grant", r)

    def make_users(self, names: list[str]) -> None:
        """Hub users made by the organizer through the REST API (no password: token use only)."""
        for i in range(0, len(names), 100):
            r = self.api("POST", "/users", token=self.organizer_token(), json={"usernames": names[i : i + 100]})
            if r.status_code != 201:
                raise HttpError("users", r)

    def pending(self) -> int:
        """Submissions the service has not finished scoring (its health endpoint)."""
        return self.service("GET", "health", None).json()["pending"]

    def wait_scored(self, timeout: float = 1800) -> float:
        """Until no submission is pending; the seconds it took."""
        started = time.monotonic()
        while self.pending():
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"submissions still pending after {timeout:.0f} s")
            time.sleep(0.5)
        return time.monotonic() - started


@contextmanager
def start_hub(
    settings: HubSettings,
    log: Path,
    *,
    solutions: Path | None = None,
    config: Path | None = None,
    extra_env: dict | None = None,
    accounts: dict[str, str] | None = None,
    timeout: float = 120,
    wait_services: bool = False,
    driver: type[HubDriver] = HubDriver,
) -> Iterator[HubDriver]:
    """JupyterHub with ``settings``, its organizer made first; a :class:`HubDriver`, stopped at the end.

    ``solutions``: the hidden solutions the submission service scores against, linked into the
    private root. ``config``: another JupyterHub config file (one that loads
    config/jupyterhub_config.py and changes a few traits). ``extra_env``: for the hub and its
    services (``CONTESTHUB_CONTEST``, say). ``accounts`` (name -> password): made approved in the
    hub's accounts table first, as a roster import does (bcrypt hashes, in parallel).
    ``wait_services``: until the submission service and the leaderboard answer too.
    """
    settings.private_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    if solutions is not None and not (settings.private_root / "solutions").exists():
        (settings.private_root / "solutions").symlink_to(solutions)
    password = prepare_organizer(settings.db_url, settings.organizer)
    if not password:
        raise RuntimeError(f"{settings.private_root} already holds a hub: use a fresh folder")
    if accounts:
        store = AccountStore(settings.db_url)
        try:
            with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
                list(pool.map(lambda kv: store.create(*kv, approved=True, by="organizer"), accounts.items()))
        finally:
            store.close()
    process = HubProcess(settings, log=log, extra_env=extra_env, **({"config": config} if config else {})).start()
    try:
        process.wait_ready(timeout)
        running = driver(settings, process, settings.organizer, password)
        if wait_services:
            running.wait_services(timeout)
        yield running
    finally:
        process.stop()
