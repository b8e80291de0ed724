"""``contesthub up`` as a person runs it: first start, Ctrl-C, restart.

The command runs as a real process (``contesthub ... up --no-build``) over the session's demo
data, on free ports, with its own private and home roots. The test reads what it prints,
logs in with the organizer password it printed, sends SIGINT as a terminal's Ctrl-C does, and
checks that every process it had started is gone and that a restart keeps the account.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from contest_fixtures import LIBFAKETIME, moved_clock
from hub_fixtures import RunningHub, available_services, kernel_run

import sandbox
from hub.launcher import _alive, descendants, free_ports
from hub.settings import HubSettings


class Up:
    """One ``contesthub up`` process and what it printed."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(
            [*CONTESTHUB, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.proc.poll() is not None:
                self._reader.join(5)
                if text in self.output:
                    return
                raise AssertionError(f"contesthub up exited ({self.proc.returncode}):\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout} s:\n{self.output}")
            time.sleep(0.2)

    def interrupt(self, timeout: float = 60) -> int:
        """What a terminal's Ctrl-C does; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        self.proc.stdout.close()
        return code


CH = "outpatient_forecast"
CONTESTHUB = [sys.executable, "-c", "from hub.cli import main; main()"]


@pytest.fixture
def up_env(demo, tmp_path):
    ports = free_ports(5)
    flags = [
        "--port",
        str(ports[0]),
        "--hub-port",
        str(ports[1]),
        "--proxy-api-port",
        str(ports[2]),
        "--submit-port",
        str(ports[3]),
        "--leaderboard-port",
        str(ports[4]),
        "--home-root",
        str(tmp_path / "homes"),
        "--services",
        available_services(),
        "--no-build",
    ]
    root = ["--data-root", str(demo.data_root), "--private-root", str(tmp_path / "private"), "--lang", "en"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTESTHUB_")}
    env["CONTESTHUB_HUB_CONFIG"] = str(tmp_path / "none.toml")  # defaults only, then the flags
    (tmp_path / "none.toml").write_text("")
    settings = HubSettings.load(
        {
            "port": ports[0],
            "hub_port": ports[1],
            "proxy_api_port": ports[2],
            "submit_port": ports[3],
            "leaderboard_port": ports[4],
            "data_root": demo.data_root,
            "private_root": tmp_path / "private",
            "home_root": tmp_path / "homes",
        },
        environ={},
    )
    return [*root, "up", *flags], env, settings


def test_up_prints_urls_and_organizer_once_and_ctrl_c_stops_everything(up_env):
    """First start prints the password; Ctrl-C ends the hub, proxy, services and servers; restart keeps all."""
    args, env, settings = up_env
    first = Up(args, env)
    try:
        first.wait_for("Ctrl-C stops everything")
        out = first.output
        assert f"{settings.public_url}/hub/login" in out
        assert "WARNING: demo mode" in out
        password = re.search(r"password / 密码: (\S+)", out).group(1)
        below = descendants(first.proc.pid)
        hub = RunningHub(settings, None, settings.organizer, password)
        s = hub.login(settings.organizer, password)
        me = hub.api("GET", "/user", session=s).json()
        assert "organizers" in me["groups"]
        name, pw, session = hub.account()  # a contestant signs up, is approved, starts a server
        hub.spawn(name, hub.new_token(name, session=session))
        below += [p for p in descendants(first.proc.pid) if p not in below]
        assert len(below) >= 4  # jupyterhub, the proxy, the idle culler, the server (and the services)
    finally:
        code = first.interrupt()
    assert code == 0, first.output
    assert "stopped in" in first.output
    assert not [p for p in below if _alive(p)], "a process started by contesthub up outlived it"

    second = Up(args, env)
    try:
        second.wait_for("Ctrl-C stops everything")
        assert "shown only this once" not in second.output
        assert "(kept;" in second.output
        hub = RunningHub(settings, None, settings.organizer, password)
        hub.login(settings.organizer, password)  # the same password still works
        hub.login(name, pw)  # and so does the contestant's account
    finally:
        assert second.interrupt() == 0, second.output


# 23:30 UTC is already 1 March in Shanghai: the demo's day is the contest's, across a leap
# day and a day boundary.
MOVED = dt.datetime(2028, 2, 29, 23, 30, tzinfo=dt.UTC)


@pytest.mark.skipif(not LIBFAKETIME.exists(), reason="needs libfaketime (`python3 dev.py test` installs it)")
def test_a_fresh_up_under_a_moved_clock_opens_the_demo_and_scores_a_starter_submit_cell(up_env, demo):
    """Years after the demo file was written, `contesthub up` still starts an open demo, and a
    starter notebook run in a contestant's kernel is scored (every process shares the moved clock)."""
    args, env, settings = up_env
    shutil.copytree(demo.private_root / "solutions", settings.private_root / "solutions")
    up = Up(args, moved_clock(env, MOVED))
    try:
        up.wait_for("Ctrl-C stops everything")
        assert "demo contest open from 2028-01-31 to 2028-05-01 23:59 (Asia/Shanghai)" in up.output
        password = re.search(r"password / 密码: (\S+)", up.output).group(1)
        hub = RunningHub(settings, None, settings.organizer, password)
        org = hub.new_token(settings.organizer, session=hub.login(settings.organizer, password))
        name, _pw, session = hub.account()
        token = hub.new_token(name, session=session)
        r = hub.service("POST", "admin/teams", org, json={"name": "late-comers", "members": [name]})
        assert r.status_code == 201, r.text
        challenges = {c["id"]: c for c in hub.service("GET", "challenges", token).json()}
        assert challenges[CH]["opens"].startswith("2028-01-31") and challenges[CH]["closes"].startswith("2028-05-01")
        hub.spawn(name, token)
        out = kernel_run(hub, name, token, starter_code(CH), timeout=300)
        assert out["error"] is None, out["error"]
        result = json.loads(out["stdout"].strip().splitlines()[-1])
        assert result["status"] == "scored", result["text"]
        (quota,) = [q for q in hub.service("GET", "me", token).json()["quotas"] if q["challenge"] == CH]
        assert quota["used"] == 1 and quota["day"] == "2028-03-01"  # the contest's day, on the moved clock
    finally:
        assert up.interrupt() == 0, up.output


def starter_code(challenge_id: str) -> str:
    """Every code cell of the challenge's starter notebook, its submit cell's result printed as JSON."""
    nb = json.loads((Path(sandbox.__file__).parent / "notebooks" / f"{challenge_id}.ipynb").read_text("utf-8"))
    cells = [(c["source"], c.get("metadata", {}).get("tags", [])) for c in nb["cells"] if c["cell_type"] == "code"]
    body = ["".join(src) for src, tags in cells if "submit" not in tags]
    (submit,) = ["".join(src) for src, tags in cells if "submit" in tags]
    return "\n".join(
        [
            *body,
            f"r = {submit.strip()}",
            'import json; print(json.dumps({"status": r.status, "text": str(r)}, ensure_ascii=False))',
        ]
    )


def test_up_refuses_a_port_in_use(up_env):
    import socket

    args, env, settings = up_env
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", settings.port))
        busy.listen()
        r = subprocess.run([*CONTESTHUB, *args], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert f"port {settings.port} (port) is already in use" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_hub_that_dies_while_starting_leaves_no_process(demo, tmp_path):
    """JupyterHub exits when a managed service dies at start, without stopping its proxy: we do."""
    from hub_fixtures import hub_settings

    from hub.launcher import CONFIG, HubError, HubProcess

    settings = hub_settings(tmp_path, demo.data_root, services="none")
    port = free_ports(1)[0]
    config = tmp_path / "broken_config.py"
    config.write_text(
        f"load_subconfig({str(CONFIG)!r})\n"
        "c.JupyterHub.services.append(\n"
        f"    {{'name': 'broken', 'url': 'http://127.0.0.1:{port}',"
        f" 'command': [{sys.executable!r}, '-c', 'import time; time.sleep(3); raise SystemExit(3)']}}\n"
        ")\n"
    )
    process = HubProcess(settings, log=tmp_path / "hub.log", config=config).start()
    try:
        with pytest.raises(HubError, match="exited with code 1"):
            process.wait_ready(120)
        noted = process.refresh()
        assert noted, "the proxy was never noted"
    finally:
        process.stop()
    assert not [p for p in noted if _alive(p)], "the proxy of a dead hub is still running"


PARENT = """
import os, subprocess, sys
cmd = [sys.executable, "-m", "hub.die_with_parent", "--parent", str(os.getpid()), "--", *sys.argv[1:]]
child = subprocess.Popen(cmd, start_new_session=True)  # as JupyterHub starts a managed service
print(child.pid, flush=True)
child.wait()
"""


def test_a_command_started_through_die_with_parent_ends_when_its_parent_is_killed():
    """What every managed service but the submission service runs under (hub/services.py)."""
    script = "import time; time.sleep(300)"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, sys.executable, "-c", script], stdout=subprocess.PIPE)
    pid = None
    try:
        pid = int(parent.stdout.readline())
        child = next(p for p in descendants(parent.pid) if p[0] == pid)
        deadline = time.monotonic() + 30
        while script not in Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " "):  # exec'd: same pid
            assert time.monotonic() < deadline, "the command never ran"
            time.sleep(0.05)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(child) and "Z" not in _state(pid):
            assert time.monotonic() < deadline, "the command outlived its killed parent"
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        with contextlib.suppress(OSError):  # what a failed run left
            if pid and b"sleep(300)" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_die_with_parent_runs_the_command_as_itself_or_not_at_all():
    run = [sys.executable, "-m", "hub.die_with_parent"]
    assert subprocess.run([*run, "--", sys.executable, "-c", "raise SystemExit(7)"]).returncode == 7
    assert subprocess.run([*run, "--parent", str(os.getpid()), "--", "true"]).returncode == 0
    r = subprocess.run([*run, "--parent", "1", "--", "true"], capture_output=True, text=True)  # not our parent
    assert r.returncode == 1 and "parent process is gone" in r.stderr
    r = subprocess.run([*run, "--", "no-such-command-here"], capture_output=True, text=True)
    assert r.returncode == 127 and "cannot run no-such-command-here" in r.stderr
    assert subprocess.run([*run, "true"], capture_output=True).returncode == 2  # no "--"
