"""Secure mode: open each conditional dataset's root to the approved teams' Unix groups only.

Each team gets a Unix group of its own (``ch-<16 hex of sha256(team)>``: any team name maps to
a valid, distinct group name), whose members are the team's contestants' accounts. Each
dataset's root ``<conditional root>/<dataset>`` is mode 0700, owned by the platform, and
carries a POSIX ACL with one ``group:<team group>:r-x`` entry per team whose grant is in force,
written as the ``system.posix_acl_access`` extended attribute (no ``setfacl`` needed).

Why ACLs on the dataset's root and not the group owner or a restart: the kernel checks a
directory's ACL at every path lookup, so removing a team's entry at expiry or revocation
denies every process of the team at its next ``open()``, running servers and kernels
included, with nothing to restart. A grant, on the other hand, reaches a team's processes
only when they start, because a running process keeps the supplementary groups it started
with: an approved team's servers read the data from their next start (the hub's page and
``contesthub access approve`` say so). A file a kernel opened before the revocation stays
readable through that descriptor until it is closed; DuckDB opens the Parquet files per query.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pwd
import struct
import subprocess
from pathlib import Path

from sandbox.settings import Paths

ACL_XATTR = "system.posix_acl_access"
_USER_OBJ, _GROUP, _GROUP_OBJ, _MASK, _OTHER = 0x01, 0x08, 0x04, 0x10, 0x20
_UNDEFINED = 0xFFFFFFFF


def team_group(team: str) -> str:
    """The Unix group of contest team ``team``."""
    return "ch-" + hashlib.sha256(team.encode("utf-8")).hexdigest()[:16]


def _acl(gids: list[int]) -> bytes:
    """A POSIX ACL (version 2, entries sorted by tag then id): owner rwx, the groups r-x."""
    entries = [(_USER_OBJ, 7, _UNDEFINED), (_GROUP_OBJ, 0, _UNDEFINED)]
    entries += [(_GROUP, 5, gid) for gid in sorted(gids)]
    entries += [(_MASK, 5, _UNDEFINED), (_OTHER, 0, _UNDEFINED)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def groups_with_access(path: Path) -> set[int]:
    """The gids the dataset root's ACL lets in (for checks and the organizer's page)."""
    try:
        raw = os.getxattr(path, ACL_XATTR)
    except OSError:
        return set()
    out = set()
    for i in range(4, len(raw), 8):
        tag, perm, ident = struct.unpack("<HHI", raw[i : i + 8])
        if tag == _GROUP and perm & 1:
            out.add(ident)
    return out


def ensure_group(name: str, members: list[str]) -> int:
    """Make group ``name`` (if missing) with exactly ``members`` (accounts that exist); its gid."""
    try:
        gid = grp.getgrnam(name).gr_gid
    except KeyError:
        subprocess.run(["groupadd", name], check=True, capture_output=True)
        gid = grp.getgrnam(name).gr_gid
    existing = []
    for user in members:
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue  # no account yet: added by the next sync after its first start
        existing.append(user)
    subprocess.run(["gpasswd", "-M", ",".join(existing), name], check=True, capture_output=True)
    return gid


def set_access(root: Path, gids: set[int]) -> None:
    """Let exactly ``gids`` through ``root`` (the dataset's root); nobody else but its owner."""
    if gids:
        os.setxattr(root, ACL_XATTR, _acl(sorted(gids)), follow_symlinks=False)
    else:
        with contextlib.suppress(OSError):  # no ACL there
            os.removexattr(root, ACL_XATTR, follow_symlinks=False)
        os.chmod(root, 0o700)


def apply(
    paths: Paths, grants: dict[str, set[str]], members: dict[str, list[str]], account_prefix: str = "jupyter-"
) -> dict[str, list[str]]:
    """Bring every conditional dataset's root in line with ``grants`` ({dataset: {team}}).

    ``members`` maps each team to its contestants' hub names; their Unix accounts are
    ``hub.unix_accounts.system_username(prefix, name)``. Returns {dataset: [teams let in]}.
    """
    from hub.unix_accounts import system_username

    root = paths.conditional_root
    done: dict[str, list[str]] = {}
    for ds_root in sorted(root.iterdir()) if root.is_dir() else []:
        if not ds_root.is_dir() or ds_root.is_symlink():
            continue
        teams = sorted(grants.get(ds_root.name, ()))
        gids = {
            ensure_group(team_group(t), [system_username(account_prefix, u) for u in members.get(t, [])]) for t in teams
        }
        set_access(ds_root, gids)
        done[ds_root.name] = teams
    return done


def sync(store, paths: Paths) -> str | None:
    """Expire grants past their time and bring the roots in line (the service's minute round)."""
    from leaderboard import access

    with store.session() as s:
        access.expire_due(s)
        grants = access.active_grants(s)
    return apply_if_enabled(paths, grants, store)


def on_spawn(store, paths: Paths, user: str) -> list[str]:
    """Before a server starts: its account joins its team's group (secure mode), and each
    conditional dataset the team may read is logged as mounted by this start."""
    from leaderboard import access, teams

    with store.session() as s:
        access.expire_due(s)
        team = teams.team_of(s, user)
        readable = access.readable_datasets(s, user)
        for ds in readable:
            access.log_event(s, ds, team, user, "server-start", {})
        grants = access.active_grants(s)
    apply_if_enabled(paths, grants, store)
    return readable


def apply_if_enabled(paths: Paths, grants: dict[str, set[str]], store) -> str | None:
    """After a decision: in secure mode, as root, apply the grants in force; else nothing."""
    from hub.settings import HubSettings
    from leaderboard import teams

    settings = HubSettings.load()
    if settings.mode != "secure" or os.geteuid() != 0:
        return None
    with store.read_session() as s:
        members = {t["name"]: list(t["members"]) for t in teams.listing(s)}
    done = apply(paths, grants, members, settings.system_user_prefix)
    return "; ".join(f"{ds}: {', '.join(t) or '-'}" for ds, t in done.items())
