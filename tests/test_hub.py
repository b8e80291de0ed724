"""The hub end to end: a real JupyterHub with configurable-http-proxy and config/jupyterhub_config.py.

One hub per module (``hub`` in tests/hub_fixtures.py) in demo mode over the session's demo
data; accounts are real local accounts: signed up through the form, approved by the
organizer on the approval page, logged in through the login form. One contestant's server
is spawned once and shared by the kernel, home and token tests.
"""

from __future__ import annotations

import json
import re
import stat
import time
from pathlib import Path

import duckdb
import pytest
import requests
from hub_fixtures import ARTIFACTS, accept_rules, chromium_page, kernel_run

from hub.starters import starters_dir

STARTERS = starters_dir()

PROBE = """
import json, os, sandbox
from pathlib import Path
count = sandbox.sql("SELECT count(*) FROM hospital_outpatient.daily_visits").fetchall()[0][0]
server_env = dict(
    line.split("=", 1)
    for line in Path(f"/proc/{os.getppid()}/environ").read_bytes().decode().split("\\0")
    if "=" in line
)
print(json.dumps({
    "count": count,
    "home": os.environ["HOME"],
    "cwd": os.getcwd(),
    "kernel_env": {k: v for k, v in os.environ.items() if k.startswith(("CONTESTHUB_", "JUPYTERHUB_"))},
    "server_env": {k: v for k, v in server_env.items() if k.startswith(("CONTESTHUB_", "JUPYTERHUB_", "CPU_", "MEM_"))},
}))
"""


@pytest.fixture(scope="module")
def contestant_server(hub):
    """A contestant with a running server: (name, token, user model)."""
    name, _, session = hub.account()
    token = hub.new_token(name, session=session)
    t0 = time.monotonic()
    model = hub.spawn(name, token)
    print(f"server of {name} ready in {time.monotonic() - t0:.1f} s")
    return name, token, model


@pytest.fixture(scope="module")
def probe(hub, contestant_server) -> dict:
    name, token, _ = contestant_server
    out = kernel_run(hub, name, token, PROBE)
    assert out["error"] is None, out["error"]
    return json.loads(out["stdout"])


# --- accounts ------------------------------------------------------------------------------


def test_organizer_logs_in_and_is_admin(hub):
    s = hub.organizer_session()
    assert "jupyterhub-session-id" in s.cookies
    me = hub.api("GET", "/user", session=s)
    assert me.status_code == 200, me.text
    assert me.json()["name"] == hub.organizer
    assert "organizers" in me.json()["groups"]
    assert {"admin:users", "admin-ui"} <= set(me.json()["scopes"])
    assert s.get(f"{hub.url}/hub/admin", timeout=30).status_code == 200
    # Only a bcrypt hash is stored, never the password.
    from hub.accounts import AccountStore

    store = AccountStore(hub.settings.db_url)
    try:
        assert store.get(hub.organizer).password_hash.startswith("$2b$")
    finally:
        store.close()
    assert hub.organizer_password.encode() not in (hub.settings.runtime_dir / "jupyterhub.sqlite").read_bytes()


def test_wrong_password_is_refused(hub):
    s, r = hub.try_login(hub.organizer, hub.organizer_password + "x")
    assert r.status_code == 403  # the form again, with an error
    assert "Invalid username or password" in r.text
    assert "jupyterhub-session-id" not in s.cookies


def test_signup_needs_approval_before_login(hub):
    name, password = "pending-bob", "a-long-enough-secret-9"
    assert "sent to the organizers" in hub.signup(name, password)
    s, r = hub.try_login(name, password)
    assert r.status_code == 403
    assert "waiting for an organizer" in r.text
    assert "jupyterhub-session-id" not in s.cookies
    assert hub.api("GET", "/user", session=s).status_code in (401, 403)
    # A contestant cannot approve anyone, not even themselves.
    _, _, other = hub.account()
    assert other.get(f"{hub.url}/hub/accounts", timeout=30).status_code == 403
    hub.approve(name)
    hub.login(name, password)


def test_rejected_signup_cannot_log_in_and_frees_the_name(hub):
    name, password = "rejected-eve", "another-long-secret-7"
    hub.signup(name, password)
    hub.approve(name, action="reject")
    _, r = hub.try_login(name, password)
    assert r.status_code == 403
    assert "Invalid username or password" in r.text
    assert "sent to the organizers" in hub.signup(name, password)


@pytest.mark.parametrize(
    ("name", "password", "problem"),
    [
        ("shorty", "abc", "at least 8 characters"),
        ("common", "password123", "too easy to guess"),
        ("mirror", "mirror-mirror-1", "too easy to guess"),
        ("Bad Name!", "a-long-enough-secret-9", "Choose a name"),
        ("organizer", "a-long-enough-secret-9", "name is taken"),
    ],
)
def test_signup_refuses_bad_names_and_passwords(hub, name, password, problem):
    s = hub.new_session()
    r = s.post(
        f"{hub.url}/hub/signup",
        data={"username": name, "password": password, "password_confirmation": password, "_xsrf": s.cookies["_xsrf"]},
        timeout=30,
    )
    assert r.status_code == 400
    assert problem in r.text


def test_password_change(hub):
    name, password, s = hub.account()
    page = s.get(f"{hub.url}/hub/accounts/password", timeout=30).text
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page).group(1)
    new = "a-brand-new-secret-42"
    form = {"old_password": password, "password": new, "password_confirmation": new, "_xsrf": xsrf}
    r = s.post(f"{hub.url}/hub/accounts/password", data=form, timeout=30)
    assert r.status_code == 200 and "password was changed" in r.text
    assert hub.try_login(name, password)[1].status_code == 403
    hub.login(name, new)


def test_login_page_warns_about_demo_mode(hub):
    page = requests.get(f"{hub.url}/hub/login", timeout=30).text
    assert "not isolated" in page
    assert "/hub/signup" in page


def test_secrets_are_private(hub):
    runtime = hub.settings.runtime_dir
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o700
    for name in ("jupyterhub_cookie_secret", "proxy_auth_token", "service-idle-culler.token"):
        assert stat.S_IMODE((runtime / name).stat().st_mode) == 0o600, name


# --- the sandbox ---------------------------------------------------------------------------


def test_kernel_reads_the_open_data_through_the_proxy(hub, probe, demo):
    expected = duckdb.sql(
        f"SELECT count(*) FROM '{demo.data_root / 'hospital_outpatient' / 'latest' / 'daily_visits.parquet'}'"
    ).fetchall()[0][0]
    assert probe["count"] == expected > 0


def test_home_is_per_user_with_starter_notebooks(hub, probe, contestant_server):
    name = contestant_server[0]
    home = hub.settings.home_root / name
    assert Path(probe["home"]) == home
    assert Path(probe["cwd"]) == home
    starters = sorted(p.name for p in STARTERS.glob("*.ipynb"))
    assert starters
    for nb in starters:
        assert (home / nb).read_bytes() == (STARTERS / nb).read_bytes()


def test_environment_has_data_root_and_limits_but_no_private_root(hub, probe):
    for env in (probe["kernel_env"], probe["server_env"]):
        assert "CONTESTHUB_PRIVATE_ROOT" not in env
        assert env["CONTESTHUB_DATA_ROOT"] == str(hub.settings.data_root)
        assert env["CONTESTHUB_THREADS"] == "1"
        assert env["CONTESTHUB_MEMORY_LIMIT"] == "1024M"
    assert probe["server_env"]["MEM_LIMIT"] == str(2 * 2**30)
    assert float(probe["server_env"]["CPU_LIMIT"]) == 1.0


LIMITS = """
import json, sandbox
from sandbox.api import Limits
memory, threads = sandbox.sql("SELECT current_setting('memory_limit'), current_setting('threads')").fetchall()[0]
limits = Limits.from_env()  # what sandbox.dask_client() sizes its local cluster with
print(json.dumps({"memory_limit": memory, "threads": threads, "dask": [limits.threads, limits.memory_bytes]}))
"""


def test_kernel_duckdb_and_dask_follow_the_per_user_limits(hub, contestant_server):
    """mem_limit 2G, cpu_limit 1 (tests/hub_fixtures.py): DuckDB gets half the memory and one thread."""
    name, token, _ = contestant_server
    out = kernel_run(hub, name, token, LIMITS)
    assert out["error"] is None, out["error"]
    seen = json.loads(out["stdout"])
    expected = hub.settings.mem_limit_bytes // 2
    number, unit = seen["memory_limit"].split()  # DuckDB shows e.g. "1.0 GiB"
    shown = float(number) * {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[unit]
    assert shown == pytest.approx(expected, rel=0.01), seen
    assert int(seen["threads"]) == hub.settings.threads == 1
    assert seen["dask"] == [hub.settings.threads, expected]


def test_server_token_reaches_the_submit_service(hub, probe):
    token = probe["kernel_env"]["JUPYTERHUB_API_TOKEN"]
    r = hub.api("GET", "/user", token=token)
    assert r.status_code == 200, r.text
    scopes = r.json()["scopes"]
    assert "access:services!service=submit" in scopes
    assert not any(s.startswith(("admin", "read:users!", "list:users")) for s in scopes), scopes


def test_notebook_token_reaches_the_submit_service_through_the_proxy(hub, probe):
    if "submit" not in hub.services:
        pytest.skip("hub/submit_service/ is not there or does not import yet (see the output)")
    env = probe["kernel_env"]
    assert env["CONTESTHUB_SUBMIT_URL"] == f"{hub.url}/services/submit/"
    r = requests.get(
        env["CONTESTHUB_SUBMIT_URL"] + "api/me",
        headers={"Authorization": f"token {env['JUPYTERHUB_API_TOKEN']}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert env["JUPYTERHUB_USER"] in r.text


def test_leaderboard_is_public_through_the_proxy(hub):
    if "leaderboard" not in hub.services:
        pytest.skip("leaderboard/app.py is not there yet")
    deadline = time.monotonic() + 60
    while True:  # Streamlit may still be starting
        r = requests.get(f"{hub.url}/services/leaderboard/_stcore/health", timeout=30)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert r.status_code == 200, r.text


def test_starters_are_copied_once_and_never_overwritten(tmp_path):
    from hub.starters import copy_starter_notebooks

    first = copy_starter_notebooks(tmp_path).copied
    assert first == sorted(p.name for p in STARTERS.glob("*.ipynb"))
    mine = tmp_path / first[0]
    mine.write_text("my own work")
    assert copy_starter_notebooks(tmp_path).copied == []
    assert mine.read_text() == "my own work"
    mine.unlink()  # deleted by its owner: stays deleted
    assert copy_starter_notebooks(tmp_path).copied == []
    assert not mine.exists()


def test_starters_never_follow_a_link_planted_in_the_home(tmp_path):
    """A contestant's links where a starter or the record would go: left alone, nothing written through them."""
    from hub.starters import copy_starter_notebooks

    home, outside = tmp_path / "home", tmp_path / "outside"
    home.mkdir()
    (outside / "private").mkdir(parents=True)
    (home / ".contesthub").symlink_to(outside / "private")  # the record's folder -> someone else's
    (home / "getting_started.ipynb").symlink_to(outside / "ld.so.preload")  # dangling
    (home / "emergency_visit.ipynb").symlink_to(outside / "private")  # a folder

    done = copy_starter_notebooks(home)
    assert sorted(done.refused) == [".contesthub/starters.json", "emergency_visit.ipynb", "getting_started.ipynb"]
    assert done.copied == sorted(p.name for p in STARTERS.glob("*.ipynb") if p.name not in done.refused)
    assert not (outside / "ld.so.preload").exists()
    assert list((outside / "private").iterdir()) == []
    for link in (".contesthub", "getting_started.ipynb", "emergency_visit.ipynb"):
        assert (home / link).is_symlink()
    # Once the contestant removes a link, the notebook arrives (it was never recorded as given).
    (home / "getting_started.ipynb").unlink()
    assert copy_starter_notebooks(home).copied == ["getting_started.ipynb"]
    # A record that is a link (its folder real) is neither read nor written through.
    (home / ".contesthub").unlink()
    (home / ".contesthub").mkdir()
    (outside / "private" / "secret.json").write_text('["x"]')
    (home / ".contesthub" / "starters.json").symlink_to(outside / "private" / "secret.json")
    done = copy_starter_notebooks(home)
    assert sorted(done.refused) == [".contesthub/starters.json", "emergency_visit.ipynb"]
    assert (outside / "private" / "secret.json").read_text() == '["x"]'
    assert (home / ".contesthub" / "starters.json").is_symlink()


# --- a browser ---------------------------------------------------------------------------


def test_browser_logs_in_and_reaches_jupyterlab(hub):
    name, password, _ = hub.account()
    with chromium_page() as page:
        page.goto(f"{hub.url}/hub/login")
        page.fill("#username_input", name)
        page.fill("#password_input", password)
        page.click("#login_submit")
        accept_rules(page)  # once, before the first server (tests/test_hub_lab.py)
        # The hub starts the server and sends the browser on to JupyterLab.
        page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
        page.wait_for_selector(
            f".jp-DirListing-item[title*='{sorted(STARTERS.glob('*.ipynb'))[0].name}']", timeout=60_000
        )
        assert f"/user/{name}/lab" in page.url
        page.screenshot(path=str(ARTIFACTS / "hub-jupyterlab.png"))
