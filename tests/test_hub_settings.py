"""Hub settings, secrets, service entries and accounts, without starting a hub."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from hub import runtime
from hub.accounts import AccountStore, check_password, password_problem, prepare_organizer
from hub.services import CULLER_SCOPES, SUBMIT_SCOPES, hub_services
from hub.settings import HubSettings, SettingsError


def test_file_then_environment_then_flags(tmp_path):
    toml = tmp_path / "hub.toml"
    toml.write_text('port = 9000\nhub_port = 9001\nmode = "secure"\nmem_limit = "1G"\n')
    env = {"CONTESTHUB_HUB_CONFIG": str(toml), "CONTESTHUB_PORT": "9100", "CONTESTHUB_HOME": str(tmp_path / "h")}
    s = HubSettings.load({"port": 9200, "cpu_limit": None}, environ=env)
    assert (s.port, s.hub_port, s.mode) == (9200, 9001, "secure")
    assert HubSettings.load(environ=env).port == 9100
    assert s.mem_limit_bytes == 2**30
    # Empty folders follow CONTESTHUB_HOME like the open-data layer's defaults.
    assert s.data_root == (tmp_path / "h" / "data").resolve()
    assert s.private_root == (tmp_path / "h" / "private").resolve()
    assert s.home_root == (tmp_path / "h" / "homes").resolve()
    assert s.db_url == f"sqlite:///{s.private_root / 'hub' / 'jupyterhub.sqlite'}"
    # What `contesthub up` hands the hub reads back as the same settings.
    assert HubSettings.load(environ=s.to_env()) == s


def test_repository_defaults_load():
    s = HubSettings.load(environ={})
    assert s.mode == "demo" and s.port == 8000 and not s.demo_open_login


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "cloud"}, "is not one of demo, secure, cluster"),
        ({"port": 8081}, "two settings use the same port"),
        ({"port": 70000}, "is not a TCP port"),
        ({"mem_limit": "lots"}, "is not a size"),
        ({"cpu_limit": "two"}, "is not a valid float"),
        ({"demo_open_login": "perhaps"}, "is not a valid bool"),
        ({"colour": "red"}, "unknown hub setting"),
        ({"scorers": -1}, "scorers must be 0"),
        ({"scorer_memory": "100M"}, "scorer_memory .100M. must be at least 512M"),
    ],
)
def test_bad_settings_are_named(values, message):
    with pytest.raises(SettingsError, match=message):
        HubSettings.load(values, environ={})


def test_unknown_key_in_the_file(tmp_path):
    (tmp_path / "hub.toml").write_text("prot = 8000\n")
    with pytest.raises(SettingsError, match="unknown key"):
        HubSettings.load(config_file=tmp_path / "hub.toml", environ={})


def test_secrets_are_made_once_with_mode_0600(tmp_path):
    rt = tmp_path / "private" / "hub"
    first = runtime.proxy_auth_token(rt)
    assert len(first) == 64
    assert runtime.proxy_auth_token(rt) == first
    assert stat.S_IMODE(rt.stat().st_mode) == 0o700
    assert stat.S_IMODE((rt / "proxy_auth_token").stat().st_mode) == 0o600
    assert runtime.service_token(rt, "submit") != runtime.service_token(rt, "idle-culler")


def test_service_entries(tmp_path):
    s = HubSettings.load({"private_root": tmp_path / "p", "data_root": tmp_path / "d"}, environ={})
    services, roles = hub_services(s, include_submit=True, include_leaderboard=True)
    by_name = {x["name"]: x for x in services}
    from jupyterhub.services.service import Service

    fields = set(Service.class_trait_names())
    assert all(set(x) <= fields for x in services), [set(x) - fields for x in services]
    assert set(by_name) == {"submit", "scorer", "leaderboard", "data", "idle-culler"}
    # The public data service never learns where the private root (the hidden solutions) is.
    data = by_name["data"]
    assert "CONTESTHUB_PRIVATE_ROOT" not in data["environment"]
    assert data["environment"]["CONTESTHUB_PORT"] == str(s.data_port) and data["command"][-1] == "hub.data_service"
    submit = by_name["submit"]
    assert submit["command"] == [sys.executable, "-m", "hub.submit_service"]
    assert submit["url"] == f"http://127.0.0.1:{s.submit_port}"
    assert submit["environment"]["CONTESTHUB_PRIVATE_ROOT"] == str(s.private_root)
    # The scorer pool goes with the submission service: a worker per core, within the limits,
    # ending with the hub (hub/die_with_parent.py), no URL (it talks to the store only).
    pool = by_name["scorer"]
    assert (
        pool["command"][-4:] == ["-m", "hub.scorer", "--workers", str(len(os.sched_getaffinity(0)))]
        and "url" not in pool
    )
    assert pool["command"][1:3] == ["-m", "hub.die_with_parent"]
    assert pool["environment"]["CONTESTHUB_SCORER_MEMORY"] == "2G"
    assert pool["environment"]["CONTESTHUB_SCORER_SECONDS"] == "60"
    assert pool["environment"]["CONTESTHUB_PRIVATE_ROOT"] == str(s.private_root)
    board = by_name["leaderboard"]["command"]
    assert board[board.index("--server.baseUrlPath") + 1] == "/services/leaderboard/"
    assert board[board.index("--client.toolbarMode") + 1] == "viewer"
    assert board[board.index("--browser.gatherUsageStats") + 1] == "false"
    roles = {r["name"]: r for r in roles}
    assert roles["contesthub-submit"]["scopes"] == SUBMIT_SCOPES
    assert roles["contesthub-idle-culler"]["scopes"] == CULLER_SCOPES
    # Tokens persist: the same on the next start.
    again = {x["name"]: x for x in hub_services(s, include_submit=True, include_leaderboard=True)[0]}
    assert all(again[n]["api_token"] == by_name[n]["api_token"] for n in by_name)
    # Without their code, the services are left out and the hub still starts.
    names = [x["name"] for x in hub_services(s, include_submit=False, include_leaderboard=False, include_data=False)[0]]
    assert names == ["idle-culler"]


def test_organizer_is_made_once_and_only_its_hash_kept(tmp_path):
    url = f"sqlite:///{tmp_path / 'private' / 'hub' / 'hub.sqlite'}"
    password = prepare_organizer(url, "organizer")
    assert password and len(password) >= 16
    assert prepare_organizer(url, "organizer") is None  # restart: kept
    store = AccountStore(url)
    try:
        account = store.get("organizer")
        assert account.approved
        assert check_password(password, account.password_hash)
        assert password not in account.password_hash
        new = prepare_organizer(url, "organizer", reset=True)
        assert new != password
        assert check_password(new, store.get("organizer").password_hash)
    finally:
        store.close()
    assert password.encode() not in (tmp_path / "private" / "hub" / "hub.sqlite").read_bytes()


def test_password_rules():
    assert password_problem("ann", "a-good-secret-1", "a-good-secret-1", 10) is None
    assert "differ" in password_problem("ann", "a-good-secret-1", "other", 10)[0]
    assert "at least 10" in password_problem("ann", "short", "short", 10)[0]
    assert "too easy" in password_problem("ann", "password123", "password123", 10)[0]
    assert "too easy" in password_problem("annabelle", "annabelle-99", "annabelle-99", 10)[0]
    assert "72 bytes" in password_problem("ann", "密" * 30, "密" * 30, 10)[0]


def test_secure_mode_needs_python_and_data_readable_by_every_account():
    import tempfile
    from pathlib import Path

    from hub.sandboxes import check_secure_mode, hidden_from_others

    with tempfile.TemporaryDirectory() as tmp:  # pytest's own tmp folders are closed to others
        root = Path(tmp)
        root.chmod(0o755)
        if any(not p.stat().st_mode & stat.S_IXOTH for p in root.parents):
            pytest.skip(f"{tempfile.gettempdir()} is closed to other accounts on this machine")
        data = root / "open" / "data"
        data.mkdir(parents=True)
        for p in (root / "open", data):
            p.chmod(0o755)
        closed = root / "closed"
        (closed / "python").mkdir(parents=True)
        closed.chmod(0o700)
        assert hidden_from_others(data) is None
        assert hidden_from_others(closed / "python") == closed
        problems = check_secure_mode({"Python": closed / "python", "the data root": data})
        assert len(problems) == 1 and "Python" in problems[0]


def load_hub_config(monkeypatch, tmp_path, **values):
    """config/jupyterhub_config.py as JupyterHub reads it, with these settings in the environment."""
    from traitlets.config.loader import PyFileConfigLoader

    from hub.launcher import CONFIG

    base = {"private_root": tmp_path / "private", "data_root": tmp_path / "data", "home_root": tmp_path / "homes"}
    settings = HubSettings.load({**base, **values}, environ={})
    for key, value in settings.to_env().items():
        monkeypatch.setenv(key, value)
    return settings, PyFileConfigLoader(CONFIG.name, path=str(CONFIG.parent)).load_config()


def test_config_demo_mode(monkeypatch, tmp_path, capsys):
    from hub.accounts import LocalAccountsAuthenticator
    from hub.sandboxes import DemoSpawner

    settings, c = load_hub_config(monkeypatch, tmp_path, cpu_limit=3, mem_limit="8G")
    assert "contestants are NOT isolated" in capsys.readouterr().err
    assert c.JupyterHub.spawner_class is DemoSpawner
    assert c.DemoSpawner.home_dir_template == str(settings.home_root / "{username}")
    assert c.JupyterHub.authenticator_class is LocalAccountsAuthenticator
    assert c.LocalAccountsAuthenticator.db_url == c.JupyterHub.db_url == settings.db_url
    assert c.JupyterHub.load_groups == {"organizers": {"users": ["organizer"]}, "jurors": {"users": []}}
    assert {"name": "admin", "groups": ["organizers"]} in c.JupyterHub.load_roles
    assert c.Spawner.default_url == "/lab"
    assert c.Spawner.cpu_limit == 3.0 and c.Spawner.mem_limit == 8 * 2**30
    env = c.Spawner.environment
    assert env["CONTESTHUB_DATA_ROOT"] == str(settings.data_root)
    assert env["CONTESTHUB_THREADS"] == "3" and env["CONTESTHUB_MEMORY_LIMIT"] == "4096M"
    assert "CONTESTHUB_PRIVATE_ROOT" not in env
    assert "access:services!service=submit" in c.Spawner.server_token_scopes
    assert {"users:activity!user", "access:servers!server"} <= set(c.Spawner.server_token_scopes)
    assert any(s["name"] == "idle-culler" for s in c.JupyterHub.services)
    runtime = settings.runtime_dir
    assert c.JupyterHub.cookie_secret_file == str(runtime / "jupyterhub_cookie_secret")
    assert c.ConfigurableHTTPProxy.auth_token == (runtime / "proxy_auth_token").read_text().strip()
    assert c.ConfigurableHTTPProxy.api_url == f"http://127.0.0.1:{settings.proxy_api_port}"
    assert c.JupyterHub.bind_url == settings.public_url


def test_config_open_login_warns_and_has_no_organizer(monkeypatch, tmp_path, capsys):
    _, c = load_hub_config(monkeypatch, tmp_path, demo_open_login=True)
    assert "OPEN LOGIN" in capsys.readouterr().err
    assert c.JupyterHub.authenticator_class == "dummy"
    assert "load_groups" not in c.JupyterHub


def test_config_cluster_mode_needs_kubespawner(monkeypatch, tmp_path):
    try:
        import kubespawner  # noqa: F401
    except ImportError:
        with pytest.raises(SettingsError, match="kubespawner"):
            load_hub_config(monkeypatch, tmp_path, mode="cluster")
    else:
        _, c = load_hub_config(monkeypatch, tmp_path, mode="cluster")
        assert c.JupyterHub.spawner_class == "kubespawner.KubeSpawner"


def test_services_setting(tmp_path):
    base = {"private_root": tmp_path / "p", "data_root": tmp_path / "d"}

    def names(value: str) -> list[str]:
        return [x["name"] for x in hub_services(HubSettings.load({**base, "services": value}, environ={}))[0]]

    assert names("none") == ["idle-culler"]
    assert names("submit") == ["submit", "scorer", "idle-culler"]
    assert names("leaderboard, submit") == ["submit", "scorer", "leaderboard", "idle-culler"]
    sized = HubSettings.load({**base, "scorers": 3, "scorer_memory": "1G"}, environ={})
    pool = next(x for x in hub_services(sized)[0] if x["name"] == "scorer")
    assert pool["command"][-2:] == ["--workers", "3"] and pool["environment"]["CONTESTHUB_SCORER_MEMORY"] == "1G"
    assert HubSettings.load({**base, "services": "auto"}, environ={}).service_names is None
    with pytest.raises(SettingsError, match="unknown chat"):
        HubSettings.load({**base, "services": "submit,chat"}, environ={})
