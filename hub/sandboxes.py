"""Contestants' sandboxes: the spawners of the demo and secure modes, and their first start.

* :class:`DemoSpawner` (mode ``demo``): each JupyterLab is a local process of the account that
  runs the hub, with ``HOME`` and the notebook folder at ``<home root>/<name>``. Nothing
  separates one contestant from another or from the private root: for trying the platform
  out and for development only, and the hub says so in its log and on the login page.
* :class:`SecureSpawner` (mode ``secure``): one Unix account ``jupyter-<name>`` per
  contestant, created on first start as The Littlest JupyterHub does, its home
  ``<home root>/<name>`` readable only by its owner; the server runs as that account, with
  an interpreter every account can run (hub/interpreter.py). :func:`secure_mode_config`
  refuses to start the hub, naming each problem and its fix (:func:`secure_mode_problems`),
  unless the code, libraries and open data are readable by every account, the open data
  writable by none and the private root closed to them.

Both get their environment from the hub's config (the data root, the threads and memory
the sandbox API follows); :func:`pre_spawn_hook` prepares the home and copies the starter
notebooks into it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner, set_user_setuid
from traitlets import Unicode
from traitlets.config import Config

import sandbox
from sandbox.settings import PROJECT_ROOT

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
    """What keeps contestants' own Unix accounts from reaching ``paths``; empty when nothing."""
    problems = []
    for what, path in paths.items():
        if not Path(path).exists():
            problems.append(f"{what} {path} does not exist")
            continue
        blocked = hidden_from_others(path)
        if blocked is not None:
            fix = "chmod o+rx" if blocked.is_dir() else "chmod o+r"
            problems.append(
                f"{what} {path} is not reachable by other accounts ({blocked} is closed to them: {fix} {blocked}, "
                "or install it elsewhere)"
            )
    return problems


def closed_inside(root: Path, limit: int = 5) -> list[Path]:
    """Files under ``root`` other accounts cannot read, folders they cannot list or enter (a few)."""
    out = []
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            p = Path(folder) / name
            try:
                mode = p.stat().st_mode  # through symlinks: what a reader gets
            except OSError:
                continue
            need = stat.S_IROTH | stat.S_IXOTH if stat.S_ISDIR(mode) else stat.S_IROTH
            if mode & need != need:
                out.append(p)
                if len(out) >= limit:
                    return out
    return out


def writable_by_others(root: Path, limit: int = 5) -> list[Path]:
    """Folders and files under ``root`` (itself included) that other accounts may change."""
    out = []
    for folder, _, files in os.walk(root):
        for p in [Path(folder), *(Path(folder) / f for f in files)]:
            if not p.is_symlink() and p.lstat().st_mode & stat.S_IWOTH:
                out.append(p)
                if len(out) >= limit:
                    return out
    return out


def useradd_command() -> str | None:
    return shutil.which("useradd", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def secure_mode_problems(settings) -> list[str]:
    """Everything that keeps mode 'secure' from isolating contestants and running their servers.

    The hub runs as root (it makes accounts and starts servers as them); the code, the hub
    venv's libraries and the open data are readable by every account, the open data writable
    by none; the private root (hidden solutions, submission files, the store) closed to them.
    The interpreter is checked apart (:func:`hub.interpreter.sandbox_python`).
    """
    from hub.interpreter import hub_site_packages

    problems = []
    if os.geteuid() != 0:
        problems.append("the hub must run as root: it creates one account per contestant and starts servers as them")
    if useradd_command() is None:
        problems.append("useradd was not found (Debian/Ubuntu: apt-get install passwd)")
    needed = {"the checkout (contesthub's code)": PROJECT_ROOT, "the home root": settings.home_root}
    needed.update({f"the hub's site-packages {i}": p for i, p in enumerate(hub_site_packages(), 1)})
    needed["the data root"] = settings.data_root
    problems += check_secure_mode(needed)
    if settings.data_root.exists():
        closed = closed_inside(settings.data_root)
        if closed:
            problems.append(
                f"the data root has files or folders other accounts cannot read: {', '.join(map(str, closed))} "
                f"(chmod -R o+rX {settings.data_root})"
            )
        open_ = writable_by_others(settings.data_root)
        if open_:
            problems.append(
                f"the data root is writable by other accounts at {', '.join(map(str, open_))} "
                f"(chmod -R o-w {settings.data_root})"
            )
    private = settings.private_root
    if private.exists() and hidden_from_others(private) is None:
        problems.append(
            f"the private root {private} (hidden solutions, submissions, the store) is readable by other "
            f"accounts (chmod 700 {private})"
        )
    return problems


def secure_mode_config(settings) -> Config:
    """What config/jupyterhub_config.py sets for mode 'secure'; a SettingsError saying what to fix.

    Servers and kernels run the interpreter :func:`hub.interpreter.sandbox_python` finds or
    builds (one every account can run), as the contestant's own account.
    """
    from hub.interpreter import SandboxPythonError, sandbox_python
    from hub.settings import SettingsError

    if not settings.home_root.exists():
        settings.home_root.mkdir(parents=True, mode=0o755)  # the homes inside are 0700
    problems = secure_mode_problems(settings)
    python = None
    if not problems:  # the interpreter is tried as another account: only once the paths are right
        try:
            python = sandbox_python(settings.sandbox_python)
        except SandboxPythonError as exc:
            problems.append(exc.en)
    if problems:
        raise SettingsError(
            "mode 'secure' cannot start contestants' servers: " + "; ".join(problems),
            "secure 模式无法启动参赛者的服务器：" + "；".join(problems),
        )
    c = Config()
    c.JupyterHub.spawner_class = SecureSpawner
    c.SecureSpawner.home_dir_template = str(settings.home_root / "{username}")
    c.SecureSpawner.system_user_prefix = settings.system_user_prefix
    c.SecureSpawner.sandbox_python = str(python)
    c.SecureSpawner.cmd = [str(python), "-m", "jupyterhub.singleuser"]
    return c


class SecureSpawner(LocalProcessSpawner):
    """One Unix account per contestant (``jupyter-<name>``), created on first start."""

    home_dir_template = Unicode("", config=True, help="Home of a contestant, with {username}.")
    system_user_prefix = Unicode("jupyter-", config=True, help="Prefix of the contestants' Unix accounts.")
    sandbox_python = Unicode(
        "", config=True, help="The interpreter servers and kernels run (hub/interpreter.py); its bin/ leads PATH."
    )

    @property
    def system_username(self) -> str:
        return system_username(self.system_user_prefix, self.user.name)

    def ensure_system_user(self) -> pwd.struct_passwd:
        name = self.system_username
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
        home = self.home_dir_template.format(username=self.user.name)
        Path(home).parent.mkdir(parents=True, exist_ok=True)
        useradd = useradd_command() or "useradd"
        cmd = [useradd, "--create-home", "--home-dir", home, "--shell", "/bin/bash", "--user-group", name]
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
        # A terminal's `python` is the one the server runs; folders the account cannot enter
        # (the hub venv's bin under /root, say) are left off PATH.
        path = [p for p in env.get("PATH", "").split(os.pathsep) if p and _reachable(Path(p))]
        if self.sandbox_python:
            from hub.interpreter import venv_prefix

            prefix = venv_prefix(self.sandbox_python)
            first = str(Path(self.sandbox_python).parent)
            path = [first, *(p for p in path if p != first)]
            env.pop("VIRTUAL_ENV", None)
            if prefix is not None:
                env["VIRTUAL_ENV"] = str(prefix)
        env["PATH"] = os.pathsep.join(path or ["/usr/local/bin", "/usr/bin", "/bin"])
        return env


def system_username(prefix: str, name: str) -> str:
    """``<prefix><name>``, shortened with a hash as The Littlest JupyterHub does when too long for useradd."""
    full = f"{prefix}{name}"
    if len(full) <= 32:
        return full
    return f"{full[:26]}-{hashlib.sha256(name.encode()).hexdigest()[:5]}"


def _reachable(path: Path) -> bool:
    try:
        return path.is_dir() and hidden_from_others(path) is None
    except OSError:
        return False
