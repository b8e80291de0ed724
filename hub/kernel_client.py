"""Run code in a contestant's kernel through the hub, as JupyterLab does: :func:`run_code`.

It starts a kernel on the user's running server (``POST /user/<name>/api/kernels``, through
the proxy), sends one ``execute_request`` over the kernel's websocket, collects what the cell
prints and any error until the kernel is idle again, and shuts the kernel down. Used by the
end-to-end hub tests (tests/hub_fixtures.py ``kernel_run``) and the hub benchmarks
(benchmarks/_hub.py). ``requests`` and ``websocket-client`` come with JupyterHub and
jupyter_server.
"""

from __future__ import annotations

import json
import time
import uuid

import requests


class KernelError(RuntimeError):
    """The kernel could not be started, or did not answer in time."""


def _execute_request(user: str, code: str) -> dict:
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "session": uuid.uuid4().hex,
            "username": user,
            "msg_type": "execute_request",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "channel": "shell",
        "buffers": [],
        "content": {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
    }


def run_code(hub_url: str, user: str, token: str, code: str, timeout: float = 120, notebook: str | None = None) -> dict:
    """Run ``code`` in a new kernel of ``user``'s server behind ``hub_url`` (the public URL).

    Returns ``{"stdout", "error", "died", "start", "run"}``: what the cell printed, the traceback
    of an error (None without one), whether the kernel process died meanwhile (killed for its
    memory, say: the server then says "restarting", as JupyterLab shows), and the seconds it
    took to start the kernel and to run the cell.
    ``token`` is one of the user's tokens. The kernel is shut down afterwards, whatever happens.
    ``notebook``: a notebook's path in the user's server; the kernel is started for it as
    JupyterLab does when it opens the notebook (a session: the kernel knows its notebook).
    Raises :class:`KernelError` when the kernel does not start or does not answer in ``timeout``.
    """
    import websocket

    base = f"{hub_url}/user/{user}/api"
    headers = {"Authorization": f"token {token}"}
    t0 = time.perf_counter()
    if notebook is None:
        r = requests.post(f"{base}/kernels", json={"name": "python3"}, headers=headers, timeout=timeout)
    else:
        session = {
            "path": notebook,
            "name": notebook.rsplit("/", 1)[-1],
            "type": "notebook",
            "kernel": {"name": "python3"},
        }
        r = requests.post(f"{base}/sessions", json=session, headers=headers, timeout=timeout)
    if r.status_code != 201:
        raise KernelError(f"starting a kernel: POST {r.url} -> {r.status_code} {r.text[:500]}")
    kernel_id = r.json()["id"] if notebook is None else r.json()["kernel"]["id"]
    ws_url = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + f"/kernels/{kernel_id}/channels"
    try:
        ws = websocket.create_connection(ws_url, header=[f"Authorization: token {token}"], timeout=timeout)
        started = time.perf_counter() - t0
        t1 = time.perf_counter()
        try:
            request = _execute_request(user, code)
            msg_id = request["header"]["msg_id"]
            ws.send(json.dumps(request))
            stdout, error, replied, idle, died = [], None, False, False, False
            deadline = time.monotonic() + timeout
            while not (replied and idle) and time.monotonic() < deadline:
                msg = json.loads(ws.recv())
                kind = msg["msg_type"]
                state = msg.get("content", {}).get("execution_state") if kind == "status" else None
                if state in ("restarting", "dead"):  # the server's notice: the kernel process died
                    died = True
                    error = error or f"The kernel died ({state})."
                    break
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                if kind == "stream" and msg["content"]["name"] == "stdout":
                    stdout.append(msg["content"]["text"])
                elif kind == "error":
                    error = "\n".join(msg["content"]["traceback"])
                elif kind == "execute_reply":
                    replied = True
                elif kind == "status" and msg["content"]["execution_state"] == "idle":
                    idle = True
            if not ((replied and idle) or died):
                raise KernelError(f"the kernel did not answer within {timeout:.0f} s")
        finally:
            ws.close()
        run = time.perf_counter() - t1
        return {"stdout": "".join(stdout), "error": error, "died": died, "start": started, "run": run}
    finally:
        requests.delete(f"{base}/kernels/{kernel_id}", headers=headers, timeout=timeout)
