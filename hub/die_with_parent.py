"""``python -m hub.die_with_parent [--parent PID] -- COMMAND ...``: run COMMAND so that it ends with its parent.

JupyterHub starts its managed services (hub/services.py) in sessions of their own, so nothing
ends them when the hub itself dies without stopping them (SIGKILL, the OOM killer, a crash):
they go on unsupervised and hold their ports, and a hub started again cannot start its own.
This module asks the kernel to send it SIGTERM when its parent dies (Linux
``prctl(PR_SET_PDEATHSIG)``) and then *becomes* COMMAND (``execvp``): the request survives the
exec, so COMMAND runs with the same pid, environment, working folder and output as if the hub
had started it directly, receives the hub's own signals (Ctrl-C on ``contesthub up`` stops it as
before) and exits with its own code. No process stays in between.

``--parent PID``: the process that must be the parent (hub/services.py passes the hub's pid:
config/jupyterhub_config.py runs inside the hub). If the parent is no longer PID once the
request is made (the hub died while this process started), COMMAND is not run (exit 1).
Without it, the parent this process had when it started (not init).

What the kernel guarantees and what it does not:

* the signal is sent when the parent *thread* that started this process ends. JupyterHub starts
  its services from its main thread (its event loop), which lives as long as the hub;
* it is not inherited by COMMAND's own children (fork clears it): a service ends its own on
  SIGTERM (dask-gateway stops its clusters; Streamlit and the idle culler have none);
* it applies to this process and the services only: contestants' servers are started by the
  spawner without it, so they keep running when the hub is killed, and a hub started again
  finds them (``c.JupyterHub.cleanup_servers`` stops them on a clean shutdown only).

Elsewhere than Linux COMMAND is run the same way, without the request.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> bool:
    """Ask the kernel for ``sig`` when this process's parent dies (Linux).

    Returns False when the parent is already gone: it is not ``parent`` (default: the parent
    this process has now, which must not be init) once the request is in place.
    """
    expected = os.getppid() if parent is None else parent
    if parent is None and expected == 1:
        return False  # reparented to init already
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    # Checked after the request: a parent that died before it was made sends nothing.
    return os.getppid() == expected


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hub.die_with_parent",
        usage="%(prog)s [--parent PID] [--signal NAME] -- COMMAND ...",
        description="Run COMMAND (exec: same pid) so that it gets a signal when its parent dies.",
    )
    p.add_argument("--parent", type=int, help="the pid the parent must have (default: the parent at start)")
    p.add_argument("--signal", default="SIGTERM", help="sent when the parent dies (default SIGTERM)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    parser = _parser()
    if "--" not in args or args.index("--") == len(args) - 1:
        parser.error("give the command after --")
    cut = args.index("--")
    opts, command = parser.parse_args(args[:cut]), args[cut + 1 :]
    name = opts.signal.upper()
    try:
        sig = signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
    except KeyError:
        parser.error(f"no such signal: {opts.signal}")
    if not die_with_parent(sig, opts.parent):
        sys.exit(f"die_with_parent: the parent process is gone; {command[0]} not started")
    # What subprocess.Popen restores for a child (restore_signals): Python ignores these at
    # start, and an ignored signal stays ignored across exec.
    for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"die_with_parent: cannot run {command[0]}: {exc}", file=sys.stderr)
        os._exit(127)


if __name__ == "__main__":
    main()
