"""Secure mode end to end: contestants' servers run as their own Unix accounts, and stay apart.

A real JupyterHub with configurable-http-proxy in mode ``secure`` (tests/hub_fixtures.py):
two contestants in two teams, each with the Unix account ``cht-<name>`` the spawner creates
on first start, and a server running the sandbox interpreter (hub/interpreter.py). Code in
contestant A's kernel tries to read a hidden solution, a file in B's home, the contest store
and a stored submission file: PermissionError each time. A still reads the open data (with
``sandbox.sql``) and cannot write into it.

The attacks of issue 13, each on that hub: links planted in a home before a restart (root must
not follow them: the private root keeps its owner and mode, nothing is written outside the
home); a sign-up with the shortened name the old mapping gave a long name (its own account,
not the victim's); an account made by hand before its contestant signed up (refused, never
adopted); a kernel writing twice its memory limit and a fork loop past the process limit
(each stopped for that contestant alone while the hub, the submission service and another
contestant's kernel keep answering). Without a hub: the name mapping, the account record
(SQLite and PostgreSQL) and the ``setrlimit`` fallback.

The hub's folders live in a folder under /tmp opened to other accounts (pytest's own tmp
folders are closed to them); the open data and hidden solutions are copies of the session's
demo build. Accounts made here carry the prefix ``cht-`` and are deleted at the end (and,
left behind by an earlier run that was killed, at the start).

Needs root and useradd (the hub creates accounts and starts servers as them): skipped,
saying so, without them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from hub_fixtures import hub_settings, kernel_run, running_hub

from hub import interpreter
from hub.sandboxes import hidden_from_others, secure_mode_problems
from hub.settings import HubSettings, SettingsError
from hub.unix_accounts import system_username, useradd_command

PREFIX = "cht-"  # the test accounts' prefix: cht-<hub name>
MEM_LIMIT = "1G"  # per contestant: a kernel allocating twice as much must die alone
MAX_PROCESSES = 200  # per contestant: processes and threads

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
    settings = hub_settings(
        open_root, data, mode="secure", system_user_prefix=PREFIX, mem_limit=MEM_LIMIT, max_processes=MAX_PROCESSES
    )
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
    org = hub.new_token(hub.organizer, session=hub.organizer_session())
    people = {}
    for team in ("alpha", "beta"):
        name, _, session = hub.account()
        token = hub.new_token(name, session=session)
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


# --- attacks on the hub's root powers and on the accounts (issue 13) -------------------------


def stop_server(hub, name: str, token: str, timeout: float = 60) -> None:
    r = hub.api("DELETE", f"/users/{name}/server", token=token)
    assert r.status_code in (202, 204), (r.status_code, r.text)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = hub.api("GET", f"/users/{name}", token=token).json()
        if not model.get("servers") and not model.get("pending"):
            return
        time.sleep(0.5)
    raise AssertionError(f"the server of {name} did not stop:\n{hub.process.log_tail(40)}")


def spawner_state(hub, name: str) -> dict:
    """The spawner's state in the hub's database (what a restarted hub starts from)."""
    import sqlite3

    db = hub.settings.db_url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(db)) as con:
        (state,) = con.execute(
            "SELECT s.state FROM spawners s JOIN users u ON s.user_id = u.id WHERE u.name = ? AND s.name = ''", (name,)
        ).fetchone()
    return json.loads(state or "{}")


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for init to reap it does not)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_line[stat_line.rindex(")") + 2] != "Z"


PLANT = """
import json, os, shutil
from pathlib import Path
home = Path.home()
shutil.rmtree(home / ".contesthub")
os.symlink(%(private)r, home / ".contesthub")
(home / "getting_started.ipynb").unlink()
os.symlink(%(target)r, home / "getting_started.ipynb")
import subprocess  # and a job left running in the background when the server stops
job = subprocess.Popen(["sleep", "600"], start_new_session=True)
print(json.dumps({"links": sorted(p.name for p in home.iterdir() if p.is_symlink()), "job": job.pid}))
"""


@needs_root
def test_root_follows_no_link_planted_in_a_home(secure_hub):
    """`~/.contesthub -> <private root>` and a dangling `~/getting_started.ipynb -> /etc/...`, then a restart."""
    hub = secure_hub
    private = hub.settings.private_root
    target = Path(f"/etc/contesthub-attack-{uuid.uuid4().hex[:8]}")
    before = private.stat()
    listing = sorted(p.name for p in private.iterdir())
    name, _, session = hub.account()
    token = hub.new_token(name, session=session)
    hub.spawn(name, token, timeout=240)
    home = hub.settings.home_root / name
    try:
        planted = run(hub, (name, token), PLANT % {"private": str(private), "target": str(target)})
        assert planted["links"] == [".contesthub", "getting_started.ipynb"]
        groups = spawner_state(hub, name).get("limit_groups", [])
        stop_server(hub, name, token)
        from hub.limits import choose

        if choose("auto")[0].name == "cgroup":  # a stopped contestant runs nothing (hub/limits.py)
            assert groups and all(g.endswith(f"/contesthub/{system_username(PREFIX, name)}") for g in groups)
            assert not running(planted["job"])
            assert not any(Path(g).exists() for g in groups)  # removed, as the hub's state named them
        hub.spawn(name, token, timeout=240)  # the pre-spawn hook runs again, over the planted links

        after = private.stat()
        assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == (
            before.st_uid,
            before.st_gid,
            stat.S_IMODE(before.st_mode),
        )
        assert (before.st_uid, stat.S_IMODE(before.st_mode)) == (0, 0o700)
        assert sorted(p.name for p in private.iterdir()) == listing  # no starters.json written into it
        assert not target.exists() and not target.is_symlink()  # nothing written outside the home
        assert (home / ".contesthub").is_symlink() and (home / "getting_started.ipynb").is_symlink()
        assert "Left alone in" in hub.process.log_tail(200)
        # The contestant still cannot read the private root through their link.
        seen = run(hub, (name, token), TRY_READ % json.dumps({"via the link": str(home / ".contesthub")}))
        assert seen == {"via the link": "PermissionError"}
    finally:
        target.unlink(missing_ok=True)
        os.chown(private, before.st_uid, before.st_gid)  # on the old code the attack took it over
        os.chmod(private, stat.S_IMODE(before.st_mode))


def old_system_username(prefix: str, name: str) -> str:
    """The mapping contesthub used before issue 13: a long name shortened to 26 characters and 5 hex digits."""
    full = f"{prefix}{name}"
    return full if len(full) <= 32 else f"{full[:26]}-{hashlib.sha256(name.encode()).hexdigest()[:5]}"


@needs_root
def test_a_name_equal_to_a_shortened_name_gets_an_account_of_its_own(secure_hub):
    """The attack: sign up with the shortened tail of a victim's long name, to get the victim's account."""
    hub = secure_hub
    victim = f"v{uuid.uuid4().hex[:29]}"  # 30 characters: cht-<30> is too long for useradd
    squatter = old_system_username(PREFIX, victim).removeprefix(PREFIX)
    assert len(squatter) <= 31 and squatter != victim
    v_name, _, v_session = hub.account(victim)
    v_token = hub.new_token(v_name, session=v_session)
    hub.spawn(v_name, v_token, timeout=240)
    note = Path(run(hub, (v_name, v_token), NOTE)["file"])

    s_name, _, s_session = hub.account(squatter)
    s_token = hub.new_token(s_name, session=s_session)
    hub.spawn(s_name, s_token, timeout=240)
    v_who, s_who = run(hub, (v_name, v_token), WHO), run(hub, (s_name, s_token), WHO)
    assert s_who["user"] != v_who["user"]
    assert pwd.getpwnam(s_who["user"]).pw_uid != pwd.getpwnam(v_who["user"]).pw_uid
    assert (s_who["home"], v_who["home"]) == (str(hub.settings.home_root / s_name), str(note.parent))
    assert run(hub, (s_name, s_token), TRY_READ % json.dumps({"victim's notes": str(note)})) == {
        "victim's notes": "PermissionError"
    }
    # The hub recorded each account and uid for its hub user.
    from hub.unix_accounts import UnixAccounts

    store = UnixAccounts(hub.settings.db_url)
    try:
        for name, who in ((v_name, v_who), (s_name, s_who)):
            record = store.get(name)
            assert (record.account, record.uid) == (who["user"], pwd.getpwnam(who["user"]).pw_uid)
    finally:
        store.engine.dispose()


@needs_root
def test_an_account_not_made_for_a_hub_user_is_never_adopted(secure_hub, open_root):
    hub = secure_hub
    name = f"s{uuid.uuid4().hex[:10]}"
    account = system_username(PREFIX, name)
    squat_home = open_root / f"squat-{name}"
    useradd = useradd_command()
    subprocess.run(
        [useradd, "--create-home", "--home-dir", str(squat_home), "--user-group", account], check=True, timeout=60
    )
    (squat_home / "planted.txt").write_text("made before the contestant signed up")
    owner = squat_home.stat()
    name, _, session = hub.account(name)
    token = hub.new_token(name, session=session)

    r = hub.api("POST", f"/users/{name}/server", token=token, json={"accept_rules": True})
    assert r.status_code == 403, (r.status_code, r.text)
    message = r.json()["message"]
    assert "它将使用的 Unix 账号已经存在，且不是为你创建的" in message and "not made for you" in message
    model = hub.api("GET", f"/users/{name}", token=token).json()
    assert not model.get("servers") and not model.get("pending"), model
    log = hub.process.log_tail(300)
    assert f"Unix account {account} for hub user {name} already exists" in log and "never adopted" in log
    assert (squat_home.stat().st_uid, squat_home.stat().st_mode) == (owner.st_uid, owner.st_mode)
    assert not (squat_home / ".contesthub").exists()  # no starter handed out into it
    assert not (hub.settings.home_root / name).exists()


HOG = """
import os
limit = int(os.environ["MEM_LIMIT"])
hog = b"x" * (2 * limit)  # every byte written: resident, not just reserved
print("survived", len(hog))
"""

LIMITS = """
import json, os, resource
from pathlib import Path
groups = dict(line.split(":", 2)[1:] for line in Path("/proc/self/cgroup").read_text().splitlines())
print(json.dumps({
    "groups": groups,
    "mem_limit": int(os.environ["MEM_LIMIT"]),
    "rlimit_data": resource.getrlimit(resource.RLIMIT_DATA)[0],
    "rlimit_nproc": resource.getrlimit(resource.RLIMIT_NPROC)[0],
}))
"""

FORK = """
import json, subprocess, time
procs, error = [], None
try:
    for _ in range(%(limit)d + 50):
        procs.append(subprocess.Popen(["sleep", "300"]))
except OSError as exc:
    error = type(exc).__name__
time.sleep(%(hold)d)  # held at the cap while another contestant works
for p in procs:
    p.kill()
for p in procs:
    p.wait()
print(json.dumps({"started": len(procs), "error": error}))
"""

OTHER_WORKS = """
import json, subprocess, sandbox
n = sandbox.sql("SELECT count(*) FROM hospital_outpatient.daily_visits").fetchall()[0][0]
started = [subprocess.Popen(["sleep", "1"]) for _ in range(20)]
print(json.dumps({"rows": n, "processes": sum(p.wait() == 0 for p in started)}))
"""


@needs_root
def test_each_contestant_runs_inside_its_limits(secure_hub, two_teams):
    from hub.limits import choose

    hub = secure_hub
    name, token = two_teams["alpha"]
    account = system_username(PREFIX, name)
    seen = run(hub, (name, token), LIMITS)
    assert seen["mem_limit"] == hub.settings.mem_limit_bytes
    mechanism, why = choose("auto")  # the tests run where the hub runs: the same answer
    print(f"limits here: {mechanism.describe()}" + (f" (no cgroup: {why})" if why else ""))
    if mechanism.name == "cgroup":
        for controller in ("memory", "pids"):
            assert seen["groups"][controller].endswith(f"/contesthub/{account}"), seen["groups"]
        groups = mechanism.groups(account)
        assert int((groups["memory"] / "memory.limit_in_bytes").read_text()) == hub.settings.mem_limit_bytes
        assert int((groups["pids"] / "pids.max").read_text()) == MAX_PROCESSES
        assert (groups["memory"] / "cgroup.procs").stat().st_uid == 0  # the contestant cannot leave it
    else:
        assert (seen["rlimit_data"], seen["rlimit_nproc"]) == (hub.settings.mem_limit_bytes, MAX_PROCESSES)


def _others_keep_answering(hub, other: tuple[str, str], results: dict) -> None:
    """While one contestant misbehaves: the hub's API, the submission service, another contestant's kernel."""
    t0 = time.monotonic()
    results["hub"] = hub.api("GET", "/", timeout=30).status_code
    if "submit" in hub.services:
        results["submit"] = hub.service("GET", "health", None, timeout=30).status_code
    results["other"] = run(hub, other, OTHER_WORKS)
    results["seconds"] = time.monotonic() - t0


@needs_root
def test_a_kernel_over_its_memory_limit_dies_alone(secure_hub, two_teams):
    hub = secure_hub
    alpha, beta = two_teams["alpha"], two_teams["beta"]
    results: dict = {}
    other = threading.Thread(target=_others_keep_answering, args=(hub, beta, results))
    other.start()
    out = kernel_run(hub, *alpha, HOG, timeout=300)
    other.join(300)
    print("memory hog:", {k: out.get(k) for k in ("died", "run")}, (out["error"] or "")[-300:], results)
    # Killed by the kernel's OOM killer inside its group (cgroup), or MemoryError (setrlimit).
    assert "survived" not in out["stdout"], out
    assert out["died"] or "MemoryError" in (out["error"] or ""), out
    assert results["hub"] == 200
    assert results.get("submit", 200) == 200
    assert results["other"]["rows"] > 0 and results["other"]["processes"] == 20
    # Alpha's own server lives on: a new kernel answers.
    assert run(hub, alpha, "import json; print(json.dumps(6 * 7))") == 42


@needs_root
def test_a_fork_bomb_stops_at_the_process_limit(secure_hub, two_teams):
    hub = secure_hub
    alpha, beta = two_teams["alpha"], two_teams["beta"]
    results: dict = {}
    other = threading.Thread(target=_others_keep_answering, args=(hub, beta, results))
    box: dict = {}
    bomb = threading.Thread(target=lambda: box.update(run(hub, alpha, FORK % {"limit": MAX_PROCESSES, "hold": 10})))
    bomb.start()
    time.sleep(6)  # alpha is at its cap by now (a few hundred `sleep`s take about a second)
    other.start()
    other.join(300)
    bomb.join(300)
    print("fork bomb:", box, results)
    assert box["error"] == "BlockingIOError", box  # EAGAIN: fork refused
    assert 0 < box["started"] < MAX_PROCESSES
    assert results["hub"] == 200 and results.get("submit", 200) == 200
    assert results["other"]["processes"] == 20, results  # beta starts processes while alpha is at its cap
    assert run(hub, alpha, "import json; print(json.dumps(6 * 7))") == 42


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


# --- account names, the record, the limits: without a hub --------------------------------------


@pytest.mark.parametrize("prefix", ["jupyter-", PREFIX, "p" * 16, "j"])
def test_account_names_are_injective(prefix):
    """No two hub names share a Unix account: short ones stay as they are, long ones get exactly 32 characters."""
    from hub.unix_accounts import MAX_NAME

    names = {f"{a}{'x' * n}" for n in range(31) for a in "ab"} | {f"{uuid.uuid4().hex[:n]}" for n in range(1, 32)}
    # The attack on the old mapping: each long name's shortened tail, signed up as a name of its own.
    names |= {old_system_username(prefix, n).removeprefix(prefix) for n in list(names)}
    names = {n for n in names if 0 < len(n) <= 31}
    accounts = {n: system_username(prefix, n) for n in names}
    assert len(set(accounts.values())) == len(names)
    for name, account in accounts.items():
        assert len(account) <= MAX_NAME and account.startswith(prefix)
        assert (account == prefix + name) == (len(prefix + name) < MAX_NAME)
        assert len(account) < MAX_NAME or account != prefix + name
    victim = "v" * 30
    assert system_username(PREFIX, old_system_username(PREFIX, victim).removeprefix(PREFIX)) != system_username(
        PREFIX, victim
    )


def test_an_account_is_used_only_for_the_hub_user_it_was_recorded_for(db_url, tmp_path):
    """Existing accounts of this machine (``bin``, ``daemon``, ``nobody``) stand in for squatted ones."""
    from hub.unix_accounts import AccountRefused, UnixAccounts, ensure_account

    store = UnixAccounts(db_url)
    logged: list[str] = []
    try:
        # Made by someone else, never recorded: refused, not adopted (nothing is created either).
        with pytest.raises(AccountRefused, match="not made for you") as err:
            ensure_account(store, "", "nobody", tmp_path / "nobody", log=logged.append)
        assert "不是为你创建的" in str(err.value) and "never adopted" in logged[-1]
        # Recorded, with its uid: used.
        bin_ = pwd.getpwnam("bin")
        store.add("bin", "bin", bin_.pw_uid)
        assert ensure_account(store, "", "bin", tmp_path / "bin", log=logged.append) == bin_
        # Recorded, but the account's uid is no longer the recorded one: refused.
        store.add("daemon", "daemon", 987_654)
        with pytest.raises(AccountRefused, match="was changed"):
            ensure_account(store, "", "daemon", tmp_path / "daemon", log=logged.append)
        assert "not the recorded 987654" in logged[-1]
        # The account the mapping gives is recorded for another hub user: refused.
        store.add("someone", "x-nobody", 876_543)
        with pytest.raises(AccountRefused):
            ensure_account(store, "x-", "nobody", tmp_path / "n", log=logged.append)
        assert "was made for hub user someone" in logged[-1]
        # One account, one uid, one hub user: the record itself refuses a second claim.
        from sqlalchemy.exc import IntegrityError

        for claim in (("other", "bin", 765_432), ("other", "other", bin_.pw_uid), ("bin", "y", 654_321)):
            with pytest.raises(IntegrityError):
                store.add(*claim)
    finally:
        store.engine.dispose()


RLIMIT_CHILD = r"""
import json, os, subprocess, sys
out = {}
try:
    hog = b"x" * (2 * int(sys.argv[1]))
    out["memory"] = "survived"
except MemoryError:
    out["memory"] = "MemoryError"
procs = []
try:
    for _ in range(int(sys.argv[2]) + 20):
        procs.append(subprocess.Popen(["sleep", "60"]))
    out["fork"] = "unlimited"
except OSError as exc:
    out["fork"] = type(exc).__name__
out["started"] = len(procs)
for p in procs:
    p.kill()
    p.wait()
print(json.dumps(out))
"""


def test_the_setrlimit_fallback_stops_memory_and_processes():
    """What a server gets where no cgroup can be made: MemoryError past mem_limit, EAGAIN past max_processes.

    RLIMIT_NPROC does not bind root: run as ``nobody`` (as a contestant's account) where this runs as root.
    """
    from hub.limits import Limits, RlimitLimits

    limits = Limits(memory=256 * 2**20, processes=40)
    mechanism = RlimitLimits()
    mechanism.prepare("nobody", limits)
    python, as_other = sys.executable, {}
    if os.geteuid() == 0:  # the hub's venv may be closed to other accounts: the system's Python, as nobody
        python = shutil.which("python3", path="/usr/bin:/bin")
        if python is None:
            pytest.skip("no /usr/bin/python3 to run as nobody")
        as_other = {"user": "nobody", "group": pwd.getpwnam("nobody").pw_gid, "extra_groups": []}
    run = subprocess.run(
        [python, "-c", RLIMIT_CHILD, str(limits.memory), str(limits.processes)],
        preexec_fn=mechanism.preexec("nobody", limits),
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
        **as_other,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    assert out["memory"] == "MemoryError"
    assert out["fork"] == "BlockingIOError" and out["started"] < limits.processes, out
