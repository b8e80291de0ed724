"""Contestants' sandboxes: the spawners of the demo and secure modes, and their first start.

* :class:`DemoSpawner` (mode ``demo``): each JupyterLab is a local process of the account that
  runs the hub, with ``HOME`` and the notebook folder at ``<home root>/<name>``. Nothing
  separates one contestant from another or from the private root: for trying the platform
  out and for development only, and the hub says so in its log and on the login page.
* :class:`SecureSpawner` (mode ``secure``): one Unix account per contestant, created on
  first start as The Littlest JupyterHub does and recorded with its uid, never shared and
  never adopted (hub/unix_accounts.py); its home ``<home root>/<name>`` readable only by its
  owner; the server runs as that account, with an interpreter every account can run
  (hub/interpreter.py), inside memory, process and CPU limits the kernel enforces
  (hub/limits.py). :func:`secure_mode_config` refuses to start the hub, naming each problem
  and its fix (:func:`secure_mode_problems`), unless the code, libraries and open data are
  readable by every account, the open data writable by none and the private root closed to
  them.

Both get their environment from the hub's config (the data root, the threads and memory
the sandbox API follows); :func:`pre_spawn_hook` prepares the home and hands out the starter
notebooks (hub/starters.py): as the contestant's own account in secure mode, since root
must never act on paths inside a home, where the contestant may have planted links.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import pwd
import stat
import subprocess
import sys
from functools import cached_property
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner, SpawnException, set_user_setuid
from traitlets import Integer, List, Unicode
from traitlets.config import Config

from hub import lab_settings
from hub import limits as sandbox_limits
from hub.starters import Handout, copy_starter_notebooks
from hub.unix_accounts import AccountRefused, accounts_store, ensure_account, system_username, useradd_command
from sandbox.settings import PROJECT_ROOT, Paths

DEMO_WARNING = (
    "DEMO MODE: every contestant's JupyterLab runs as the account running the hub ({account}); "
    "contestants are NOT isolated from each other, from the private root (hidden solutions, "
    "submissions) or from this machine. Use mode 'secure' or 'cluster' for a real contest."
)


async def pre_spawn_hook(spawner) -> None:
    """Before every start: the home exists (and, in secure mode, its account), starters are in it.

    Nothing here acts on the home's contents with more rights than its owner has: the
    starters are handed out by the owner's own account (:meth:`SecureSpawner.hand_out_starters`).
    """
    prepare = getattr(spawner, "prepare_home", None)
    if prepare is None:  # a spawner of another kind (KubeSpawner): its image does this
        return
    home = prepare()
    try:
        mounted = await asyncio.to_thread(_conditional_on_spawn, spawner.user.name)
    except Exception as exc:  # the store is down: the server starts without conditional data
        spawner.log.warning("Conditional data left out for %s: %s", spawner.user.name, exc)
        mounted = []
    if mounted:
        spawner.log.info("Conditional data %s may be read by %s's server", ", ".join(mounted), spawner.user.name)
    done = await asyncio.to_thread(spawner.hand_out_starters, home)
    # The first start (the one that hands the getting-started notebook out) opens it, not the launcher.
    spawner.default_url = lab_settings.default_url(done.copied)
    if done.copied:
        spawner.log.info("Copied starter notebooks into %s: %s", home, ", ".join(done.copied))
    if done.refused:
        spawner.log.warning("Left alone in %s (links, or not files): %s", home, ", ".join(done.refused))


def _conditional_on_spawn(user: str) -> list[str]:
    """Log the conditional datasets this start mounts; secure mode: let the account's team group in."""
    from hub import conditional_acl
    from hub.settings import HubSettings

    settings = HubSettings.load()
    paths = Paths(settings.data_root, settings.private_root, PROJECT_ROOT / "datasets", settings.conditional_root)
    return conditional_acl.on_spawn(_contest_store(paths), paths, user)


@functools.cache
def _contest_store(paths: Paths):
    """The contest store, opened once per hub process (the submission service migrates it too)."""
    from leaderboard import store

    return store.connect(paths)


class DemoSpawner(SimpleLocalProcessSpawner):
    """Local processes of the hub's own account, one home per contestant. Not isolated."""

    home_dir_template = Unicode("", config=True, help="Home of a contestant, with {username}.")

    def prepare_home(self) -> Path:
        home = Path(self.home_dir)
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        return home

    def hand_out_starters(self, home: Path) -> Handout:
        return copy_starter_notebooks(home)  # the hub's own account owns the home

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
    try:
        mechanism, why_not_cgroup = sandbox_limits.choose(settings.sandbox_limits)
    except ValueError as exc:
        problems.append(str(exc))
    else:
        why = f" (no cgroup: {why_not_cgroup})" if why_not_cgroup else ""
        print(
            f"secure mode: each contestant's memory ({settings.mem_limit}), processes ({settings.max_processes}) "
            f"and CPUs are capped by {mechanism.describe()}{why}",
            file=sys.stderr,
        )
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
    c.SecureSpawner.accounts_db_url = settings.db_url
    c.SecureSpawner.limits_mechanism = mechanism.name
    c.SecureSpawner.max_processes = settings.max_processes
    return c


class SecureSpawner(LocalProcessSpawner):
    """One Unix account per contestant (hub/unix_accounts.py), created on first start, with its limits enforced."""

    home_dir_template = Unicode("", config=True, help="Home of a contestant, with {username}.")
    system_user_prefix = Unicode("jupyter-", config=True, help="Prefix of the contestants' Unix accounts.")
    sandbox_python = Unicode(
        "", config=True, help="The interpreter servers and kernels run (hub/interpreter.py); its bin/ leads PATH."
    )
    accounts_db_url = Unicode(
        "", config=True, help="The hub's database, where each contestant's Unix account and uid are recorded."
    )
    limits_mechanism = Unicode(
        "rlimit", config=True, help="How memory, processes and CPUs are capped: cgroup or rlimit (hub/limits.py)."
    )
    max_processes = Integer(512, config=True, help="Processes and threads one contestant may run at once.")

    @property
    def accounts(self):
        return accounts_store(self.accounts_db_url)

    @property
    def system_username(self) -> str:
        """The recorded account of this hub user, or the one :func:`system_username` gives a new one."""
        record = self.accounts.get(self.user.name)
        return record.account if record else system_username(self.system_user_prefix, self.user.name)

    @cached_property
    def mechanism(self) -> sandbox_limits.CgroupLimits | sandbox_limits.RlimitLimits:
        if self.limits_mechanism == "cgroup":
            bases, why = sandbox_limits.cgroup_bases()
            if why:
                raise RuntimeError(f"cgroup limits were chosen when the hub started, but now {why}")
            return sandbox_limits.CgroupLimits(bases)
        return sandbox_limits.RlimitLimits()

    @property
    def limits(self) -> sandbox_limits.Limits:
        if not self.mem_limit:
            raise RuntimeError("secure mode needs Spawner.mem_limit (the hub setting mem_limit)")
        return sandbox_limits.Limits(memory=int(self.mem_limit), processes=self.max_processes, cpu=self.cpu_limit)

    def prepare_home(self) -> Path:
        """The account (made and recorded on first start, refused if not this user's) and its home, 0700.

        The home's own inode is changed through a descriptor opened without following links;
        its contents are left to the account itself.
        """
        home = Path(self.home_dir_template.format(username=self.user.name))
        try:
            entry = ensure_account(self.accounts, self.system_user_prefix, self.user.name, home, log=self.log.warning)
        except AccountRefused as exc:  # a policy refusal: its message to the user, no traceback in the log
            raise SpawnException(str(exc), reason="unix-account", status_code=403) from None
        home = Path(entry.pw_dir)
        home.mkdir(parents=True, exist_ok=True, mode=0o700)  # gone since useradd: made again, as root's
        fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchown(fd, entry.pw_uid, entry.pw_gid)
            os.fchmod(fd, 0o700)  # other contestants cannot read it
        finally:
            os.close(fd)
        return home

    def hand_out_starters(self, home: Path) -> Handout:
        """Copy the starters as the contestant's own account: ``python -I -m hub.starters HOME`` in a child.

        Root never writes into a home, so a link a contestant planted there leads nowhere the
        contestant could not already write (hub/starters.py refuses links as well).
        """
        entry = pwd.getpwnam(self.system_username)
        python = self.sandbox_python or sys.executable
        try:
            run = subprocess.run(
                [python, "-I", "-m", "hub.starters", str(home)],
                user=entry.pw_uid,
                group=entry.pw_gid,
                extra_groups=os.getgrouplist(entry.pw_name, entry.pw_gid),
                umask=0o022,
                cwd="/",
                env={"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            self.log.warning("Starter notebooks for %s not handed out: %s", entry.pw_name, exc)
            return Handout()
        if run.returncode != 0:
            self.log.warning("Starter notebooks for %s not handed out: %s", entry.pw_name, run.stderr[-2000:])
            return Handout()
        try:
            done = json.loads(run.stdout.strip().splitlines()[-1])
            return Handout(copied=list(done["copied"]), refused=list(done["refused"]))
        except (ValueError, IndexError, KeyError, TypeError):
            self.log.warning("hub.starters for %s printed %r", entry.pw_name, run.stdout[-500:])
            return Handout()

    limit_groups = List(Unicode(), help="The contestant's limit groups (hub/limits.py), kept in the spawner's state.")

    def load_state(self, state):
        super().load_state(state)
        self.limit_groups = list(state.get("limit_groups", []))

    def get_state(self):
        state = super().get_state()
        if self.limit_groups:
            state["limit_groups"] = self.limit_groups
        return state

    def clear_state(self):
        super().clear_state()
        self.limit_groups = []

    async def start(self):
        self.limit_groups = await asyncio.to_thread(self.mechanism.prepare, self.system_username, self.limits)
        return await super().start()

    async def stop(self, now=False):
        await super().stop(now=now)
        groups = self.limit_groups
        left = await asyncio.to_thread(self.mechanism.release, self.system_username, 5.0, groups)
        if left:
            self.log.warning("Limit groups of %s not removed (processes left in them): %s", self.user.name, left)

    def make_preexec_fn(self, name):
        join_limits = self.mechanism.preexec(self.system_username, self.limits)
        become_user = set_user_setuid(self.system_username)

        def preexec() -> None:
            join_limits()  # as root: the groups' files are root's; the limits bind the rest
            become_user()

        return preexec

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


def _reachable(path: Path) -> bool:
    try:
        return path.is_dir() and hidden_from_others(path) is None
    except OSError:
        return False
