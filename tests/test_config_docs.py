"""Every setting and every configurable trait says what it does (Datasette's habit).

A hub setting (``HubSettings``, read from config/hub.toml, ``CONTESTHUB_<KEY>`` and the flags
of ``contesthub up``) must have its row in hub/settings.py's table and its entry in
config/hub.toml, the file an operator edits; a trait that the project's traitlets classes
(authenticators, spawner, dask-gateway backend) expose to ``c.<Class>.<trait>`` must have
``help=``, which ``jupyterhub --help-all`` prints.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re

import pytest
from traitlets import HasTraits

from hub import settings as settings_mod
from hub.settings import HubSettings
from sandbox.settings import PROJECT_ROOT

HUB_TOML = (PROJECT_ROOT / "config" / "hub.toml").read_text("utf-8")
# The modules whose traitlets classes config/jupyterhub_config.py and the Z2JH values configure.
CONFIGURABLE_MODULES = ("hub.accounts", "hub.oauth", "hub.sandboxes", "hub.gateway_backend")


def test_every_hub_setting_has_its_row_and_its_entry_in_hub_toml():
    table = settings_mod.__doc__
    missing_row = [f.name for f in dataclasses.fields(HubSettings) if f"``{f.name}``" not in table]
    missing_toml = [
        f.name
        for f in dataclasses.fields(HubSettings)  # a key, set or commented out, or a [table.name] of it
        if not re.search(rf"^#?\s*({f.name}\s*=|\[{f.name}\.)", HUB_TOML, re.M)
    ]
    assert missing_row == [], f"settings without a row in hub/settings.py's table: {missing_row}"
    assert missing_toml == [], f"settings without an entry in config/hub.toml: {missing_toml}"


def _our_configurables():
    for name in CONFIGURABLE_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # dask_gateway_server is optional
            pytest.skip(f"{name} does not import here: {exc}")
        for cls in vars(module).values():
            if inspect.isclass(cls) and issubclass(cls, HasTraits) and cls.__module__ == name:
                yield cls


def test_every_trait_of_ours_has_help():
    undocumented = []
    for cls in _our_configurables():
        own = {n: t for n, t in cls.class_traits(config=True).items() if n in vars(cls)}
        undocumented += [f"{cls.__name__}.{n}" for n, t in own.items() if not (t.help or "").strip()]
    assert undocumented == [], f"traits without help=: {undocumented}"


def test_a_service_reads_what_the_hub_gives_it_and_every_variable_is_documented(tmp_path):
    """hub/services.py writes a service's environment, leaderboard/service_env.py reads it: the
    submission service started by this hub listens on its port, under its prefix, over the hub's
    roots; every variable handed over is a row of the contract's table."""
    from hub.services import CLOCK_VARIABLES, PASSED_ON, hub_services
    from leaderboard import service_env

    settings = HubSettings.load(
        {"data_root": tmp_path / "d", "private_root": tmp_path / "p", "submit_port": 18123, "auth": "oidc"},
        environ={"CONTESTHUB_HOME": str(tmp_path)},
    )
    services, _ = hub_services(settings, include_submit=True, include_leaderboard=True, include_gateway=False)
    submit = next(s for s in services if s["name"] == "submit")
    env = {
        **submit["environment"],
        "JUPYTERHUB_SERVICE_URL": submit["url"],
        "JUPYTERHUB_SERVICE_PREFIX": "/services/submit/",
    }
    got = service_env.ServiceEnv.from_environ(env, name="submit")
    assert (got.paths.data_root, got.paths.private_root) == (settings.data_root, settings.private_root)
    assert (got.listen_host, got.listen_port, got.prefix) == ("127.0.0.1", 18123, "/services/submit/")
    assert got.teams_from_groups  # an identity provider owns the groups in oidc mode
    assert (got.team_group_prefix, got.organizer_group) == ("team-", "organizers")

    table = service_env.__doc__
    handed = {k for s in services for k in s.get("environment", {})} | set(PASSED_ON)
    undocumented = sorted(k for k in handed - set(CLOCK_VARIABLES) if f"``{k}``" not in table)
    assert undocumented == [], (
        f"variables a service gets that leaderboard/service_env.py does not describe: {undocumented}"
    )
