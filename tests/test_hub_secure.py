"""Secure mode end to end: contestants' servers run as their own Unix accounts, and stay apart.

A real JupyterHub with configurable-http-proxy in mode ``secure`` (tests/hub_fixtures.py):
two contestants in two teams, each with the Unix account ``cht-<name>`` the spawner creates
on first start, and a server running the sandbox interpreter (hub/interpreter.py). Code in
contestant A's kernel tries to read a hidden solution, a file in B's home, the contest store
and a stored submission file: PermissionError each time. A still reads the open data (with
``sandbox.sql``) and cannot write into it.

The hub's folders live in a folder under /tmp opened to other accounts (pytest's own tmp
folders are closed to them); the open data and hidden solutions are copies of the session's
demo build. Accounts made here carry the prefix ``cht-`` and are deleted at the end (and,
left behind by an earlier run that was killed, at the start).

Needs root and useradd (the hub creates accounts and starts servers as them): skipped,
saying so, without them.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hub_fixtures import hub_settings, kernel_run, running_hub

from hub import interpreter
from hub.sandboxes import hidden_from_others, secure_mode_problems, system_username, useradd_command
from hub.settings import HubSettings, SettingsError

PREFIX = "cht-"  # the test accounts' prefix: cht-<hub name>

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or useradd_command() is None,
    reason="secure mode needs root and useradd (the hub creates a Unix account per contestant)",
)


# --- Unix accounts made by these tests -----------------------------------------------------


def made_accounts() -> list[str]:
    return sorted(e.pw_name for e in pwd.getpwall() if e.pw_name.startswith(PREFIX))


def remove_accounts(names: list[str]) -> list[str]:
    """``userdel`` each (its group goes with it); the names that could not be removed."""
    userdel = shutil.which("userdel", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin") or "userdel"
    left = []
    for name in names:
        run = subprocess.run([userdel, name], capture_output=True, text=True)
        if run.returncode not in (0, 6):  # 6: no such user
            run = subprocess.run([userdel, "--force", name], capture_output=True, text=True)
            if run.returncode not in (0, 6):
                left.append(f"{name}: {run.stderr.strip()}")
    return left


# --- the hub -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def open_root():
    """A folder other accounts can pass (and read), unlike pytest's tmp folders; removed at the end."""
    root = Path(tempfile.mkdtemp(prefix="contesthub-secure-"))
    try:
        root.chmod(0o755)
        blocked = hidden_from_others(root)
        if blocked is not None:
            pytest.skip(f"{blocked} is closed to other accounts on this machine: no folder for contestants")
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def secure_hub(demo, open_root):
    if os.geteuid() != 0 or useradd_command() is None:
        pytest.skip("secure mode needs root and useradd (the hub creates a Unix account per contestant)")
    stale = remove_accounts(made_accounts())  # left by an earlier run that was killed
    assert not stale, stale
    data = open_root / "data"
    shutil.copytree(demo.data_root, data, symlinks=True)
    settings = hub_settings(open_root, data, mode="secure", system_user_prefix=PREFIX)
    settings.private_root.mkdir(mode=0o700)
    # Real files, not a link to the demo build: the kernel must meet the private root's own walls.
    shutil.copytree(demo.private_root / "solutions", settings.private_root / "solutions")
    try:
        with running_hub(settings, settings.private_root / "jupyterhub.log") as hub:
            yield hub
    finally:
        left = remove_accounts(made_accounts())
        assert not left, f"test accounts left behind: {left}"


@pytest.fixture(scope="module")
def two_teams(secure_hub):
    """Contestants A (team alpha) and B (team beta), each with a running server: {team: (name, token)}."""
    hub = secure_hub
    org = hub.new_token(hub.organizer_session(), hub.organizer)
    people = {}
    for team in ("alpha", "beta"):
        name, _, session = hub.account()
        token = hub.new_token(session, name)
        if "submit" in hub.services:  # teams of the contest, mirrored as hub groups
            r = hub.service("POST", "admin/teams", org, json={"name": team, "members": [name]})
            assert r.status_code == 201, r.text
        else:
            r = hub.api("POST", f"/groups/team-{team}", token=org, json={"users": [name]})
            assert r.status_code == 201, r.text
        people[team] = (name, token)
    for name, token in people.values():
        hub.spawn(name, token, timeout=240)
    return people


def run(hub, who: tuple[str, str], code: str) -> dict:
    out = kernel_run(hub, *who, code, timeout=300)
    assert out["error"] is None, out["error"]
    return json.loads(out["stdout"].strip().splitlines()[-1])


WHO = """
import json, os, pwd, sys
from jupyter_client.kernelspec import KernelSpecManager
server = open(f"/proc/{os.getppid()}/cmdline", "rb").read().split(b"\\0")
spec = KernelSpecManager().get_kernel_spec("python3")
print(json.dumps({
    "user": pwd.getpwuid(os.getuid()).pw_name,
    "home": os.environ["HOME"],
    "executable": sys.executable,
    "real_executable": os.path.realpath("/proc/self/exe"),
    "server_cmd": [a.decode() for a in server[:3]],
    "spec_argv0": spec.argv[0],
    "path0": os.environ["PATH"].split(os.pathsep)[0],
}))
"""

SUBMIT = """
import json, sandbox
test = sandbox.sql("SELECT date, hospital_id FROM hospital_outpatient.daily_visits_test").df()
test["outpatient_visits"] = 100.0
r = sandbox.submit("outpatient_forecast", test)
print(json.dumps({"status": r.status, "text": str(r)}))
"""

NOTE = """
import json, os
from pathlib import Path
p = Path.home() / "team-beta-notes.txt"
p.write_text("our secret features")
print(json.dumps({"file": str(p), "mode": oct(p.stat().st_mode & 0o777)}))
"""

TRY_READ = """
import json, os
out = {}
for what, path in json.loads(%r).items():
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read(16)
        out[what] = "read"
    except Exception as exc:
        out[what] = type(exc).__name__
print(json.dumps(out))
"""

OPEN_DATA = """
import json, os, sandbox
from pathlib import Path
root = Path(os.environ["CONTESTHUB_DATA_ROOT"])
count = sandbox.sql("SELECT count(*) FROM hospital_outpatient.daily_visits").fetchall()[0][0]
catalog = json.loads((root / "catalog.json").read_text("utf-8"))
parquet = next(root.rglob("*.parquet"))
writes = {}
for what, attempt in {
    "new file in the data root": lambda: (root / "mine.txt").write_text("x"),
    "new folder in a dataset": lambda: (root / "hospital_outpatient" / "v99").mkdir(),
    "overwrite a published file": lambda: open(parquet, "r+b").close(),
    "delete a published file": lambda: parquet.unlink(),
}.items():
    try:
        attempt()
        writes[what] = "written"
    except Exception as exc:
        writes[what] = type(exc).__name__
print(json.dumps({"count": count, "datasets": len(catalog["datasets"]), "writes": writes}))
"""


# --- the tests -----------------------------------------------------------------------------


@needs_root
def test_each_contestant_runs_as_own_account_with_the_sandbox_interpreter(secure_hub, two_teams):
    hub = secure_hub
    expected = interpreter.sandbox_python(hub.settings.sandbox_python)
    for name, token in two_teams.values():
        who = run(hub, (name, token), WHO)
        account = pwd.getpwnam(system_username(PREFIX, name))
        assert who["user"] == account.pw_name == f"{PREFIX}{name}"
        assert who["home"] == account.pw_dir == str(hub.settings.home_root / name)
        home = Path(account.pw_dir).stat()
        assert (home.st_uid, stat.S_IMODE(home.st_mode)) == (account.pw_uid, 0o700)
        # The server and its kernel both run the interpreter every account can run; the kernel
        # spec names `python`, which jupyter_client replaces with the server's sys.executable.
        assert who["server_cmd"] == [str(expected), "-m", "jupyterhub.singleuser"]
        assert who["executable"] == str(expected)
        assert who["spec_argv0"] in ("python", "python3", str(expected))
        assert who["path0"] == str(Path(expected).parent)
        assert hidden_from_others(Path(who["real_executable"])) is None
    if interpreter.is_same_interpreter(interpreter.probe(sys.executable)):
        assert expected == Path(sys.executable)
    else:  # this machine's case: the hub's Python is closed to other accounts
        assert expected == interpreter.DEFAULT_DIR / "bin" / "python"


@needs_root
def test_a_contestant_cannot_read_solutions_other_homes_or_the_store(secure_hub, two_teams):
    hub = secure_hub
    a, b = two_teams["alpha"], two_teams["beta"]
    private = hub.settings.private_root
    solution = next((private / "solutions").rglob("*.parquet"))
    note = Path(run(hub, b, NOTE)["file"])
    assert note.is_relative_to(hub.settings.home_root / b[0])

    if "submit" in hub.services:  # A submits from its notebook: the service stores the file
        result = run(hub, a, SUBMIT)
        assert result["status"] == "scored", result["text"]
    else:  # no service here: the store as the organizer's tools make it
        import io

        from leaderboard import store
        from sandbox.settings import PROJECT_ROOT, Paths

        s = store.connect(Paths(hub.settings.data_root, private, PROJECT_ROOT / "datasets"))
        s.files.keep(s.files.receive(io.BytesIO(b"date,hospital_id,outpatient_visits\n"), 2**20))
        s.dispose()
    database = private / "contest.sqlite"
    stored = next(p for p in (private / "submissions").glob("??/*") if p.is_file())
    assert database.is_file()

    targets = {
        "hidden solution": solution,
        "the solutions folder": private / "solutions",
        "B's notes": note,
        "B's home": note.parent,
        "B's starter notebook": next(note.parent.glob("*.ipynb")),
        "the store database": database,
        "a stored submission": stored,
        "the hub's secrets": hub.settings.runtime_dir / "jupyterhub_cookie_secret",
    }
    seen = run(hub, a, TRY_READ % json.dumps({k: str(v) for k, v in targets.items()}))
    assert seen == dict.fromkeys(targets, "PermissionError"), seen

    # The same, uncaught, as a contestant sees it in a notebook.
    out = kernel_run(hub, *a, f"open({str(solution)!r}, 'rb').read()")
    assert out["error"] is not None and "PermissionError" in out["error"], out
    # B can read its own file (the wall is between accounts, not in front of every file).
    assert run(hub, b, TRY_READ % json.dumps({"mine": str(note)})) == {"mine": "read"}


@needs_root
def test_a_contestant_reads_the_open_data_but_cannot_change_it(secure_hub, two_teams):
    hub = secure_hub
    out = run(hub, two_teams["alpha"], OPEN_DATA)
    assert out["count"] > 0 and out["datasets"] > 0
    assert out["writes"] == dict.fromkeys(out["writes"], "PermissionError"), out["writes"]
    assert not (hub.settings.data_root / "mine.txt").exists()


# --- the checks that refuse to start -------------------------------------------------------


def test_no_python_for_other_accounts_refuses_with_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(interpreter, "can_probe", lambda: True)
    monkeypatch.setattr(
        interpreter,
        "probe",
        lambda python, modules=(), timeout=0: interpreter.Probe(str(python), False, {}, "Permission denied"),
    )
    with pytest.raises(interpreter.SandboxPythonError) as err:
        interpreter.sandbox_python("", target=tmp_path / "sandbox-python")
    (major, minor), _ = interpreter.abi()
    message = err.value.en
    assert f"apt-get install python{major}.{minor} python{major}.{minor}-venv" in message
    assert "sandbox_python" in message and "Permission denied" in message
    assert not (tmp_path / "sandbox-python").exists()


def test_an_explicit_sandbox_python_of_another_abi_is_refused(monkeypatch):
    monkeypatch.setattr(interpreter, "can_probe", lambda: True)
    info = {"version": [2, 7, 18], "soabi": "", "executable": "/usr/bin/python2", "prefix": "/usr"}
    monkeypatch.setattr(
        interpreter,
        "probe",
        lambda python, modules=(), timeout=0: interpreter.Probe(str(python), True, {**info, "base_prefix": "/usr"}),
    )
    with pytest.raises(interpreter.SandboxPythonError, match="need Python 3"):
        interpreter.sandbox_python("/usr/bin/python2")


def test_the_sandbox_interpreter_is_built_once_and_imports_contesthub(tmp_path):
    (major, minor), _ = interpreter.abi()
    base = Path(f"/usr/bin/python{major}.{minor}")
    if not base.exists():
        pytest.skip(f"{base} is not installed")
    target = tmp_path / "sandbox-python"
    python = interpreter.build(target, base=base)
    stamp = (target / interpreter.STAMP).stat().st_mtime_ns
    assert interpreter.build(target, base=base) == python  # reused, not made again
    assert (target / interpreter.STAMP).stat().st_mtime_ns == stamp
    assert (target / "share").resolve() == (Path(sys.prefix) / "share").resolve()
    code = "import sys, sandbox, jupyterhub.singleuser, ipykernel; print(sys.executable, sys.version_info[:2])"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == str(python)
    # Another hub venv (or base) later: made again, whole.
    stamp_doc = json.loads((target / interpreter.STAMP).read_text())
    (target / interpreter.STAMP).write_text(json.dumps({**stamp_doc, "hub_prefix": "/elsewhere"}))
    assert interpreter.build(target, base=base) == python
    assert json.loads((target / interpreter.STAMP).read_text()) == stamp_doc


def test_secure_mode_problems_name_each_path_and_the_fix(open_root, tmp_path):
    data = open_root / "checks" / "data"
    (data / "ds" / "v1").mkdir(parents=True)
    for p in (open_root / "checks", data, data / "ds", data / "ds" / "v1"):
        p.chmod(0o755)
    secret = data / "ds" / "v1" / "t.parquet"
    secret.write_bytes(b"PAR1")
    secret.chmod(0o600)
    (data / "ds").chmod(0o777)
    private = open_root / "checks" / "private"
    private.mkdir(mode=0o755)
    private.chmod(0o755)
    settings = HubSettings.load(
        {"mode": "secure", "data_root": data, "private_root": private, "home_root": open_root / "checks" / "homes"},
        environ={},
    )
    text = "\n".join(secure_mode_problems(settings))
    assert f"cannot read: {secret}" in text and f"chmod -R o+rX {data}" in text
    assert f"writable by other accounts at {data / 'ds'}" in text
    assert f"the private root {private}" in text and f"chmod 700 {private}" in text
    assert "the home root" in text and "does not exist" in text
    if os.geteuid() != 0:
        assert "must run as root" in text


def test_a_bad_account_prefix_is_refused():
    with pytest.raises(SettingsError, match="system_user_prefix"):
        HubSettings.load({"system_user_prefix": "Bad Prefix"}, environ={})
    assert system_username("jupyter-", "ann") == "jupyter-ann"
    long = system_username("jupyter-", "a" * 31)
    assert len(long) == 32 and long.startswith("jupyter-aaaa")
