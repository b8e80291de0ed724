"""One-time passwords: accounts made from a roster must choose their own password first.

A roster's passwords pass through an organizer's hands (a printout, an e-mail), so they work
once: the first login leads to the password page, the hub starts no server for the account
until the member has chosen a password of their own, and then the login goes on to where it
was going. Runs against a real JupyterHub with configurable-http-proxy.

Issue 13's attacks on accounts: a squatted sign-up adopted by a roster import, an existing
passwords file read by others, and a stranger locking the organizer out with wrong passwords
(clients told apart by the loopback address they connect from: 127.0.0.2 is another client
than 127.0.0.3 for the proxy, as two machines would be).
"""

from __future__ import annotations

import csv
import html
import io
import os
import re
import stat
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from hub_fixtures import RunningHub, hub_settings, running_hub
from requests.adapters import HTTPAdapter
from sqlalchemy import create_engine, text

from hub.accounts import AccountStore, check_password, hash_password
from sandbox import clock
from sandbox.settings import PROJECT_ROOT, Paths


def _xsrf(page: str) -> str:
    return re.search(r'name="_xsrf" value="([^"]+)"', page).group(1)


def test_a_roster_password_works_once_and_leads_to_the_password_page(hub, run_cli, demo, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("team,member,email\n一次性,otp01,otp01@example.org\n", "utf-8")
    root = Paths(demo.data_root, hub.settings.private_root, PROJECT_ROOT / "datasets")
    out = tmp_path / "passwords.csv"
    result = run_cli("teams", "import", str(roster), "--passwords-out", str(out), "--by", "org", root=root)
    assert result.exit_code == 0, result.output
    one_time = next(csv.DictReader(io.StringIO(out.read_text("utf-8-sig"))))["password"]

    # The login succeeds, but goes to the password page, keeping where it was going.
    s, r = hub.try_login("otp01", one_time)
    assert r.status_code == 302 and "/hub/accounts/password?next=" in r.headers["Location"], r.headers
    page = s.get(hub.url + r.headers["Location"], timeout=30)
    page.encoding = "utf-8"  # JupyterHub's pages say so in <meta charset>, not in a header
    assert page.status_code == 200 and 'id="one-time-password"' in page.text
    assert "一次性密码" in page.text and "one-time password" in page.text

    # No server until the password is changed, not even through the REST API.
    token = hub.new_token("otp01", session=s)
    r = hub.api("POST", "/users/otp01/server", token=token, json={"accept_rules": True})
    assert r.status_code == 403 and "/hub/accounts/password" in r.json()["message"], r.text
    assert "一次性密码" in r.json()["message"]

    # The same password again is refused with a reason; a new one leads on.
    form_url = hub.url + "/hub/accounts/password?next=%2Fhub%2Fhome"
    same = {"old_password": one_time, "password": one_time, "password_confirmation": one_time}
    r = s.post(form_url, data={**same, "_xsrf": _xsrf(page.text)}, timeout=30)
    r.encoding = "utf-8"
    assert r.status_code == 400 and "different from the current one" in r.text and "新密码不能与当前密码相同" in r.text
    new = "my-own-secret-passphrase-7"
    form = {"old_password": one_time, "password": new, "password_confirmation": new, "_xsrf": _xsrf(r.text)}
    r = s.post(form_url, data=form, allow_redirects=False, timeout=30)
    assert r.status_code == 302 and r.headers["Location"].endswith("/hub/home"), (r.status_code, r.text[-1000:])

    # The one-time password is spent; the member's own works and goes straight on.
    assert hub.try_login("otp01", one_time)[1].status_code == 403  # the login form again, with its error
    _, r = hub.try_login("otp01", new)
    assert r.status_code == 302 and "accounts/password" not in r.headers["Location"]
    r = hub.api("POST", "/users/otp01/server", token=token, json={"accept_rules": True})
    assert r.status_code in (201, 202), r.text
    hub.api("DELETE", "/users/otp01/server", token=token)


def test_an_organizer_made_account_and_a_sign_up_are_not_one_time(tmp_path):
    store = AccountStore(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    try:
        assert not store.create("signed-up", "a-long-secret-1").must_change_password
        assert store.create("rostered", "a-long-secret-2", approved=True, by="org", one_time=True).must_change_password
        assert store.get("rostered").must_change_password
        store.set_password("rostered", "a-long-secret-3")
        assert not store.get("rostered").must_change_password
    finally:
        store.close()


def test_accounts_made_by_an_earlier_version_survive_the_upgrade(db_url):
    """The accounts table of an earlier contesthub (no one-time flag) gains the column in place."""
    engine = create_engine(db_url)
    with engine.begin() as con:
        con.execute(
            text(
                "CREATE TABLE contesthub_accounts (name VARCHAR(64) PRIMARY KEY, password_hash VARCHAR(128) NOT NULL, "
                "status VARCHAR(16) NOT NULL, created_at TIMESTAMP WITH TIME ZONE NOT NULL, "
                "decided_at TIMESTAMP WITH TIME ZONE, decided_by VARCHAR(64))"
            )
        )
        t = clock.now()
        for name, decided_at, by in (
            ("old-timer", t, "org"),  # made approved in one step by a roster import
            ("boss", t, "contesthub up"),  # the organizer
            ("joiner", t + timedelta(hours=1), "boss"),  # signed up, approved an hour later
        ):
            con.execute(
                text(f"INSERT INTO contesthub_accounts VALUES ('{name}', :h, 'approved', :t, :d, :by)"),
                {"h": hash_password("kept-password-1"), "t": t, "d": decided_at, "by": by},
            )
    engine.dispose()
    store = AccountStore(db_url)
    try:
        account = store.get("old-timer")
        assert account.approved and not account.must_change_password
        assert check_password("kept-password-1", account.password_hash)
        # Which accounts a roster made, so that a roster import adopts only those.
        assert [store.get(n).origin for n in ("old-timer", "boss", "joiner")] == ["roster", "organizer", "signup"]
        AccountStore(db_url).close()  # a second start finds the column and changes nothing
    finally:
        store.close()


def _import(run_cli, root: Paths, roster: Path, *args: str):
    result = run_cli("teams", "import", str(roster), "--by", "org", *args, root=root)
    assert result.exit_code == 0, result.output
    return result


def test_the_passwords_file_is_the_organizers_alone_even_when_it_was_there_before(run_cli, paths, tmp_path):
    """Issue 13, item 9: ``--passwords-out`` onto a file that exists used to keep its mode
    (0644 here: readable by every account) and its inode (still open in someone's hands)."""
    roster = tmp_path / "roster.csv"
    roster.write_text("team,member,email\n开放,pwf01,pwf01@example.org\n", "utf-8")
    root = Paths(paths.data_root, paths.private_root, PROJECT_ROOT / "datasets")
    out = tmp_path / "passwords.csv"
    out.write_text("team,member,email,password\n", "utf-8")
    os.chmod(out, 0o644)
    with open(out, encoding="utf-8-sig") as held:  # opened while it was readable, before the import
        _import(run_cli, root, roster, "--passwords-out", str(out))
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        password = next(csv.DictReader(io.StringIO(out.read_text("utf-8-sig"))))["password"]
        assert len(password) >= 16 and password not in held.read()
    # A link planted where the file goes is replaced, not written through.
    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_text("not the passwords\n", "utf-8")
    linked = tmp_path / "linked.csv"
    linked.symlink_to(elsewhere)
    _import(run_cli, root, roster, "--passwords-out", str(linked))
    assert not linked.is_symlink() and stat.S_IMODE(linked.stat().st_mode) == 0o600
    assert elsewhere.read_text("utf-8") == "not the passwords\n"


def _row(page: str, name: str) -> str:
    """The approval page's table row of ``name``."""
    found = re.search(rf'<tr data-name="{re.escape(name)}">(.*?)</tr>', page, re.S)
    assert found, page[-3000:]
    return found.group(1)


def test_a_roster_import_does_not_adopt_a_name_someone_signed_up_for_first(hub, run_cli, demo, tmp_path):
    """Issue 13, item 7: a squatter signs up first with a member's name. The import used to
    put that account in the team with the squatter's own password; approving it then made
    the squatter a member."""
    member = f"sq{uuid.uuid4().hex[:8]}"
    squatter = f"squatter-{uuid.uuid4().hex}"
    assert "sent to the organizers" in hub.signup(member, squatter)
    team = f"名单队-{uuid.uuid4().hex[:6]}"
    roster = tmp_path / "roster.csv"
    roster.write_text(f"team,member,email\n{team},{member},{member}@example.org\n", "utf-8")
    root = Paths(demo.data_root, hub.settings.private_root, PROJECT_ROOT / "datasets")
    out = tmp_path / "passwords.csv"

    refused = run_cli("teams", "import", str(roster), "--passwords-out", str(out), "--by", "org", root=root)
    assert refused.exit_code == 1, refused.output
    assert "row 2, column member" in refused.output and "/hub/accounts" in refused.output
    assert "不是名单导入创建的" in refused.output and "no roster import made" in refused.output
    assert "Traceback" not in refused.output
    # Nothing was written: no passwords, no team, the sign-up still waits and its password does not get in.
    assert not out.exists()
    listed = run_cli("teams", "list", "--json", root=root)
    assert listed.exit_code == 0 and team not in listed.output
    page = hub.organizer_session().get(f"{hub.url}/hub/accounts", timeout=30)
    assert f'<tr data-name="{member}">' in page.text
    _, r = hub.try_login(member, squatter)
    assert r.status_code == 403 and "waiting for an organizer" in r.text

    # The organizer rejects the sign-up and imports again: the member's one-time password works,
    # the squatter's password never does.
    hub.approve(member, "reject")
    done = run_cli("teams", "import", str(roster), "--passwords-out", str(out), "--by", "org", root=root)
    assert done.exit_code == 0, done.output
    one_time = next(csv.DictReader(io.StringIO(out.read_text("utf-8-sig"))))["password"]
    assert hub.try_login(member, squatter)[1].status_code == 403
    _, r = hub.try_login(member, one_time)
    assert r.status_code == 302 and "/hub/accounts/password" in r.headers["Location"]
    again = run_cli("teams", "import", str(roster), "--by", "org", root=root)  # its own account: unchanged
    assert again.exit_code == 0 and "existing account, unchanged" in again.output


def test_the_approval_page_shows_the_team_a_pending_sign_up_claims(hub, run_cli, demo):
    """Issue 13, item 7: the organizer made a team listing a name nobody had an account for;
    someone signs up with it. Approving gives them the seat, so the page says so first."""
    member, unlisted = f"cl{uuid.uuid4().hex[:8]}", f"un{uuid.uuid4().hex[:8]}"
    team = f"先锋<b>{uuid.uuid4().hex[:6]}"  # markup in a team name is shown as text
    root = Paths(demo.data_root, hub.settings.private_root, PROJECT_ROOT / "datasets")
    made = run_cli("teams", "create", team, member, "--by", "org", root=root)
    assert made.exit_code == 0, made.output
    for name in (member, unlisted):
        assert "sent to the organizers" in hub.signup(name, f"pw-{uuid.uuid4().hex}")
    page = hub.organizer_session().get(f"{hub.url}/hub/accounts", timeout=30)
    page.encoding = "utf-8"
    claimed, free = _row(page.text, member), _row(page.text, unlisted)
    assert html.escape(team) in claimed and team not in claimed
    assert "通过后，注册此名的人将成为该队成员" in claimed and "Approving makes whoever signed up" in claimed
    assert "Approving makes" not in free and "—" in free
    for name in (member, unlisted):
        hub.approve(name, "reject")


# --- failed logins: throttled per client, never a lockout for everyone (issue 13, item 8) ------


class FromAddress(HTTPAdapter):
    """Connections from one loopback address: to the hub's proxy, another client (machine)."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kw):
        kw["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kw)


def client(hub: RunningHub, address: str, **headers: str) -> requests.Session:
    """A browser on another machine (sending ``headers`` with every request), with the login
    page's xsrf cookie."""
    s = requests.Session()
    s.mount("http://", FromAddress(address))
    s.headers.update(headers)
    s.get(f"{hub.url}/hub/login", timeout=30).raise_for_status()
    return s


def post_login(hub: RunningHub, s: requests.Session, name: str, password: str) -> requests.Response:
    r = s.post(
        f"{hub.url}/hub/login",
        data={"username": name, "password": password, "_xsrf": s.cookies["_xsrf"]},
        allow_redirects=False,
        timeout=60,
    )
    r.encoding = "utf-8"
    return r


def test_a_strangers_failed_logins_never_lock_the_organizer_out(hub):
    """Ten wrong passwords for ``organizer`` from anywhere used to lock the right one out for
    two minutes. The stranger forges X-Forwarded-For and X-Real-Ip at every attempt, which
    must not make each attempt a new client either."""
    answers = []
    for i in range(12):  # a new browser session each time, as from a new address
        forged = f"10.13.{i}.{i + 1}"
        stranger = client(hub, "127.0.0.2", **{"X-Forwarded-For": forged, "X-Real-Ip": forged})
        answers.append(post_login(hub, stranger, hub.organizer, f"guess-{i}"))
    statuses = [r.status_code for r in answers]
    # Five free failures, then waits of 2, 4, 8, ... s: on a slow machine one may have passed.
    assert statuses[:5] == [403] * 5 and statuses.count(429) >= 5 and set(statuses) == {403, 429}, statuses
    r = next(r for r in reversed(answers) if r.status_code == 429)
    assert 1 <= int(r.headers["Retry-After"]) <= 300
    text = r.text
    assert "登录失败次数过多" in text and "Too many failed logins" in text
    assert text.index("登录失败次数过多") < text.index("Too many failed logins")  # Chinese first
    assert 'name="password"' in text  # the login form again, saying why

    # The organizer, on another machine, logs in at once.
    r = post_login(hub, client(hub, "127.0.0.3"), hub.organizer, hub.organizer_password)
    assert r.status_code == 302, (r.status_code, r.text[-1500:])
    log = hub.process.log_tail(400)
    assert "from 127.0.0.2 held back" in log and "from 10.13." not in log


GLOBAL_LIMIT = """
# The hub of config/jupyterhub_config.py, with a hub-wide limit small enough for a test.
c = get_config()  # noqa: F821
load_subconfig({main!r})  # noqa: F821
c.LocalAccountsAuthenticator.login_global_failures_per_minute = 6
c.LocalAccountsAuthenticator.login_global_wait_seconds = 30
"""


@pytest.fixture(scope="module")
def busy_hub(demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("busy-hub")
    config = root / "jupyterhub_config.py"
    config.write_text(GLOBAL_LIMIT.format(main=str(PROJECT_ROOT / "config" / "jupyterhub_config.py")), "utf-8")
    settings = hub_settings(root, demo.data_root, services="none", idle_timeout=0)
    with running_hub(settings, root / "jupyterhub.log", config=config) as running:
        yield running


def test_many_clients_failing_at_once_slow_each_other_but_not_a_new_client(busy_hub):
    """A hub-wide limit on failed logins: guessing from many addresses at once (six failures a
    minute here) slows every address that failed, and no one else."""
    hub = busy_hub
    guessers = [client(hub, f"127.0.13.{i}") for i in range(1, 8)]
    assert [post_login(hub, s, hub.organizer, "guess").status_code for s in guessers] == [403] * 7
    again = post_login(hub, guessers[0], hub.organizer, "guess-again")
    assert again.status_code == 429 and 1 <= int(again.headers["Retry-After"]) <= 30, again.status_code
    assert "登录失败次数过多" in again.text
    r = post_login(hub, client(hub, "127.0.13.100"), hub.organizer, hub.organizer_password)
    assert r.status_code == 302, (r.status_code, r.text[-1500:])
