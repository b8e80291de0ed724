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
