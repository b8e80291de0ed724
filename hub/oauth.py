"""Production accounts: an identity provider through oauthenticator (OpenID Connect or GitHub).

With ``auth = "oidc"`` or ``auth = "github"`` (``config/hub.toml`` or ``CONTESTHUB_AUTH``),
:func:`hub_config` turns the hub settings into the whole JupyterHub configuration of the
login, and ``config/jupyterhub_config.py`` merges it (nothing else about accounts lives
there). People log in at the identity provider (authorization-code flow); the hub keeps no
password. At every login the provider's groups replace the user's hub groups
(``manage_groups``):

* a group named ``team-<name>`` (``CONTESTHUB_TEAM_GROUP_PREFIX``) becomes the hub group of
  the same name, and the submission service (``hub/submit_service/``) puts the user in the
  contest team ``<name>`` on first contact;
* the provider's admin group (``oauth_admin_group``, default ``organizers``) becomes the hub
  group ``organizers``: organizers, hub admins (``admin_groups``, and the ``admin`` role that
  config/jupyterhub_config.py gives the group), organizers for the submission service. With
  another admin group name, a provider group literally named ``organizers`` is ignored;
* only those groups reach the hub: the others (a provider's "everyone", "staff", ...) are
  dropped, so the hub's group list stays the contest's;
* who may log in (``oauth_allowed_groups``): a comma-separated list of hub group names, where
  ``*`` matches any characters. Empty (the default) means ``team-*,organizers``: any contest
  team, and the organizers. Anyone else is refused at the callback with a page saying so
  (zh/en). Group membership added on the hub's admin page does not survive the next login:
  the provider decides.

OpenID Connect (:class:`ContestOIDCAuthenticator`, oauthenticator's GenericOAuthenticator)
-----------------------------------------------------------------------------------------------
``oauth_issuer`` is read once at start (``<issuer>/.well-known/openid-configuration``) for the
authorize, token and userinfo endpoints; ``oauth_authorize_url``, ``oauth_token_url`` and
``oauth_userdata_url`` override it (all three set: no discovery). ``oauth_client_id``; the
client secret comes from ``CONTESTHUB_OAUTH_CLIENT_SECRET`` or from a file
(``oauth_client_secret_file``, default ``<private root>/hub/oauth_client_secret``, mode
0600), never from hub.toml. ``oauth_scope`` (default ``openid profile email``),
``oauth_username_claim`` (default ``preferred_username``; the name must match the hub's
username pattern, lower case letters, digits, ``_.-``, at most 31 characters),
``oauth_groups_claim`` (default ``groups``; dots reach nested claims, e.g.
``realm_access.roles``), read from the userinfo answer. Keycloak: add a "Group Membership"
mapper with "Full group path" off, so groups arrive as ``team-alpha``, not ``/team-alpha``.

GitHub (:class:`ContestGitHubAuthenticator`, oauthenticator's GitHubOAuthenticator)
-----------------------------------------------------------------------------------------------
``github_org`` names the contest's GitHub organization. With ``populate_teams_in_auth_state``
and the ``read:org`` scope, oauthenticator reads the user's teams at login; the teams of that
organization become hub groups: the team ``alpha`` is ``team-alpha`` (a slug that already
starts with ``team-`` is kept as it is), the team named by ``oauth_admin_group`` (slug
``organizers`` by default) is ``organizers``. Teams of other organizations are ignored. The
username is the GitHub login (lower-cased; logins longer than 31 characters do not fit the
hub's username pattern). ``allowed_organizations`` is deliberately not set: it would let in
every member of the organization, including those in no team; to allow them too, add
``c.ContestGitHubAuthenticator.allowed_organizations = {"<org>"}`` to the hub's config.
GitHub Enterprise: set ``GITHUB_URL`` in the hub's environment (oauthenticator reads it).
Register the OAuth app with the callback ``https://<your host>/hub/oauth_callback``. This
variant is not tested here (no network); the group mapping is (:class:`GitHubTeams`).

Both variants keep ``auth_state`` (the provider's tokens and user info, encrypted in the hub's
database: ``enable_auth_state``). The key is ``JUPYTERHUB_CRYPT_KEY`` when set (e.g. from a
Kubernetes secret), else generated once into ``<private root>/hub/jupyterhub_crypt_key``
(mode 0600) like the hub's other secrets (``hub/runtime.py``).
"""

from __future__ import annotations

import json
import os
import stat
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.github import GitHubOAuthenticator
from oauthenticator.oauth2 import OAuthenticator
from traitlets import List, Unicode
from traitlets.config import Config

from hub import runtime
from hub.settings import HubSettings, SettingsError
from leaderboard.roles import ORGANIZER_GROUP, TEAM_GROUP_PREFIX, team_group_prefix
from sandbox.settings import PROJECT_ROOT

PROVIDERS = ("oidc", "github")
SECRET_ENV = "CONTESTHUB_OAUTH_CLIENT_SECRET"
SECRET_FILE = "oauth_client_secret"
CRYPT_KEY_ENV = "JUPYTERHUB_CRYPT_KEY"
CRYPT_KEY_FILE = "jupyterhub_crypt_key"
OIDC_SCOPE = ("openid", "profile", "email")
GITHUB_SCOPE = ("read:org",)
REFUSED = (
    "You are not in a contest team or among the organizers at the identity provider, or your "
    "account name is not valid here, so you cannot log in to this contest hub. Ask the organizers "
    "to add you to your team's group. "
    "你在身份提供方处不属于任何参赛队伍或组织方，或账号名在此无效，因此无法登录本比赛平台。"
    "请联系组织方把你加入所在队伍的组。"
)


def team_prefix(environ: Mapping[str, str] | None = None) -> str:
    """The hub group prefix of teams, as the submission service reads it."""
    return team_group_prefix(environ)


# --- the authenticators --------------------------------------------------------------------


class ContestOAuthenticator(OAuthenticator):
    """oauthenticator's allow rules, plus hub groups allowed by a pattern (``team-*``)."""

    allowed_group_patterns = List(
        Unicode(),
        config=True,
        help="""Hub groups (after the provider's groups were mapped) whose members may log in,
        as shell-style patterns (``team-*``). Like ``allowed_groups``, which takes exact names.""",
    )

    async def check_allowed(self, username, auth_model):
        if await super().check_allowed(username, auth_model):
            return True
        if not (self.manage_groups and auth_model):
            return False
        groups = auth_model.get("groups") or ()
        return any(fnmatchcase(g, p) for g in groups for p in self.allowed_group_patterns)


class ContestOIDCAuthenticator(ContestOAuthenticator, GenericOAuthenticator):
    """OpenID Connect (any provider) with contest teams from a groups claim."""


class ContestGitHubAuthenticator(ContestOAuthenticator, GitHubOAuthenticator):
    """GitHub with contest teams from the teams of one organization."""


# --- provider groups -> hub groups ---------------------------------------------------------


def _allowed(group: str, patterns: Sequence[str]) -> bool:
    return group == ORGANIZER_GROUP or any(fnmatchcase(group, p) for p in patterns)


@dataclass(frozen=True)
class ClaimGroups:
    """``auth_state_groups_key`` for OIDC: the groups claim of the user info -> hub groups."""

    claim: str = "groups"
    admin_group: str = ORGANIZER_GROUP
    keep: tuple[str, ...] = (f"{TEAM_GROUP_PREFIX}*",)
    user_key: str = GenericOAuthenticator.user_auth_state_key

    def __call__(self, auth_state: Mapping[str, Any]) -> list[str]:
        value: Any = auth_state.get(self.user_key) or {}
        for part in self.claim.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, str):  # some providers send a single group as a string
            value = [value]
        names = set()
        for group in value if isinstance(value, list | tuple | set) else ():
            if not isinstance(group, str):
                continue
            if group == self.admin_group:
                names.add(ORGANIZER_GROUP)
            elif group != ORGANIZER_GROUP:  # only the configured admin group makes organizers
                names.add(group)
        return sorted(g for g in names if _allowed(g, self.keep))


@dataclass(frozen=True)
class GitHubTeams:
    """``auth_state_groups_key`` for GitHub: the user's teams in ``org`` -> hub groups."""

    org: str
    admin_team: str = ORGANIZER_GROUP
    prefix: str = TEAM_GROUP_PREFIX
    keep: tuple[str, ...] = (f"{TEAM_GROUP_PREFIX}*",)

    def __call__(self, auth_state: Mapping[str, Any]) -> list[str]:
        names = set()
        for team in auth_state.get("teams") or ():
            if str((team.get("organization") or {}).get("login", "")).lower() != self.org.lower():
                continue
            slug = str(team.get("slug") or "")
            if slug == self.admin_team:
                names.add(ORGANIZER_GROUP)
            elif slug:
                names.add(slug if slug.startswith(self.prefix) else f"{self.prefix}{slug}")
        return sorted(g for g in names if _allowed(g, self.keep))


# --- settings -> traits --------------------------------------------------------------------


def allowed_groups(settings: HubSettings, environ: Mapping[str, str] | None = None) -> tuple[set[str], list[str]]:
    """``(exact names, patterns)`` of the hub groups whose members may log in."""
    text = settings.oauth_allowed_groups.strip() or f"{team_prefix(environ)}*,{ORGANIZER_GROUP}"
    entries = [e.strip() for e in text.split(",") if e.strip()]
    patterns = [e for e in entries if any(ch in e for ch in "*?[")]
    return {e for e in entries if e not in patterns}, patterns


def client_secret(settings: HubSettings, environ: Mapping[str, str] | None = None) -> str:
    """From ``CONTESTHUB_OAUTH_CLIENT_SECRET``, else the secret file (which only its owner may read)."""
    env = os.environ if environ is None else environ
    if env.get(SECRET_ENV, "").strip():
        return env[SECRET_ENV].strip()
    path = secret_file(settings)
    if not path.exists():
        raise SettingsError(
            f"auth {settings.auth!r} needs the OAuth client secret: set {SECRET_ENV} or write it to {path} (mode 0600)",
            f"auth {settings.auth!r} 需要 OAuth 客户端密钥：请设置 {SECRET_ENV}，或写入 {path}（权限 0600）",
        )
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise SettingsError(
            f"{path} can be read by other accounts: chmod 600 {path}",
            f"{path} 可被其他账号读取：请执行 chmod 600 {path}",
        )
    value = path.read_text("utf-8").strip()
    if not value:
        raise SettingsError(f"{path} is empty", f"{path} 为空")
    return value


def secret_file(settings: HubSettings) -> Path:
    if not settings.oauth_client_secret_file:
        return settings.runtime_dir / SECRET_FILE
    path = Path(os.path.expanduser(settings.oauth_client_secret_file))
    return path if path.is_absolute() else PROJECT_ROOT / path


def discover(issuer: str, timeout: float = 10) -> dict[str, Any]:
    """The provider's OpenID Connect discovery document."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            doc = json.load(r)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:  # URLError and timeouts are OSErrors
        raise SettingsError(
            f"cannot read the OpenID Connect discovery document {url}: {exc}. Check oauth_issuer, or set "
            "oauth_authorize_url, oauth_token_url and oauth_userdata_url",
            f"无法读取 OpenID Connect 发现文档 {url}：{exc}。请检查 oauth_issuer，"
            "或设置 oauth_authorize_url、oauth_token_url 和 oauth_userdata_url",
        ) from None
    return doc


def _oidc_endpoints(settings: HubSettings) -> dict[str, str]:
    urls = {
        "authorize_url": settings.oauth_authorize_url,
        "token_url": settings.oauth_token_url,
        "userdata_url": settings.oauth_userdata_url,
    }
    missing = [k for k, v in urls.items() if not v]
    if missing and settings.oauth_issuer:
        doc = discover(settings.oauth_issuer)
        names = {
            "authorize_url": "authorization_endpoint",
            "token_url": "token_endpoint",
            "userdata_url": "userinfo_endpoint",
        }
        for key in missing:
            urls[key] = str(doc.get(names[key]) or "")
        missing = [k for k, v in urls.items() if not v]
    if missing:
        keys = ", ".join(f"oauth_{k}" for k in missing)
        raise SettingsError(
            f"auth 'oidc' needs oauth_issuer (discovery) or {keys}",
            f"auth 'oidc' 需要 oauth_issuer（自动发现）或 {keys}",
        )
    return urls


def hub_config(settings: HubSettings, *, environ: Mapping[str, str] | None = None) -> Config:
    """The JupyterHub configuration of the login for ``settings.auth`` ("oidc" or "github").

    ``{"JupyterHub": {"authenticator_class": ...}, "<authenticator class>": {trait: value},
    "CryptKeeper": {"keys": [...]}}``, to merge into the hub's config (``c.merge(...)``).
    """
    env = os.environ if environ is None else environ
    if settings.auth not in PROVIDERS:
        raise SettingsError(
            f"auth {settings.auth!r} is not an OAuth provider ({', '.join(PROVIDERS)})",
            f"auth {settings.auth!r} 不是 OAuth 身份提供方（{'、'.join(PROVIDERS)}）",
        )
    if not settings.oauth_client_id:
        raise SettingsError(
            f"auth {settings.auth!r} needs oauth_client_id (the client registered at the identity provider)",
            f"auth {settings.auth!r} 需要 oauth_client_id（在身份提供方注册的客户端）",
        )
    names, patterns = allowed_groups(settings, env)
    keep = (*sorted(names), *patterns)
    traits: dict[str, Any] = {
        "client_id": settings.oauth_client_id,
        "client_secret": client_secret(settings, env),
        "manage_groups": True,
        "admin_groups": {ORGANIZER_GROUP},
        "allowed_groups": names,
        "allowed_group_patterns": patterns,
        "enable_auth_state": True,
        "custom_403_message": REFUSED,
    }
    if settings.oauth_callback_url:
        traits["oauth_callback_url"] = settings.oauth_callback_url
    if settings.oauth_username_claim:
        traits["username_claim"] = settings.oauth_username_claim
    scope = settings.oauth_scope.replace(",", " ").split()
    if settings.auth == "oidc":
        cls: type[OAuthenticator] = ContestOIDCAuthenticator
        traits.update(_oidc_endpoints(settings))
        traits["scope"] = scope or list(OIDC_SCOPE)
        traits.setdefault("username_claim", "preferred_username")
        traits["login_service"] = settings.oauth_login_service or "OpenID Connect"
        traits["auth_state_groups_key"] = ClaimGroups(
            claim=settings.oauth_groups_claim or "groups", admin_group=settings.oauth_admin_group, keep=keep
        )
    else:
        if not settings.github_org:
            raise SettingsError(
                "auth 'github' needs github_org: the organization whose teams are the contest's teams",
                "auth 'github' 需要 github_org：其团队即参赛队伍的 GitHub 组织",
            )
        cls = ContestGitHubAuthenticator
        scope = scope or list(GITHUB_SCOPE)
        if "read:org" not in scope:
            scope.append("read:org")  # the user's teams
        traits["scope"] = scope
        traits["populate_teams_in_auth_state"] = True
        traits["login_service"] = settings.oauth_login_service or "GitHub"
        traits["auth_state_groups_key"] = GitHubTeams(
            org=settings.github_org,
            admin_team=settings.oauth_admin_group,
            prefix=team_prefix(env),
            keep=keep,
        )
    config: dict[str, Any] = {"JupyterHub": {"authenticator_class": cls}, cls.__name__: traits}
    if not env.get(CRYPT_KEY_ENV):
        config["CryptKeeper"] = {"keys": [runtime.secret(settings.runtime_dir, CRYPT_KEY_FILE)]}
    return Config(config)
