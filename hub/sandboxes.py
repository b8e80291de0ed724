"""Contestants' sandboxes: the spawners of the demo and secure modes, and their first start.

* :class:`DemoSpawner` (mode ``demo``): each JupyterLab is a local process of the account that
  runs the hub, with ``HOME`` and the notebook folder at ``<home root>/<name>``. Nothing
  separates one contestant from another or from the private root: for trying the platform
  out and for development only, and the hub says so in its log and on the login page.
* :class:`SecureSpawner` (mode ``secure``): one Unix account ``jupyter-<name>`` per
  contestant, created on first start as The Littlest JupyterHub does, its home
  ``<home root>/<name>`` readable only by its owner; the server runs as that account.

Both get their environment from the hub's config (the data root, the threads and memory
the sandbox API follows); :func:`pre_spawn_hook` prepares the home and copies the starter
notebooks into it.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner, set_user_setuid
from traitlets import Unicode

import sandbox

STARTERS = Path(sandbox.__file__).resolve().parent / "notebooks"
STARTERS_RECORD = Path(".contesthub") / "starters.json"
DEMO_WARNING = (
    "DEMO MODE: every contestant's JupyterLab runs as the account running the hub ({account}); "
    "contestants are NOT isolated from each other, from the private root (hidden solutions, "
    "submissions) or from this machine. Use mode 'secure' or 'cluster' for a real contest."
)


def copy_starter_notebooks(home: Path, uid: int | None = None, gid: int | None = None) -> list[str]:
    """Copy each starter notebook into ``home`` once; never overwrite or bring back a user's file.

    ``~/.contesthub/starters.json`` records what was handed out: a notebook the contestant
    deleted or renamed stays gone, one added to the platform later still arrives.
    """
    record = home / STARTERS_RECORD
    try:
        given = set(json.loads(record.read_text("utf-8")))
    except (OSError, ValueError):
        given = set()
    copied = []
    for src in sorted(STARTERS.glob("*.ipynb")):
        dest = home / src.name
        if src.name in given:
            continue
        given.add(src.name)
        if dest.exists():
            continue
        shutil.copyfile(src, dest)
        copied.append(src.name)
        if uid is not None:
            os.chown(dest, uid, gid if gid is not None else -1)
    record.parent.mkdir(exist_ok=True, mode=0o700)
    record.write_text(json.dumps(sorted(given)), "utf-8")
    if uid is not None:
        for p in (record.parent, record):
            os.chown(p, uid, gid if gid is not None else -1)
    return copied


def pre_spawn_hook(spawner) -> None:
    """Before every start: the home exists (and, in secure mode, its account), starters are in it."""
    prepare = getattr(spawner, "prepare_home", None)
    if prepare is None:  # a spawner of another kind (KubeSpawner): its image does this
        return
    home, uid, gid = prepare()
    copied = copy_starter_notebooks(home, uid, gid)
    if copied:
        spawner.log.info("Copied starter notebooks into %s: %s", home, ", ".join(copied))


class DemoSpawner(SimpleLocalProcessSpawner):
    """Local processes of the hub's own account, one home per contestant. Not isolated."""

    home_dir_template = Unicode("", config=True, help="Home of a contestant, with {username}.")

    def prepare_home(self) -> tuple[Path, None, None]:
        home = Path(self.home_dir)
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        return home, None, None

    def make_preexec_fn(self, name):
        home = self.home_dir

        def preexec():
            os.chdir(home)

        return preexec

    async def start(self):
        self.log.warning(DEMO_WARNING.format(account=pwd.getpwuid(os.getuid()).pw_name))
        return await super().start()


def hidden_from_others(path: Path) -> Path | None:
    """The first folder on the way to ``path`` that other accounts cannot pass (or ``path`` itself
    if they cannot read it); None when a contestant's account can reach and read it."""
    path = Path(path).resolve()
    for folder in [*reversed(path.parents), path]:
        mode = folder.stat().st_mode
        if folder.is_dir() and not mode & stat.S_IXOTH:
            return folder
    return None if path.stat().st_mode & stat.S_IROTH else path


def check_secure_mode(paths: dict[str, Path]) -> list[str]:
    """What keeps contestants' own Unix accounts from running their servers; empty when nothing."""
    problems = []
    for what, path in paths.items():
        blocked = hidden_from_others(path)
        if blocked is not None:
            problems.append(f"{what} {path} is not reachable by other accounts ({blocked} is closed to them)")
    return problems


class SecureSpawner(LocalProcessSpawner):
    """One Unix account per contestant (``jupyter-<name>``), created on first start."""

    home_dir_template = Unicode("", config=True, help="Home of a contestant, with {username}.")
    system_user_prefix = Unicode("jupyter-", config=True, help="Prefix of the contestants' Unix accounts.")

    @property
    def system_username(self) -> str:
        return f"{self.system_user_prefix}{self.user.name}"

    def ensure_system_user(self) -> pwd.struct_passwd:
        name = self.system_username
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
        home = self.home_dir_template.format(username=self.user.name)
        Path(home).parent.mkdir(parents=True, exist_ok=True)
        cmd = ["useradd", "--create-home", "--home-dir", home, "--shell", "/bin/bash", "--user-group", name]
        self.log.info("Creating Unix account %s: %s", name, " ".join(cmd))
        subprocess.run(cmd, check=True, capture_output=True)
        return pwd.getpwnam(name)

    def prepare_home(self) -> tuple[Path, int, int]:
        entry = self.ensure_system_user()
        home = Path(entry.pw_dir)
        home.mkdir(parents=True, exist_ok=True)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        os.chmod(home, 0o700)  # other contestants cannot read it
        return home, entry.pw_uid, entry.pw_gid

    def make_preexec_fn(self, name):
        return set_user_setuid(self.system_username)

    def user_env(self, env):
        entry = pwd.getpwnam(self.system_username)
        env["USER"] = entry.pw_name
        env["HOME"] = entry.pw_dir
        env["SHELL"] = entry.pw_shell or "/bin/bash"
        return env
