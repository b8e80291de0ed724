"""Start JupyterHub with config/jupyterhub_config.py, wait until it answers, stop all of it.

Used by ``contesthub up`` and by the tests. JupyterHub starts configurable-http-proxy, the
hub-managed services and every contestant's server itself, each in a session of its own
(so a terminal's Ctrl-C does not reach them directly). :meth:`HubProcess.stop` therefore
notes every process below the hub first, asks the hub to shut down (it stops the servers,
the services and the proxy), and then ends whatever of those processes is still there: no
process started for the hub outlives it.

A hub that dies without stopping them (SIGKILL, the OOM killer) takes its managed services
with it: each asks the kernel for SIGTERM when the hub dies (hub/die_with_parent.py,
hub/services.py). Its proxy and the contestants' servers stay: the next hub started with the
same settings replaces the proxy (its pid file) and finds the servers again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from hub.runtime import ensure_dir
from hub.settings import HubSettings
from sandbox.settings import PROJECT_ROOT

CONFIG = PROJECT_ROOT / "config" / "jupyterhub_config.py"


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports nobody listens on now, for a hub started by a test or benchmark.

    All are held open together while they are picked, so the same port is not handed out twice.
    """
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class HubError(RuntimeError):
    pass


# --- processes below a pid (Linux /proc) ---------------------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may contain spaces and parentheses
    return int(fields[1]), int(fields[19])


def descendants(pid: int) -> list[tuple[int, int]]:
    """Every process below ``pid``, as (pid, start time) so a reused pid is never mistaken."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st:
                children.setdefault(st[0], []).append((int(entry), st[1]))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child[0])
    return out


def _alive(proc: tuple[int, int]) -> bool:
    st = _stat(proc[0])
    return st is not None and st[1] == proc[1]


def _signal_all(procs: list[tuple[int, int]], sig: int) -> None:
    for p in procs:
        if _alive(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p[0], sig)


def _wait_gone(procs: list[tuple[int, int]], timeout: float) -> list[tuple[int, int]]:
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in procs if _alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


# --- the hub -------------------------------------------------------------------------------


class HubProcess:
    """One JupyterHub process started with ``settings`` (handed over as CONTESTHUB_* variables)."""

    def __init__(
        self,
        settings: HubSettings,
        *,
        extra_env: Mapping[str, str] | None = None,
        log: IO | str | os.PathLike | None = None,
        config: Path = CONFIG,
    ):
        self.settings = settings
        self.extra_env = dict(extra_env or {})
        self.log = log
        self.config = config
        self.proc: subprocess.Popen | None = None
        self._log_file: IO | None = None
        self._below: list[tuple[int, int]] = []

    @property
    def log_path(self) -> Path | None:
        return Path(self.log) if isinstance(self.log, str | os.PathLike) else None

    def start(self) -> HubProcess:
        runtime = ensure_dir(self.settings.runtime_dir)
        env = {**os.environ, **self.settings.to_env(), **self.extra_env}
        if isinstance(self.log, str | os.PathLike):
            self._log_file = open(self.log, "ab")  # noqa: SIM115 -- open while the hub runs
            out = self._log_file
        else:
            out = self.log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(self.config)],
            cwd=runtime,  # anything JupyterHub writes beside itself stays in the private root
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            start_new_session=True,  # our signal handler decides how it stops
        )
        return self

    def refresh(self) -> list[tuple[int, int]]:
        """Note the processes below the hub now (called while supervising, and when stopping)."""
        if self.proc is not None and self.proc.poll() is None:
            for p in descendants(self.proc.pid):
                if p not in self._below:
                    self._below.append(p)
        return list(self._below)

    def poll(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def log_tail(self, lines: int = 40) -> str:
        path = self.log_path
        if not path or not path.exists():
            return ""
        return "\n".join(path.read_text("utf-8", "replace").splitlines()[-lines:])

    def wait_ready(self, timeout: float = 90, cancel: threading.Event | None = None) -> dict | None:
        """Wait until the hub answers through the proxy; its ``/hub/api`` answer (the version).

        None if ``cancel`` was set meanwhile (Ctrl-C while starting).
        """
        url = f"{self.settings.public_url}/hub/api/"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                return None
            self.refresh()  # a hub that dies while starting may leave its proxy behind: note it
            if self.poll() is not None:
                raise HubError(f"JupyterHub exited with code {self.proc.returncode}\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        return json.load(r)
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                pass
            time.sleep(0.25)
        raise HubError(f"JupyterHub did not answer at {url} within {timeout:.0f} s\n{self.log_tail()}")

    def stop(self, timeout: float = 30) -> int | None:
        """Shut the hub down gracefully, then end anything it had started that is still running."""
        if self.proc is None:
            return None
        below = self.refresh()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                below = self.refresh()  # servers started while shutting down count too
                time.sleep(0.1)
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        below = [p for p in below if _alive(p)]
        _signal_all(below, signal.SIGTERM)
        left = _wait_gone(below, 5)
        _signal_all(left, signal.SIGKILL)
        _wait_gone(left, 5)
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        return self.proc.returncode

    def __enter__(self) -> HubProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
