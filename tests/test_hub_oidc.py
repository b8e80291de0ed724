"""Production accounts through an identity provider (hub/oauth.py).

End to end: a real OpenID Connect provider (oidc-provider-mock: discovery, authorization
code, token and userinfo endpoints) runs in a thread; a real hub (proxy, submission service)
is configured with ``auth = "oidc"`` and its issuer. Each login goes the way a browser goes:
``/hub/oauth_login`` -> the provider's authorize form (choose the user) -> back to
``/hub/oauth_callback``. The provider's ``groups`` claim decides the hub groups (``team-alpha``),
the admin flag (``organizers``), and who is refused; the submission service then puts the
user in the team of that group.

The settings half needs no hub. The GitHub variant cannot be tried here (no network); its
group mapping and settings are tested.
"""

from __future__ import annotations

import asyncio
import os
import stat
import warnings

import pytest
import requests
from hub_fixtures import RunningHub, available_services, hub_settings
from traitlets.config import Config

from hub import oauth
from hub.launcher import HubProcess
from hub.settings import HubSettings, SettingsError

# oidc-provider-mock imports authlib.jose, which authlib deprecates; authlib.deprecate also
# installs an "always" filter for its warnings, so it is imported first, then silenced.
with warnings.catch_warnings():
    import authlib.deprecate  # noqa: F401

    warnings.simplefilter("ignore", DeprecationWarning)
    from oidc_provider_mock import User, run_server_in_thread

# The provider runs in this process: authlib's deprecation warnings about oidc-provider-mock's
# code would otherwise turn into errors (pytest's filterwarnings = error) inside its requests.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:authlib.*")

CLIENT_SECRET = "not-a-real-secret"
USERS = [
    User(sub="alice-sub", claims={"preferred_username": "alice", "groups": ["team-alpha", "everyone"]}),
    User(sub="olga-sub", claims={"preferred_username": "olga", "groups": ["organizers", "everyone"]}),
    User(sub="mallory-sub", claims={"preferred_username": "mallory", "groups": ["visitors"]}),
]


@pytest.fixture(scope="module")
def provider():
    with run_server_in_thread(port=0, user_claims=USERS) as server:
        yield f"http://localhost:{server.server_port}"


def oidc_settings(tmp_path, **values) -> HubSettings:
    base = {"auth": "oidc", "oauth_client_id": "contesthub", "private_root": tmp_path / "private"}
    return HubSettings.load({**base, **values}, environ={})


EXPLICIT = {
    "oauth_authorize_url": "https://sso.example.org/authorize",
    "oauth_token_url": "https://sso.example.org/token",
    "oauth_userdata_url": "https://sso.example.org/userinfo",
}


# --- settings, without a hub -----------------------------------------------------------------


def test_auth_setting_from_file_environment_and_checks(tmp_path):
    toml = tmp_path / "hub.toml"
    toml.write_text('auth = "oidc"\noauth_issuer = "https://sso.example.org"\noauth_client_id = "c"\n')
    s = HubSettings.load(environ={"CONTESTHUB_HUB_CONFIG": str(toml)})
    assert (s.auth, s.oauth_issuer, s.oauth_groups_claim, s.oauth_admin_group) == (
        "oidc",
        "https://sso.example.org",
        "groups",
        "organizers",
    )
    assert HubSettings.load(environ={"CONTESTHUB_HUB_CONFIG": str(toml), "CONTESTHUB_AUTH": "github"}).auth == "github"
    assert HubSettings.load(environ=s.to_env()) == s
    assert not any("SECRET" in k and "FILE" not in k for k in s.to_env())  # the secret is never a setting
    assert HubSettings.load(environ={}).auth == "local"
    with pytest.raises(SettingsError, match="auth 'ldap' is not one of local, oidc, github"):
        HubSettings.load({"auth": "ldap"}, environ={})
    with pytest.raises(SettingsError, match="exclude each other"):
        HubSettings.load({"auth": "oidc", "demo_open_login": True}, environ={})
    (tmp_path / "bad.toml").write_text('oauth_client_secret = "x"\n')
    with pytest.raises(SettingsError, match="unknown key"):
        HubSettings.load(config_file=tmp_path / "bad.toml", environ={})


def test_oidc_traits(tmp_path):
    s = oidc_settings(tmp_path, **EXPLICIT)
    cfg = oauth.hub_config(s, environ={oauth.SECRET_ENV: CLIENT_SECRET})
    cls = cfg.JupyterHub.authenticator_class
    assert cls is oauth.ContestOIDCAuthenticator
    from oauthenticator.generic import GenericOAuthenticator

    assert issubclass(cls, GenericOAuthenticator)
    t = cfg[cls.__name__]
    assert (t.client_id, t.client_secret) == ("contesthub", CLIENT_SECRET)
    assert (t.authorize_url, t.token_url, t.userdata_url) == tuple(EXPLICIT.values())
    assert t.manage_groups and t.enable_auth_state
    assert t.admin_groups == {"organizers"}
    assert t.allowed_groups == {"organizers"} and t.allowed_group_patterns == ["team-*"]
    assert t.scope == ["openid", "profile", "email"] and t.username_claim == "preferred_username"
    assert t.login_service == "OpenID Connect"
    assert "oauth_callback_url" not in t
    # Every trait exists and takes its value (a typo or a wrong type fails here).
    auth = cls(config=Config(cfg))
    assert auth.auth_state_groups_key({"oauth_user": {"groups": ["team-alpha", "x"]}}) == ["team-alpha"]
    assert auth.allowed_group_patterns == ["team-*"] and auth.custom_403_message == oauth.REFUSED
    # The encryption key of auth_state: generated once, 0600, 32 bytes in hex, kept.
    key_file = s.runtime_dir / oauth.CRYPT_KEY_FILE
    assert cfg.CryptKeeper["keys"] == [key_file.read_text().strip()]
    assert len(bytes.fromhex(cfg.CryptKeeper["keys"][0])) == 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = oauth.hub_config(s, environ={oauth.SECRET_ENV: CLIENT_SECRET})
    assert again.CryptKeeper["keys"] == cfg.CryptKeeper["keys"]
    # A key from the environment (e.g. a Kubernetes secret) is JupyterHub's own to read.
    env = {oauth.SECRET_ENV: CLIENT_SECRET, "JUPYTERHUB_CRYPT_KEY": "ab" * 32}
    assert "CryptKeeper" not in oauth.hub_config(s, environ=env)


def test_oidc_options(tmp_path):
    s = oidc_settings(
        tmp_path,
        **EXPLICIT,
        oauth_scope="openid groups",
        oauth_username_claim="sub",
        oauth_groups_claim="realm_access.roles",
        oauth_admin_group="contest-admins",
        oauth_allowed_groups="team-*, judges",
        oauth_login_service="国家数据平台 SSO",
        oauth_callback_url="https://contest.example.org/hub/oauth_callback",
    )
    t = oauth.hub_config(s, environ={oauth.SECRET_ENV: CLIENT_SECRET}).ContestOIDCAuthenticator
    assert t.scope == ["openid", "groups"] and t.username_claim == "sub"
    assert t.allowed_groups == {"judges"} and t.allowed_group_patterns == ["team-*"]
    assert t.oauth_callback_url == "https://contest.example.org/hub/oauth_callback"
    assert t.login_service == "国家数据平台 SSO"
    groups = t.auth_state_groups_key
    state = {"oauth_user": {"realm_access": {"roles": ["team-b", "contest-admins", "organizers", "judges", "x"]}}}
    # The configured admin group is `organizers`; a provider group of that name is not.
    assert groups(state) == ["judges", "organizers", "team-b"]
    assert groups({"oauth_user": {"realm_access": {"roles": ["organizers"]}}}) == []
    assert groups({"oauth_user": {}}) == [] and groups({}) == []


@pytest.mark.parametrize(
    ("claim", "expected"),
    [
        (["team-alpha", "everyone", "organizers"], ["organizers", "team-alpha"]),
        ("team-alpha", ["team-alpha"]),  # one group as a string
        (None, []),
        ([1, {"x": 1}, "team-b"], ["team-b"]),
    ],
)
def test_groups_claim_to_hub_groups(claim, expected):
    assert oauth.ClaimGroups()({"oauth_user": {"groups": claim}}) == expected


def test_team_prefix_follows_the_submission_service(tmp_path):
    s = oidc_settings(tmp_path, **EXPLICIT)
    env = {oauth.SECRET_ENV: CLIENT_SECRET, "CONTESTHUB_TEAM_GROUP_PREFIX": "squad-"}
    t = oauth.hub_config(s, environ=env).ContestOIDCAuthenticator
    assert t.allowed_group_patterns == ["squad-*"]
    assert t.auth_state_groups_key({"oauth_user": {"groups": ["squad-a", "team-b"]}}) == ["squad-a"]


def test_check_allowed_by_group_pattern():
    auth = oauth.ContestOIDCAuthenticator(
        manage_groups=True, allowed_groups={"organizers"}, allowed_group_patterns=["team-*"]
    )

    def allowed(groups, admin=None):
        return asyncio.run(auth.check_allowed("u", {"name": "u", "admin": admin, "groups": groups, "auth_state": {}}))

    assert allowed(["team-alpha"]) and allowed(["organizers"]) and allowed([], admin=True)
    assert not allowed(["visitors"]) and not allowed([]) and not allowed(["teamless"])


def test_discovery_from_the_issuer(tmp_path, provider):
    cfg = oauth.hub_config(oidc_settings(tmp_path, oauth_issuer=provider), environ={oauth.SECRET_ENV: "x"})
    t = cfg.ContestOIDCAuthenticator
    assert (t.authorize_url, t.token_url, t.userdata_url) == (
        f"{provider}/oauth2/authorize",
        f"{provider}/oauth2/token",
        f"{provider}/userinfo",
    )
    # An explicit endpoint wins over the discovered one.
    t = oauth.hub_config(
        oidc_settings(tmp_path, oauth_issuer=provider, oauth_token_url="https://other/token"),
        environ={oauth.SECRET_ENV: "x"},
    ).ContestOIDCAuthenticator
    assert t.token_url == "https://other/token" and t.userdata_url == f"{provider}/userinfo"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"oauth_client_id": ""}, "needs oauth_client_id"),
        ({}, "needs oauth_issuer"),
        ({"oauth_issuer": "http://127.0.0.1:9"}, "cannot read the OpenID Connect discovery document"),
        ({"auth": "github"}, "needs github_org"),
        ({"auth": "local"}, "is not an OAuth provider"),
    ],
)
def test_bad_oauth_settings_are_named(tmp_path, values, message):
    with pytest.raises(SettingsError, match=message):
        oauth.hub_config(oidc_settings(tmp_path, **values), environ={oauth.SECRET_ENV: "x"})


def test_client_secret_from_environment_or_private_file(tmp_path):
    s = oidc_settings(tmp_path, **EXPLICIT)
    path = s.runtime_dir / oauth.SECRET_FILE
    with pytest.raises(SettingsError, match=f"set {oauth.SECRET_ENV} or write it to {path}"):
        oauth.client_secret(s, environ={})
    path.parent.mkdir(parents=True)
    path.write_text("from-file\n")
    os.chmod(path, 0o644)
    with pytest.raises(SettingsError, match="can be read by other accounts"):
        oauth.client_secret(s, environ={})
    os.chmod(path, 0o600)
    assert oauth.client_secret(s, environ={}) == "from-file"
    assert oauth.client_secret(s, environ={oauth.SECRET_ENV: "from-env"}) == "from-env"
    other = tmp_path / "elsewhere"
    other.write_text("elsewhere\n")
    os.chmod(other, 0o600)
    assert oauth.client_secret(oidc_settings(tmp_path, oauth_client_secret_file=str(other)), environ={}) == "elsewhere"


def test_github_variant(tmp_path):
    s = oidc_settings(tmp_path, auth="github", github_org="OpenData-Contest")
    cfg = oauth.hub_config(s, environ={oauth.SECRET_ENV: CLIENT_SECRET})
    cls = cfg.JupyterHub.authenticator_class
    from oauthenticator.github import GitHubOAuthenticator

    assert cls is oauth.ContestGitHubAuthenticator and issubclass(cls, GitHubOAuthenticator)
    t = cfg[cls.__name__]
    assert t.populate_teams_in_auth_state and t.manage_groups and t.enable_auth_state
    assert "read:org" in t.scope and t.login_service == "GitHub" and "username_claim" not in t
    assert t.admin_groups == {"organizers"} and "allowed_organizations" not in t
    auth = cls(config=Config(cfg))
    assert auth.username_claim == "login"
    org = {"login": "opendata-contest"}
    teams = [
        {"slug": "alpha", "organization": org},
        {"slug": "team-beta", "organization": org},
        {"slug": "organizers", "organization": org},
        {"slug": "gamma", "organization": {"login": "someone-else"}},
    ]
    assert auth.auth_state_groups_key({"teams": teams}) == ["organizers", "team-alpha", "team-beta"]
    assert auth.auth_state_groups_key({}) == []


# --- a real hub and a real provider ----------------------------------------------------------


@pytest.fixture(scope="module")
def oidc_hub(provider, tmp_path_factory):
    if "submit" not in available_services().split(","):
        pytest.skip("the submission service does not import (see the output above)")
    root = tmp_path_factory.mktemp("oidc-hub")
    (root / "data").mkdir()
    settings = hub_settings(
        root,
        root / "data",
        auth="oidc",
        oauth_issuer=provider,
        oauth_client_id="contesthub",
        services="submit",
        idle_timeout=0,
    )
    process = HubProcess(settings, extra_env={oauth.SECRET_ENV: CLIENT_SECRET}, log=root / "jupyterhub.log").start()
    try:
        process.wait_ready(120)
        yield RunningHub(settings, process, organizer="", organizer_password="")
    finally:
        process.stop()


def oidc_login(hub: RunningHub, provider: str, sub: str) -> tuple[requests.Session, requests.Response]:
    """What a browser does: the hub's login button, the provider's form, back to the hub's callback."""
    s = hub.new_session()  # the hub's login page (and its _xsrf cookie)
    r = s.get(f"{hub.url}/hub/oauth_login", timeout=30)  # -> the provider's authorize form
    assert r.status_code == 200 and r.url.startswith(f"{provider}/oauth2/authorize"), (r.status_code, r.url)
    assert 'name="sub"' in r.text and sub in r.text  # a predefined user's button
    r = s.post(r.url, data={"sub": sub}, allow_redirects=False, timeout=30)
    assert r.status_code == 302, r.text[-2000:]
    callback = r.headers["Location"]
    assert callback.startswith(f"{hub.url}/hub/oauth_callback?code="), callback
    r = s.get(callback, allow_redirects=False, timeout=30)  # not on to /hub/spawn: no server needed
    return s, r


@pytest.fixture(scope="module")
def logged_in(oidc_hub, provider):
    """alice (team-alpha) and olga (organizers), logged in, each with an API token."""
    out = {}
    for sub, name in (("alice-sub", "alice"), ("olga-sub", "olga")):
        s, r = oidc_login(oidc_hub, provider, sub)
        assert r.status_code == 302, (r.status_code, r.text[-2000:], oidc_hub.process.log_tail(40))
        assert "jupyterhub-hub-login" in s.cookies
        out[name] = oidc_hub.new_token(name, session=s, note="oidc test")
    return out


def submit_api(hub: RunningHub, path: str, token: str) -> requests.Response:
    return requests.get(
        f"{hub.url}/services/submit/api/{path}", headers={"Authorization": f"token {token}"}, timeout=60
    )


def test_the_login_page_offers_the_identity_provider(oidc_hub):
    page = requests.get(f"{oidc_hub.url}/hub/login", timeout=30)
    assert page.status_code == 200
    assert "Sign in with OpenID Connect" in page.text and "/hub/oauth_login" in page.text
    assert "signup" not in page.text  # no local sign-up with an identity provider


def test_the_groups_claim_makes_the_team_group(oidc_hub, logged_in):
    alice = oidc_hub.api("GET", "/users/alice", token=logged_in["olga"]).json()
    assert alice["groups"] == ["team-alpha"]  # "everyone" is not a contest group: dropped
    assert alice["admin"] is False
    group = oidc_hub.api("GET", "/groups/team-alpha", token=logged_in["olga"])
    assert group.status_code == 200 and group.json()["users"] == ["alice"]


def test_the_organizers_claim_makes_an_admin(oidc_hub, logged_in):
    olga = oidc_hub.api("GET", "/users/olga", token=logged_in["olga"]).json()
    assert olga["admin"] is True and olga["groups"] == ["organizers"]
    # alice's own token cannot read other users: she is no admin.
    assert oidc_hub.api("GET", "/users/olga", token=logged_in["alice"]).status_code == 404


def test_someone_in_no_allowed_group_is_refused_with_a_page_saying_why(oidc_hub, provider, logged_in):
    s, r = oidc_login(oidc_hub, provider, "mallory-sub")
    assert r.status_code == 403
    page = r.content.decode("utf-8")  # JupyterHub's error page: <meta charset="utf-8">, no charset header
    assert "not in a contest team" in page and "不属于任何参赛队伍" in page
    assert "jupyterhub-hub-login" not in s.cookies
    assert oidc_hub.api("GET", "/users/mallory", token=logged_in["olga"]).status_code == 404


def test_the_submission_service_maps_the_group_to_the_team(oidc_hub, logged_in):
    token = logged_in["alice"]
    assert submit_api(oidc_hub, "submissions", token).json() == []  # first contact: joins team-alpha's team
    me = submit_api(oidc_hub, "me", token)
    assert me.status_code == 200, me.text
    doc = me.json()
    assert doc["user"] == "alice" and doc["organizer"] is False
    assert doc["team"]["name"] == "alpha" and doc["team"]["members"] == ["alice"]
    olga = submit_api(oidc_hub, "me", logged_in["olga"]).json()
    assert olga["organizer"] is True and olga["team"] is None


def test_a_member_an_organizer_removed_is_not_joined_again_from_the_providers_group(oidc_hub, logged_in):
    """Issue 13, item 6: the provider's group still names alice after an organizer removed her;
    that must not bring her back (only an organizer does)."""
    alice, olga = logged_in["alice"], logged_in["olga"]
    assert submit_api(oidc_hub, "me", alice).json()["team"]["name"] == "alpha"
    r = requests.delete(
        f"{oidc_hub.url}/services/submit/api/admin/teams/alpha/members/alice",
        headers={"Authorization": f"token {olga}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert oidc_hub.api("GET", "/users/alice", token=olga).json()["groups"] == ["team-alpha"]  # the provider's
    for _ in range(2):  # the second call would find her joined again, were she
        me = submit_api(oidc_hub, "me", alice)
        assert me.status_code == 200 and me.json()["team"] is None, me.text
    refused = submit_api(oidc_hub, "submissions", alice)
    assert refused.status_code == 409 and refused.json()["code"] == "no-team", refused.text
    assert "尚未加入队伍" in refused.json()["message_zh"] and "not in a team" in refused.json()["message_en"]
    # An organizer adding her back is the way in again.
    r = requests.post(
        f"{oidc_hub.url}/services/submit/api/admin/teams/alpha/members",
        headers={"Authorization": f"token {olga}"},
        json={"user": "alice"},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    assert submit_api(oidc_hub, "me", alice).json()["team"]["name"] == "alpha"
