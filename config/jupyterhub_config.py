"""JupyterHub configuration for every mode: ``jupyterhub -f config/jupyterhub_config.py``.

``contesthub up`` runs the hub with this file. Its settings come from ``hub/settings.py``
(``config/hub.toml``, then CONTESTHUB_* environment variables, then the flags of ``up``):
ports, mode (demo | secure | cluster), the data, private and home roots, per-contestant CPU
and memory. Generated secrets and the hub's SQLite database live in ``<private root>/hub/``
(mode 0700, files 0600), made once and reused on every restart.
"""

# ruff: noqa: F821 -- `c` is the config object traitlets defines when it runs this file
import os
import pwd
import sys
from pathlib import Path

from hub import lab_settings, runtime
from hub.accounts import LocalAccountsAuthenticator
from hub.names import USERNAME_PATTERN
from hub.rules import Rules, options_from_form
from hub.sandboxes import DEMO_WARNING, DemoSpawner, pre_spawn_hook, secure_mode_config
from hub.services import (
    CLOCK_VARIABLES,
    GATEWAY_SCOPE,
    GATEWAY_SERVICE,
    ORGANIZER_GROUP,
    gateway_client_environment,
    gateway_left_out,
    hub_services,
)
from hub.settings import HubSettings, SettingsError
from leaderboard.applications import JURORS_GROUP
from leaderboard.store import default_url
from sandbox.settings import Paths

settings = HubSettings.load()
rt = runtime.ensure_dir(settings.runtime_dir)


def warn(text: str) -> None:
    """Loud: a framed block on the hub's stderr, which `contesthub up` shows."""
    bar = "!" * 100
    sys.stderr.write(f"\n{bar}\n!! {text}\n{bar}\n\n")
    sys.stderr.flush()


# --- network, secrets, database ------------------------------------------------------------

c.JupyterHub.bind_url = f"http://{settings.ip}:{settings.port}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = settings.hub_port
c.JupyterHub.cookie_secret_file = str(runtime.cookie_secret_file(rt))
c.JupyterHub.db_url = settings.db_url
c.JupyterHub.pid_file = str(rt / "jupyterhub.pid")
c.ConfigurableHTTPProxy.command = settings.proxy_command
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
c.ConfigurableHTTPProxy.auth_token = runtime.proxy_auth_token(rt)
c.ConfigurableHTTPProxy.pid_file = str(rt / "proxy.pid")
c.ConfigurableHTTPProxy.should_start = True
# Stopping the hub (Ctrl-C on `contesthub up`) stops every server and the proxy; accounts,
# teams and tokens stay in the database for the next start.
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True

# --- accounts ------------------------------------------------------------------------------

c.Authenticator.username_pattern = USERNAME_PATTERN
if settings.auth != "local":
    # Production: an identity provider (OpenID Connect or GitHub) through oauthenticator;
    # hub/oauth.py builds every setting. Its `team-*` groups are the teams, its admin group
    # the `organizers` (admins); it decides group membership at every login.
    from hub import oauth

    c.merge(oauth.hub_config(settings))
elif settings.demo_open_login:
    warn(
        "OPEN LOGIN (--demo-open-login): anyone who can reach this hub logs in with any name and "
        "no password (DummyAuthenticator). Never use this for a real contest."
    )
    c.JupyterHub.authenticator_class = "dummy"
    c.Authenticator.allow_all = True
else:
    # Real local accounts (hub/accounts.py): self sign-up at /hub/signup, approved by an
    # organizer at /hub/accounts; bcrypt hashes in the hub's database; no shared password.
    c.JupyterHub.authenticator_class = LocalAccountsAuthenticator
    c.LocalAccountsAuthenticator.db_url = settings.db_url
    c.LocalAccountsAuthenticator.min_password_length = settings.min_password_length
    c.LocalAccountsAuthenticator.trusted_proxies = settings.trusted_proxy_networks
    # Read-only: /hub/accounts shows the contest team a pending sign-up's name is listed in.
    c.LocalAccountsAuthenticator.contest_db_url = default_url(Paths(settings.data_root, settings.private_root, Path()))
    # Organizers are the members of the `organizers` group, which holds the admin role (see
    # services below); the organizer account made on first start is one. Add organizers on
    # the admin page (Groups). The group only ever gains members here, never loses them.
    # The `jurors` group (empty at first; organizers add jurors on the admin page) holds the
    # application track's jurors (leaderboard/applications.py).
    c.JupyterHub.load_groups = {ORGANIZER_GROUP: {"users": [settings.organizer]}, JURORS_GROUP: {"users": []}}
    # Every account may log in once approved: the authenticator itself refuses the others
    # (JupyterHub >= 5 otherwise also wants an allow list).
    c.Authenticator.allow_all = True
if settings.auth == "local":  # the login page's way to sign-up (an identity provider has its own)
    c.JupyterHub.template_paths = [str(Path(__file__).resolve().parent / "templates")]

# --- sandboxes -----------------------------------------------------------------------------

home_template = str(settings.home_root / "{username}")
if settings.mode == "demo":
    account = pwd.getpwuid(os.getuid()).pw_name
    warn(DEMO_WARNING.format(account=account))
    c.JupyterHub.spawner_class = DemoSpawner
    c.DemoSpawner.home_dir_template = home_template
    c.JupyterHub.template_vars = {
        "announcement": "Demo mode: contestants are not isolated from each other. "
        "演示模式：参赛者之间没有隔离，请勿用于正式比赛。"
    }
elif settings.mode == "secure":
    # Contestants' servers run as their own accounts, with a Python every account can run
    # (hub/interpreter.py); the open data readable by all, the private root by none. The hub
    # refuses to start, saying what to fix, when any of it is not so (hub/sandboxes.py).
    c.merge(secure_mode_config(settings))
else:  # cluster: Zero to JupyterHub provides the network and storage settings
    try:
        import kubespawner  # noqa: F401
    except ImportError:
        raise SettingsError(
            "mode 'cluster' needs jupyterhub-kubespawner (it runs inside Zero to JupyterHub)",
            "cluster 模式需要 jupyterhub-kubespawner（在 Zero to JupyterHub 中运行）",
        ) from None
    c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"

if settings.mode != "cluster":
    # The venv's Python, whether or not its bin/ is on PATH.
    c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
    # JupyterLab in Chinese, without the news prompt (hub/lab_settings.py).
    c.Spawner.args = lab_settings.spawner_args()
    if settings.mode == "demo" and os.geteuid() == 0:
        c.Spawner.args.append("--allow-root")  # servers run as the hub's account, here root
c.Spawner.default_url = lab_settings.LAB  # the first start opens the getting-started notebook instead
# The contest's rules and data licences, accepted once before the first server (hub/rules.py).
rules = Rules(Paths.from_env(settings.data_root, settings.private_root), os.environ.get("CONTESTHUB_CONTEST"))


async def contest_options_form(spawner) -> str:
    # A function, not the bound method: traitlets deep-copies config values into every spawner.
    return await rules.options_form(spawner)


c.Spawner.options_form = contest_options_form
c.Spawner.options_from_form = options_from_form


async def contest_pre_spawn_hook(spawner) -> None:
    await pre_spawn_hook(spawner)  # the home first: a refusal for its sake comes before the rules
    await rules.check(spawner)


c.Spawner.pre_spawn_hook = contest_pre_spawn_hook
c.Spawner.http_timeout = 90
c.Spawner.start_timeout = 120
c.Spawner.cpu_limit = settings.cpu_limit
c.Spawner.mem_limit = settings.mem_limit_bytes
# What the contestant API reads (sandbox/api.py): the data root, and threads and memory that
# follow the limits (DuckDB gets half the memory; the rest is for pandas and the kernel).
# Never the private root.
c.Spawner.environment = {
    "CONTESTHUB_DATA_ROOT": str(settings.data_root),
    # Where conditional datasets live; a sandbox reads one only when the platform granted it.
    "CONTESTHUB_CONDITIONAL_ROOT": str(settings.conditional_root),
    "CONTESTHUB_THREADS": str(settings.threads),
    "CONTESTHUB_MEMORY_LIMIT": f"{settings.mem_limit_bytes // 2 // 2**20}M",
    "CONTESTHUB_SUBMIT_URL": f"{settings.public_url}/services/submit/",
}
# JupyterHub's own list, plus a moved clock (hub/services.py, CLOCK_VARIABLES).
c.Spawner.env_keep.extend(CLOCK_VARIABLES)
# The notebook's JUPYTERHUB_API_TOKEN: the default `server` role's scopes, plus access to
# the submission service (sandbox.submit sends it there).
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    "access:services!service=submit",
]

# --- services ------------------------------------------------------------------------------

c.JupyterHub.services, service_roles = hub_services(settings)
# Organizers hold the admin role through their group. With an identity provider the admin flag
# follows its admin group instead (admin_groups, hub/oauth.py): the group only appears at the
# first organizer's login, and JupyterHub 6.1.1 fails to start when the admin role names a
# group that does not exist yet.
admin_role = {"name": "admin", "groups": [ORGANIZER_GROUP]} if settings.auth == "local" else {"name": "admin"}
c.JupyterHub.load_roles = [admin_role, *service_roles]
# Every contestant may call the submission service (with a notebook's token, see above).
c.JupyterHub.extra_user_scopes = {"access:services!service=submit"}
# dask-gateway (setting `gateway`, demo mode): sandbox.dask_client() asks it for clusters with
# the notebook's own token, which then needs access to the service, like submit above.
if any(service["name"] == GATEWAY_SERVICE for service in c.JupyterHub.services):
    c.Spawner.environment.update(gateway_client_environment(settings))
    c.Spawner.server_token_scopes.append(GATEWAY_SCOPE)
    c.JupyterHub.extra_user_scopes.add(GATEWAY_SCOPE)
elif gateway_left_out(settings):
    warn(gateway_left_out(settings))
