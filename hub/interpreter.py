"""The Python that contestants' own Unix accounts run in secure mode.

In secure mode every JupyterLab server, and every kernel it starts, runs as the contestant's
own account (``jupyter-<name>``). That account must be able to execute an interpreter and
import contesthub, JupyterHub's single-user server, ipykernel and the data libraries. The
hub's own interpreter often cannot serve: a virtualenv made from pyenv under ``/root``
(mode 0700) links ``libpython`` and the standard library from there.

:func:`sandbox_python` answers which interpreter the servers run:

1. the one named by the ``sandbox_python`` setting, if any (it must pass the check below);
2. else the hub's own interpreter, if another account can run it and import everything;
3. else a *sandbox interpreter* built once at ``<checkout>/var/sandbox-python``: a venv made
   with a Python of the same version and ABI that every account can run
   (``/usr/bin/python3.11 -m venv --without-pip``), whose ``contesthub.pth`` adds the hub
   venv's site-packages (and the checkout, when contesthub is not installed there), and
   whose ``share`` and ``etc`` point at the hub venv's, so JupyterLab finds its assets,
   server extensions and the ``python3`` kernel spec. Kernel specs name ``python``, which
   jupyter_client replaces with the server's ``sys.executable``: kernels run it too.

"Every account can run it" is checked for real, not guessed from mode bits: the interpreter
is started as the account ``nobody`` (the hub runs as root in secure mode) and must import
:data:`PROBE_MODULES`. When nothing passes, :class:`SandboxPythonError` says what to install.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import site
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from hub.settings import SettingsError
from sandbox.settings import PROJECT_ROOT

DEFAULT_DIR = PROJECT_ROOT / "var" / "sandbox-python"
STAMP = "contesthub-sandbox.json"
PTH = "contesthub.pth"
FORMAT = 1
PROBE_MODULES = ("jupyterhub.singleuser", "ipykernel", "jupyterlab", "sandbox", "duckdb")
OTHER_ACCOUNT = "nobody"  # an account with no rights of its own, like a new contestant's
PROBE = (
    "import importlib, json, sys, sysconfig\n"
    "for m in sys.argv[1:]: importlib.import_module(m)\n"
    "print(json.dumps({'executable': sys.executable, 'version': list(sys.version_info[:3]),"
    " 'soabi': sysconfig.get_config_var('SOABI'), 'prefix': sys.prefix, 'base_prefix': sys.base_prefix}))\n"
)


class SandboxPythonError(SettingsError):
    code = "sandbox-python"


@dataclass(frozen=True)
class Probe:
    python: str
    ok: bool
    info: dict
    error: str = ""


def abi() -> tuple[tuple[int, int], str]:
    """(major, minor) and SOABI of the hub's interpreter: a sandbox interpreter must match both."""
    return tuple(sys.version_info[:2]), sysconfig.get_config_var("SOABI") or ""


def can_probe() -> bool:
    """Whether this process can run a program as another account (it must be root)."""
    return os.geteuid() == 0 and _other_account() is not None


def _other_account() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(OTHER_ACCOUNT)
    except KeyError:
        return None


def probe(python: str | os.PathLike, modules: tuple[str, ...] = PROBE_MODULES, timeout: float = 180) -> Probe:
    """Start ``python`` as the account ``nobody`` and import ``modules``; what it reports."""
    entry = _other_account()
    if entry is None:
        return Probe(str(python), False, {}, f"there is no account {OTHER_ACCOUNT!r} to try it with")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        run = subprocess.run(
            [str(python), "-c", PROBE, *modules],
            user=entry.pw_uid,
            group=entry.pw_gid,
            extra_groups=[],
            cwd="/",
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return Probe(str(python), False, {}, f"{type(exc).__name__}: {exc}")
    if run.returncode != 0:
        lines = [line for line in (run.stderr or run.stdout).strip().splitlines() if line.strip()]
        return Probe(str(python), False, {}, lines[-1] if lines else f"exit code {run.returncode}")
    try:
        info = json.loads(run.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return Probe(str(python), False, {}, f"unexpected output: {run.stdout[-300:]!r}")
    return Probe(str(python), True, info)


def fits_abi(result: Probe) -> bool:
    """Whether a probed interpreter can load the hub venv's compiled libraries (same version and ABI)."""
    (major, minor), soabi = abi()
    return result.ok and tuple(result.info["version"][:2]) == (major, minor) and result.info["soabi"] == soabi


def is_same_interpreter(result: Probe) -> bool:
    """Whether another account, running the hub's interpreter, really gets the hub's Python.

    Not always so: the copy of a pyenv Python in a venv links ``libpython`` under ``/root``;
    where that is closed, the loader quietly takes the system's ``libpython3.11`` instead, with
    its own standard library -- another patch release in disguise. That is refused here (a
    sandbox interpreter is built from the system's Python openly instead).
    """
    return (
        result.ok
        and result.info["version"] == list(sys.version_info[:3])
        and Path(result.info["base_prefix"]).resolve() == Path(sys.base_prefix).resolve()
    )


def base_candidates() -> list[Path]:
    """Interpreters of the hub's Python version that a sandbox venv could be made from."""
    (major, minor), _ = abi()
    name = f"python{major}.{minor}"
    found = [Path(getattr(sys, "_base_executable", sys.executable))]
    for folder in ("/usr/bin", "/usr/local/bin", "/opt/python/bin", "/bin"):
        found.append(Path(folder) / name)
    which = shutil.which(name, path="/usr/local/bin:/usr/bin:/bin")
    if which:
        found.append(Path(which))
    out, seen = [], set()
    for p in found:
        try:
            real = p.resolve(strict=True)
        except OSError:
            continue
        if real not in seen and os.access(real, os.X_OK):
            seen.add(real)
            out.append(p)
    return out


def find_base_python() -> tuple[Path | None, list[str]]:
    """The first candidate every account can run with the hub's ABI; and why the others failed."""
    _, want_soabi = abi()
    tried = []
    for python in base_candidates():
        result = probe(python, modules=())
        if not result.ok:
            tried.append(f"{python}: {result.error}")
        elif not fits_abi(result):
            tried.append(f"{python}: Python {result.info['version']} {result.info['soabi']}, not {want_soabi}")
        else:
            return python, tried
    return None, tried


def hub_site_packages() -> list[Path]:
    """The hub venv's site-packages folders (where contesthub and every library are installed)."""
    return [Path(p) for p in site.getsitepackages() if Path(p).is_dir()]


def _needs_project_root(site_dirs: list[Path]) -> bool:
    """True when contesthub is not importable from ``site_dirs`` alone (not installed there)."""
    for folder in site_dirs:
        if (folder / "sandbox" / "__init__.py").exists():
            return False
        if any("contesthub" in p.name.lower() for p in folder.glob("*.pth")):
            return False  # an editable install: its finder (or path line) maps our packages
    return True


def _wanted(base: Path, site_dirs: list[Path]) -> dict:
    extra = [str(PROJECT_ROOT)] if _needs_project_root(site_dirs) else []
    return {
        "format": FORMAT,
        "base": str(base),
        "site_packages": [str(p) for p in site_dirs],
        "extra_paths": extra,
        "hub_prefix": sys.prefix,
    }


def _read_stamp(target: Path) -> dict | None:
    try:
        return json.loads((target / STAMP).read_text("utf-8"))
    except (OSError, ValueError):
        return None


def _make_venv(base: Path, where: Path, wanted: dict) -> None:
    run = subprocess.run(
        [str(base), "-m", "venv", "--without-pip", str(where)], capture_output=True, text=True, timeout=300
    )
    if run.returncode != 0:
        raise SandboxPythonError(
            f"could not make the sandbox interpreter with `{base} -m venv --without-pip {where}`: "
            f"{run.stderr.strip()[-500:]} (on Debian/Ubuntu: apt-get install python3-venv)",
            f"无法用 `{base} -m venv --without-pip {where}` 创建沙箱解释器：{run.stderr.strip()[-500:]}"
            "（Debian/Ubuntu：apt-get install python3-venv）",
        )
    (purelib,) = {Path(p) for p in where.glob("lib/python*/site-packages")}
    lines = [f"import site; site.addsitedir({p!r})" for p in wanted["site_packages"]]
    lines += wanted["extra_paths"]  # plain lines: appended to sys.path as they are
    (purelib / PTH).write_text(
        "# contesthub: the hub venv's libraries for contestants' servers (hub/interpreter.py)\n"
        + "\n".join(lines)
        + "\n",
        "utf-8",
    )
    # JupyterLab's assets, server extensions and kernel specs live under sys.prefix.
    for name in ("share", "etc"):
        source = Path(sys.prefix) / name
        if source.is_dir():
            (where / name).symlink_to(source)
    for folder, dirs, files in os.walk(where):
        os.chmod(folder, 0o755)
        for f in files:
            p = Path(folder) / f
            if not p.is_symlink():
                os.chmod(p, 0o755 if os.access(p, os.X_OK) else 0o644)
        for d in dirs:
            p = Path(folder) / d
            if not p.is_symlink():
                os.chmod(p, 0o755)
    stamp = where / STAMP  # last: a venv without it is unfinished and made again
    stamp.write_text(json.dumps(wanted, indent=1) + "\n", "utf-8")
    os.chmod(stamp, 0o644)


def build(target: Path = DEFAULT_DIR, base: Path | None = None) -> Path:
    """The sandbox interpreter at ``target``, made once and reused while it still fits; its python.

    Safe to call from several hubs at once (a lock file beside it); a venv that no longer fits
    (another base Python, another hub venv) is replaced whole, never edited in place.
    """
    site_dirs = hub_site_packages()
    if base is None:
        base, tried = find_base_python()
        if base is None:
            raise SandboxPythonError(*_nothing_found(tried))
    wanted = _wanted(base, site_dirs)
    python = target / "bin" / "python"
    if not target.parent.exists():
        target.parent.mkdir(parents=True, mode=0o755)
    with open(target.parent / f".{target.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _read_stamp(target) == wanted and python.exists():
            return python
        if target.exists() or target.is_symlink():  # made for another Python or venv: set aside
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.rename(target, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            _make_venv(base, target, wanted)  # the stamp is written last: a half-made venv is redone
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
    return python


def _nothing_found(tried: list[str]) -> tuple[str, str]:
    (major, minor), soabi = abi()
    name = f"python{major}.{minor}"
    why = "; ".join(tried) or "none was found"
    return (
        f"mode 'secure' needs a Python {major}.{minor} ({soabi}) that every account can run, to run contestants' "
        f"servers and kernels; the hub's own ({sys.executable}) is closed to other accounts, and no {name} "
        f"usable by them was found ({why}). Install one: on Debian/Ubuntu `apt-get install {name} {name}-venv` "
        f"(it gives /usr/bin/{name}); or install contesthub into a venv made from a Python every account can "
        f"read (e.g. under /opt), or set sandbox_python to such an interpreter.",
        f"secure 模式需要一个所有账号都能运行的 Python {major}.{minor}（{soabi}）来运行参赛者的服务器和内核；"
        f"hub 自己的解释器（{sys.executable}）其他账号无法访问，也没有找到可用的 {name}（{why}）。"
        f"请安装：Debian/Ubuntu 上执行 `apt-get install {name} {name}-venv`（得到 /usr/bin/{name}）；"
        "或把 contesthub 安装到用所有账号可读的 Python（例如 /opt 下）创建的 venv 中，"
        "或把 sandbox_python 设为这样的解释器。",
    )


def sandbox_python(setting: str = "", target: Path = DEFAULT_DIR) -> Path:
    """The interpreter contestants' servers run (see the module's docstring); checked as ``nobody``."""
    if not can_probe():
        raise SandboxPythonError(
            f"mode 'secure' needs the hub to run as root (it creates an account per contestant and starts "
            f"their servers as them) and an account {OTHER_ACCOUNT!r} to check what those accounts can run",
            f"secure 模式需要以 root 运行 hub（它为每位参赛者创建账号并以该账号启动服务器），"
            f"并需要账号 {OTHER_ACCOUNT!r} 来检查这些账号能运行什么",
        )
    if setting:
        python = Path(setting)
        result = probe(python)
        if result.ok and not fits_abi(result):
            (major, minor), soabi = abi()
            raise SandboxPythonError(
                f"sandbox_python {python} is Python {result.info['version']} ({result.info['soabi']}); the hub's "
                f"libraries need Python {major}.{minor} ({soabi})",
                f"sandbox_python {python} 是 Python {result.info['version']}（{result.info['soabi']}）；"
                f"hub 的库需要 Python {major}.{minor}（{soabi}）",
            )
        if not result.ok:
            raise SandboxPythonError(
                f"sandbox_python {python}: another account cannot run it and import "
                f"{', '.join(PROBE_MODULES)} ({result.error})",
                f"sandbox_python {python}：其他账号无法运行它并导入 {'、'.join(PROBE_MODULES)}（{result.error}）",
            )
        return python
    if is_same_interpreter(probe(sys.executable, modules=())) and probe(sys.executable).ok:
        return Path(sys.executable)
    python = build(target)
    result = probe(python)
    if not result.ok:
        raise SandboxPythonError(
            f"the sandbox interpreter {python} was built, but another account cannot import "
            f"{', '.join(PROBE_MODULES)} with it: {result.error}. The hub venv's site-packages "
            f"({', '.join(map(str, hub_site_packages()))}) and the checkout ({PROJECT_ROOT}) must be readable "
            "by every account (chmod -R o+rX, and o+x on each folder above them).",
            f"沙箱解释器 {python} 已创建，但其他账号用它无法导入 {'、'.join(PROBE_MODULES)}：{result.error}。"
            f"hub 的 site-packages（{', '.join(map(str, hub_site_packages()))}）和代码目录（{PROJECT_ROOT}）"
            "必须对所有账号可读（chmod -R o+rX，且其上每一级目录都要有 o+x）。",
        )
    return python


def venv_prefix(python: str | os.PathLike) -> Path | None:
    """The venv an interpreter path belongs to (its ``bin/..`` holds pyvenv.cfg), else None."""
    prefix = Path(python).parent.parent
    with contextlib.suppress(OSError):
        if (prefix / "pyvenv.cfg").is_file():
            return prefix
    return None
