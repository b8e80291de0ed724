"""The hub's runtime folder: generated secrets, made once and kept across restarts.

Everything lives in ``<private root>/hub/`` (mode 0700), each secret in a file of its own
with mode 0600, created atomically the first time it is asked for and read back on every
later start, so a restart keeps sessions, the proxy's routes token and the services' API
tokens. The private root is outside the repository's tracked files (``var/`` is ignored),
so nothing here is ever committed.

===========================  =========================================================
file                         what
===========================  =========================================================
``jupyterhub_cookie_secret`` the hub's cookie secret (hex, as JupyterHub reads it)
``proxy_auth_token``         the token between the hub and configurable-http-proxy
``service-<name>.token``     each hub-managed service's API token
``jupyterhub.sqlite``        the hub's database, with the accounts table (unless
                             CONTESTHUB_HUB_DB_URL names another database)
===========================  =========================================================
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def ensure_dir(path: Path) -> Path:
    """A folder only its owner can enter (the private root above it is made 0700 too)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically (a reader sees all of it or none)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def secret(runtime_dir: Path, name: str, nbytes: int = 32) -> str:
    """The hex secret stored in ``runtime_dir/name``; generated (mode 0600) if it is not there yet."""
    ensure_dir(runtime_dir)
    path = runtime_dir / name
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            pass
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(secrets.token_hex(nbytes) + "\n")
    os.chmod(path, 0o600)
    value = path.read_text("utf-8").strip()
    if not value:
        raise RuntimeError(f"{path} is empty: delete it to have a new secret generated")
    return value


def cookie_secret_file(runtime_dir: Path) -> Path:
    """JupyterHub's cookie secret file (hex-encoded, 0600, as JupyterHub requires)."""
    secret(runtime_dir, "jupyterhub_cookie_secret")
    return runtime_dir / "jupyterhub_cookie_secret"


def proxy_auth_token(runtime_dir: Path) -> str:
    return secret(runtime_dir, "proxy_auth_token")


def service_token(runtime_dir: Path, service: str) -> str:
    return secret(runtime_dir, f"service-{service}.token")
