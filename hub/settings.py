"""The hub's settings: one small object for `contesthub up` and config/jupyterhub_config.py.

Values come from ``config/hub.toml`` (or the file named by ``CONTESTHUB_HUB_CONFIG``), then
from environment variables ``CONTESTHUB_<KEY>`` (``CONTESTHUB_PORT``, ``CONTESTHUB_MODE``,
...), then from explicit overrides (the flags of ``contesthub up``). ``contesthub up`` hands
the settings it resolved to the hub process as those same variables (:meth:`to_env`), so the
hub's config file sees exactly what ``up`` printed.

=========================  ==========================================  ====================
key (env CONTESTHUB_...)   meaning                                     default (hub.toml)
=========================  ==========================================  ====================
``mode``                   demo, secure or cluster                     demo
``ip`` / ``port``          public address of the proxy                 127.0.0.1:8000
``hub_port``               the hub behind the proxy                    8081
``proxy_api_port``         configurable-http-proxy's API               8001
``submit_port``            the submission service                      8010
``leaderboard_port``       the Streamlit leaderboard                   8501
``data_port``              the public data service (hub/data_service)  8030
``data_root``              published open data (read-only)             $CONTESTHUB_HOME/data
``private_root``           organizer-only files, hub state             $CONTESTHUB_HOME/private
``home_root``              contestants' homes                          $CONTESTHUB_HOME/homes
``conditional_root``       conditional data, a root per dataset, read  <data root>/../conditional
                           only by approved teams (leaderboard/access)
``cpu_limit``              CPUs per contestant                         2.0
``mem_limit``              memory per contestant                       4G
``idle_timeout``           seconds before an idle server is stopped    3600
``sandbox_python``         secure mode: the Python contestants'        (auto, see
                           accounts run; empty: the hub's own if they  hub/interpreter.py)
                           can, else one built in var/sandbox-python
``system_user_prefix``     secure mode: Unix accounts <prefix><name>   jupyter-
                           (shortened with a hash past 31 characters,
                           hub/unix_accounts.py)
``sandbox_limits``         secure mode: how mem_limit, cpu_limit and   auto
                           max_processes are enforced: auto (a cgroup
                           per contestant where one can be made, else
                           setrlimit), cgroup, rlimit (hub/limits.py)
``max_processes``          secure mode: processes and threads one      512
                           contestant may run at once
``hub_db_url``             the hub's database                          SQLite, private root
``organizer``              the admin account made on first start       organizer
``min_password_length``    shortest password at sign-up                10
``trusted_proxies``        proxies in front of the hub's own whose     (none)
                           X-Forwarded-For is believed (comma-separated
                           addresses or networks; hub/login_throttle.py)
``demo_open_login``        no passwords at all (DummyAuthenticator)    false
``services``               hub services to run: auto (each whose      auto
                           code exists), none, or e.g. submit,leaderboard,data
                           (the scorer pool runs with submit)
``scorers``                scorer worker processes (hub/scorer.py);   0
                           0: one per core
``scorer_memory``          address space of one scoring (its child    2G
                           process); DuckDB gets a quarter
``scorer_seconds``         wall-clock limit of one scoring            60
``auth``                   local (accounts of hub/accounts.py), oidc   local
                           or github (an identity provider, hub/oauth.py)
``oauth_client_id``        the client registered at the provider       (none)
``oauth_client_secret_file`` file with the client secret (0600); or    <private root>/hub/
                           env CONTESTHUB_OAUTH_CLIENT_SECRET          oauth_client_secret
``oauth_issuer``           OIDC issuer, read for its endpoints         (none)
``oauth_authorize_url``    OIDC endpoints, instead of discovery        (from the issuer)
``oauth_token_url``        (all three: no discovery at all)
``oauth_userdata_url``
``oauth_scope``            scopes, space-separated                     openid profile email
                                                                       (github: read:org)
``oauth_username_claim``   the claim that names the hub user           preferred_username
                                                                       (github: login)
``oauth_groups_claim``     the claim listing the user's groups         groups
``oauth_admin_group``      the provider's group of organizers          organizers
``oauth_allowed_groups``   hub groups that may log in (``*`` matches)  team-*,organizers
``oauth_login_service``    the login button's label                    OpenID Connect / GitHub
``oauth_callback_url``     the redirect URI registered at the provider (guessed per request)
``github_org``             github: the organization whose teams are    (none)
                           the contest's teams
=========================  ==========================================  ====================

The client secret is never a key of hub.toml (``to_env`` must not hand it around either):
it comes from ``CONTESTHUB_OAUTH_CLIENT_SECRET`` or the secret file (see hub/oauth.py).

dask-gateway (``gateway = true``; demo mode only, see hub/services.py and config/dask_gateway_config.py):

=========================  ==========================================  ====================
``gateway``                run dask-gateway as a hub service           false
``gateway_port``           its proxy: REST API behind the hub's        8020
                           /services/dask-gateway/, schedulers at
                           gateway://127.0.0.1:<port>
``gateway_api_port``       its private API server (its proxy only)     8021
``gateway_worker_cores``   cores of one Dask worker                    1
``gateway_worker_memory``  memory of one Dask worker                   2G
``gateway_max_workers``    per cluster, for teams not in gateway_teams 2
``gateway_max_cores``      per cluster, the scheduler's core included  3.0
``gateway_max_memory``     per cluster, the scheduler's 1G included    5G
``gateway_max_clusters_per_user``                                      1
                           clusters one user may run at once (0: no
                           cap; hub/gateway_backend.py)
``gateway_max_clusters_per_team``                                      2
                           clusters one team may run at once (0: no
                           cap)
``gateway_teams``          per team: {max_workers, max_cores,          {}
                           max_memory}, each optional (TOML table,
                           JSON in CONTESTHUB_GATEWAY_TEAMS)
=========================  ==========================================  ====================
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import shutil
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hub.limits import MECHANISMS as LIMIT_MECHANISMS
from sandbox.errors import ContesthubError
from sandbox.settings import PROJECT_ROOT
from sandbox.sizes import parse_size

DEFAULT_CONFIG = PROJECT_ROOT / "config" / "hub.toml"
MODES = ("demo", "secure", "cluster")
AUTHS = ("local", "oidc", "github")  # local accounts, or an identity provider (hub/oauth.py)
SERVICES = ("submit", "leaderboard", "data")  # the optional hub services (the idle culler follows idle_timeout)
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


class SettingsError(ContesthubError):
    code = "hub-settings"


@dataclass(frozen=True)
class HubSettings:
    mode: str = "demo"
    ip: str = "127.0.0.1"
    port: int = 8000
    hub_port: int = 8081
    proxy_api_port: int = 8001
    submit_port: int = 8010
    leaderboard_port: int = 8501
    data_port: int = 8030
    data_root: Path = PROJECT_ROOT / "var" / "data"
    private_root: Path = PROJECT_ROOT / "var" / "private"
    home_root: Path = PROJECT_ROOT / "var" / "homes"
    conditional_root: Path = PROJECT_ROOT / "var" / "conditional"
    cpu_limit: float = 2.0
    mem_limit: str = "4G"
    idle_timeout: int = 3600
    # Secure mode (hub/sandboxes.py, hub/interpreter.py).
    sandbox_python: str = ""
    system_user_prefix: str = "jupyter-"
    sandbox_limits: str = "auto"
    max_processes: int = 512
    hub_db_url: str = ""
    organizer: str = "organizer"
    min_password_length: int = 10
    # Proxies in front of configurable-http-proxy (a TLS terminator): whose X-Forwarded-For
    # entries name the client that the login throttle counts (hub/login_throttle.py).
    trusted_proxies: str = ""
    demo_open_login: bool = False
    services: str = "auto"
    # The scorer pool (hub/scorer.py), which runs whenever the submission service does.
    scorers: int = 0
    scorer_memory: str = "2G"
    scorer_seconds: float = 60.0
    # Accounts: local, or an identity provider through oauthenticator (hub/oauth.py).
    auth: str = "local"
    oauth_client_id: str = ""
    oauth_client_secret_file: str = ""
    oauth_issuer: str = ""
    oauth_authorize_url: str = ""
    oauth_token_url: str = ""
    oauth_userdata_url: str = ""
    oauth_scope: str = ""
    oauth_username_claim: str = ""
    oauth_groups_claim: str = "groups"
    oauth_admin_group: str = "organizers"
    oauth_allowed_groups: str = ""
    oauth_login_service: str = ""
    oauth_callback_url: str = ""
    github_org: str = ""
    # dask-gateway, a hub service in demo mode (hub/services.py, config/dask_gateway_config.py)
    gateway: bool = False
    gateway_port: int = 8020
    gateway_api_port: int = 8021
    gateway_worker_cores: int = 1
    gateway_worker_memory: str = "2G"
    gateway_max_workers: int = 2
    gateway_max_cores: float = 3.0
    gateway_max_memory: str = "5G"
    gateway_max_clusters_per_user: int = 1
    gateway_max_clusters_per_team: int = 2
    gateway_teams: dict = field(default_factory=dict)

    # --- loading ---------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        config_file: str | os.PathLike | None = None,
    ) -> HubSettings:
        """File, then environment, then ``overrides`` (None values are ignored)."""
        env = os.environ if environ is None else environ
        path = Path(config_file or env.get("CONTESTHUB_HUB_CONFIG") or DEFAULT_CONFIG)
        raw: dict[str, Any] = {}
        if path.exists():
            try:
                raw.update(tomllib.loads(path.read_text("utf-8")))
            except tomllib.TOMLDecodeError as exc:
                raise SettingsError(f"{path}: not valid TOML: {exc}", f"{path}：不是有效的 TOML：{exc}") from None
        elif config_file or env.get("CONTESTHUB_HUB_CONFIG"):
            raise SettingsError(f"hub settings file {path} does not exist", f"找不到 hub 配置文件 {path}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise SettingsError(
                f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                f"{path}：未知的配置项 {', '.join(unknown)}；可用：{', '.join(sorted(known))}",
            )
        for name in known:
            if env.get(env_name(name)):
                raw[name] = env[env_name(name)]
        for name, value in (overrides or {}).items():
            if name not in known:
                raise SettingsError(f"unknown hub setting {name!r}", f"未知的 hub 配置项 {name!r}")
            if value is not None:
                raw[name] = value
        # Empty folders mean the defaults shared with the open-data layer (sandbox.settings).
        home = Path(env.get("CONTESTHUB_HOME") or PROJECT_ROOT / "var")
        for name, folder in (("data_root", "data"), ("private_root", "private"), ("home_root", "homes")):
            raw[name] = _path(raw.get(name)) or (home / folder).resolve()
        # Beside the data root unless set, as sandbox.settings.Paths does.
        raw["conditional_root"] = _path(raw.get("conditional_root")) or (raw["data_root"].parent / "conditional")
        return cls(**{f.name: _coerce(f, raw[f.name]) for f in fields(cls) if f.name in raw}).check()

    def check(self) -> HubSettings:
        if self.mode not in MODES:
            raise SettingsError(
                f"mode {self.mode!r} is not one of {', '.join(MODES)}",
                f"模式 {self.mode!r} 无效，应为 {'、'.join(MODES)} 之一",
            )
        ports = {
            "port": self.port,
            "hub_port": self.hub_port,
            "proxy_api_port": self.proxy_api_port,
            "submit_port": self.submit_port,
            "leaderboard_port": self.leaderboard_port,
            "data_port": self.data_port,
            "gateway_port": self.gateway_port,
            "gateway_api_port": self.gateway_api_port,
        }
        for name, port in ports.items():
            if not 0 < port < 65536:
                raise SettingsError(f"{name} {port} is not a TCP port", f"{name} {port} 不是有效的 TCP 端口")
        if len(set(ports.values())) != len(ports):
            raise SettingsError(f"two settings use the same port: {ports}", f"有两个配置项使用了同一个端口：{ports}")
        if self.auth not in AUTHS:
            raise SettingsError(
                f"auth {self.auth!r} is not one of {', '.join(AUTHS)}",
                f"auth {self.auth!r} 无效，应为 {'、'.join(AUTHS)} 之一",
            )
        if self.auth != "local" and self.demo_open_login:
            raise SettingsError(
                f"demo_open_login and auth {self.auth!r} exclude each other",
                f"demo_open_login 与 auth {self.auth!r} 不能同时使用",
            )
        if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,15}", self.system_user_prefix):
            raise SettingsError(
                f"system_user_prefix {self.system_user_prefix!r} must be up to 16 lower-case letters, digits, "
                "'-' or '_', starting with a letter (it begins every contestant's Unix account name)",
                f"system_user_prefix {self.system_user_prefix!r} 必须是不超过 16 个小写字母、数字、'-' 或 '_'，"
                "并以字母开头（它是每位参赛者 Unix 账号名的开头）",
            )
        if self.sandbox_limits not in LIMIT_MECHANISMS:
            raise SettingsError(
                f"sandbox_limits {self.sandbox_limits!r} is not one of {', '.join(LIMIT_MECHANISMS)}",
                f"sandbox_limits {self.sandbox_limits!r} 无效，应为 {'、'.join(LIMIT_MECHANISMS)} 之一",
            )
        if self.max_processes < 32:
            raise SettingsError(
                f"max_processes {self.max_processes} is too small: a JupyterLab server and one kernel need about 32",
                f"max_processes {self.max_processes} 太小：一个 JupyterLab 服务器加一个内核大约需要 32 个",
            )
        if self.cpu_limit <= 0:
            raise SettingsError("cpu_limit must be above 0", "cpu_limit 必须大于 0")
        self.mem_limit_bytes  # noqa: B018 -- raises on a malformed limit
        unknown = set(self.service_names or ()) - set(SERVICES)
        if unknown:
            raise SettingsError(
                f"services: unknown {', '.join(sorted(unknown))}; use auto, none or some of {', '.join(SERVICES)}",
                f"services：未知的服务 {', '.join(sorted(unknown))}；可用 auto、none 或 {'、'.join(SERVICES)}",
            )
        self.gateway_limits  # noqa: B018 -- raises on a malformed or too small limit
        for network in self.trusted_proxy_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise SettingsError(
                    f"trusted_proxies: {network!r} is not an address or network such as 10.0.0.0/8",
                    f"trusted_proxies：{network!r} 不是有效的地址或网段（例如 10.0.0.0/8）",
                ) from None
        for name in ("gateway_max_clusters_per_user", "gateway_max_clusters_per_team"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must be 0 (no cap) or more", f"{name} 必须为 0（不限）或更大")
        if self.scorers < 0:
            raise SettingsError("scorers must be 0 (one per core) or more", "scorers 必须为 0（每核一个）或更大")
        if size_bytes("scorer_memory", self.scorer_memory) < 512 << 20 or self.scorer_seconds <= 0:
            raise SettingsError(
                f"scorer_memory ({self.scorer_memory}) must be at least 512M and scorer_seconds "
                f"({self.scorer_seconds:g}) above 0: one scoring needs that much to run at all",
                f"scorer_memory（{self.scorer_memory}）至少为 512M，"
                f"scorer_seconds（{self.scorer_seconds:g}）必须大于 0",
            )
        return self

    @property
    def trusted_proxy_networks(self) -> list[str]:
        return [n.strip() for n in self.trusted_proxies.split(",") if n.strip()]

    @property
    def service_names(self) -> tuple[str, ...] | None:
        """The optional services asked for; None for "auto" (each whose code exists)."""
        text = self.services.strip().lower()
        if text == "auto":
            return None
        if text in ("", "none"):
            return ()
        return tuple(name.strip() for name in text.split(",") if name.strip())

    # --- derived values --------------------------------------------------------------------

    @property
    def runtime_dir(self) -> Path:
        """Generated secrets and the hub's own state: organizer-only, mode 0700."""
        return self.private_root / "hub"

    @property
    def db_url(self) -> str:
        return self.hub_db_url or f"sqlite:///{self.runtime_dir / 'jupyterhub.sqlite'}"

    @property
    def public_url(self) -> str:
        host = "127.0.0.1" if self.ip in ("", "0.0.0.0") else self.ip
        return f"http://{host}:{self.port}"

    @property
    def mem_limit_bytes(self) -> int:
        text = self.mem_limit.strip().upper().removesuffix("B").removesuffix("I")
        units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
        try:
            value = int(float(text[:-1]) * units[text[-1]]) if text and text[-1] in units else int(float(text))
        except ValueError:
            value = 0
        if value <= 0:
            raise SettingsError(
                f"mem_limit {self.mem_limit!r} is not a size such as 4G or 512M",
                f"mem_limit {self.mem_limit!r} 不是有效的大小（例如 4G、512M）",
            )
        return value

    @property
    def scorer_workers(self) -> int:
        """The scorer pool's size: ``scorers``, or one worker per core of this machine."""
        return self.scorers or len(os.sched_getaffinity(0))

    @property
    def threads(self) -> int:
        return max(1, int(self.cpu_limit))

    @property
    def proxy_command(self) -> list[str]:
        """configurable-http-proxy as installed by dev.py into node_modules, else from PATH."""
        local = PROJECT_ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
        if local.exists():
            return [str(local)]
        found = shutil.which("configurable-http-proxy")
        return [found] if found else ["configurable-http-proxy"]

    # --- dask-gateway ----------------------------------------------------------------------

    @property
    def gateway_worker_memory_bytes(self) -> int:
        return size_bytes("gateway_worker_memory", self.gateway_worker_memory)

    @property
    def gateway_limits(self) -> dict[str, dict[str, int | float]]:
        """Per-cluster limits in dask-gateway's ``ClusterConfig`` names, by team ("" for every other user).

        ``cluster_max_workers`` is already the smaller of ``max_workers`` and what the cores and
        memory leave for workers once the scheduler (1 core, 1G) has its share.
        """
        worker_memory = self.gateway_worker_memory_bytes
        if self.gateway_worker_cores < 1:
            raise SettingsError("gateway_worker_cores must be at least 1", "gateway_worker_cores 至少为 1")
        default = {"max_workers": self.gateway_max_workers, "max_cores": self.gateway_max_cores}
        default["max_memory"] = self.gateway_max_memory
        out = {}
        for team, values in {"": {}, **self.gateway_teams}.items():
            where = f"gateway_teams.{team}" if team else "gateway"
            if not isinstance(values, Mapping) or set(values) - set(default):
                raise SettingsError(
                    f"{where}: expected a table of {', '.join(default)}, got {values!r}",
                    f"{where}：应为包含 {'、'.join(default)} 的表，实际为 {values!r}",
                )
            v = {**default, **values}
            try:
                cores, workers = float(v["max_cores"]), int(v["max_workers"])
            except (TypeError, ValueError):
                raise SettingsError(
                    f"{where}: max_workers and max_cores must be numbers, got {v!r}",
                    f"{where}：max_workers 与 max_cores 必须是数字，实际为 {v!r}",
                ) from None
            memory = size_bytes(f"{where} max_memory", str(v["max_memory"]))
            room = min(
                (cores - GATEWAY_SCHEDULER_CORES) // self.gateway_worker_cores,
                (memory - GATEWAY_SCHEDULER_MEMORY) // worker_memory,
            )
            workers = min(workers, int(room))
            if workers < 1:
                raise SettingsError(
                    f"{where}: the limits (max_workers {v['max_workers']}, max_cores {cores:g}, max_memory "
                    f"{v['max_memory']}) leave no room for one worker of {self.gateway_worker_cores} core(s) and "
                    f"{self.gateway_worker_memory} beside the scheduler (1 core, 1G)",
                    f"{where}：这些上限在调度器（1 核、1G）之外放不下一个 {self.gateway_worker_cores} 核、"
                    f"{self.gateway_worker_memory} 的 worker",
                )
            out[team] = {"cluster_max_cores": cores, "cluster_max_memory": memory, "cluster_max_workers": workers}
        return out

    def to_env(self) -> dict[str, str]:
        """Every setting as the CONTESTHUB_* variable that :meth:`load` reads back."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                out[env_name(f.name)] = "true" if value else "false"
            elif isinstance(value, dict):
                out[env_name(f.name)] = json.dumps(value, ensure_ascii=False)
            else:
                out[env_name(f.name)] = str(value)
        return out


# dask-gateway's scheduler of every cluster (config/dask_gateway_config.py): counted in the limits.
GATEWAY_SCHEDULER_CORES = 1
GATEWAY_SCHEDULER_MEMORY = 2**30


def size_bytes(name: str, text: str) -> int:
    """A size such as 4G, 512M or 2GiB in bytes; a SettingsError naming ``name`` if malformed."""
    try:
        value = parse_size(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise SettingsError(
            f"{name} {text!r} is not a size such as 4G or 512M", f"{name} {text!r} 不是有效的大小（例如 4G、512M）"
        )
    return value


def env_name(field_name: str) -> str:
    return f"CONTESTHUB_{field_name.upper()}"


def _path(value: Any) -> Path | None:
    if value in (None, ""):
        return None
    p = Path(os.path.expanduser(str(value)))
    return (p if p.is_absolute() else PROJECT_ROOT / p).resolve()


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in TRUE | FALSE:
                return text in TRUE
            raise ValueError(value)
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "Path":
            return Path(value)
        if kind == "dict":
            value = json.loads(value) if isinstance(value, str) else value
            if not isinstance(value, dict):
                raise ValueError(value)
            return value
        return str(value)
    except (TypeError, ValueError):
        raise SettingsError(
            f"hub setting {f.name} (env {env_name(f.name)}): {value!r} is not a valid {kind}",
            f"hub 配置项 {f.name}（环境变量 {env_name(f.name)}）：{value!r} 不是有效的 {kind}",
        ) from None
