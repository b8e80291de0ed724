"""JupyterLab as a contestant first meets it: the contest rules and data licences to accept
once (hub/rules.py), then Chinese menus, the getting-started notebook open, no "Jupyter news"
prompt (hub/lab_settings.py, sandbox/lab/overrides.json).

The settings file is checked against JupyterLab's own schemas; the browser test logs in to a
real hub (tests/hub_fixtures.py) with headless Chromium and keeps a screenshot in
``var/test-artifacts/hub-jupyterlab-zh.png``.
"""

from __future__ import annotations

import json
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import jsonschema
from hub_fixtures import ARTIFACTS, accept_rules, chromium_page

from hub import lab_settings

SCHEMAS = Path(sys.prefix) / "share" / "jupyter" / "lab" / "schemas"


def test_the_overrides_are_valid_jupyterlab_settings_and_the_chinese_pack_is_installed():
    overrides = json.loads((lab_settings.settings_dir() / "overrides.json").read_text("utf-8"))
    for plugin, values in overrides.items():
        package, name = plugin.rsplit(":", 1)
        schema = json.loads((SCHEMAS / package / f"{name}.json").read_text("utf-8"))
        for key, value in values.items():
            assert key in schema["properties"], (plugin, key)
            jsonschema.validate(value, schema["properties"][key])
    assert overrides["@jupyterlab/translation-extension:plugin"]["locale"] == "zh_CN"
    assert overrides["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    packs = {e.name for e in entry_points(group="jupyterlab.languagepack")}
    assert "zh_CN" in packs, packs
    assert lab_settings.spawner_args() == [f"--LabApp.app_settings_dir={lab_settings.settings_dir()}"]


def test_only_the_start_that_hands_out_the_getting_started_notebook_opens_it():
    assert lab_settings.default_url(["getting_started.ipynb", "emergency_visit.ipynb"]) == (
        "/lab/tree/getting_started.ipynb"
    )
    assert lab_settings.default_url([]) == "/lab"  # later starts: the contestant's own layout
    assert lab_settings.default_url(["claims_forecast.ipynb"]) == "/lab"  # a starter added later


def test_first_login_shows_jupyterlab_in_chinese_on_the_getting_started_notebook(hub):
    name, password, _ = hub.account()
    with chromium_page() as page:
        page.goto(f"{hub.url}/hub/login")
        page.fill("#username_input", name)
        page.fill("#password_input", password)
        page.click("#login_submit")
        rules = accept_rules(page)
        assert "比赛规则和数据许可" in rules and "contest rules and data licences" in rules
        assert "Creative Commons Attribution 4.0" in rules  # the demo datasets' licence
        page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
        page.wait_for_selector(".jp-NotebookPanel .jp-RenderedMarkdown h1", timeout=60_000)  # its title, rendered
        assert page.url.endswith(f"/user/{name}/lab/tree/getting_started.ipynb"), page.url
        menus = page.locator("#jp-menu-panel .lm-MenuBar-itemLabel").all_inner_texts()
        assert {"文件", "编辑", "运行", "内核", "设置", "帮助"} <= set(menus), menus
        assert not {"File", "Edit", "Kernel", "Help"} & set(menus), menus
        assert page.locator(".jp-Launcher").count() == 0  # the notebook, not the launcher
        page.locator(".lm-MenuBar-itemLabel", has_text="设置").click()
        page.wait_for_selector(".lm-Menu-itemLabel >> text=语言", timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "hub-jupyterlab-zh.png"))
        page.keyboard.press("Escape")
        # JupyterLab asks about news a few seconds after it starts, unless told not to.
        page.wait_for_timeout(5_000)
        text = page.locator("body").inner_text()
        assert "Jupyter news" not in text and "新闻" not in text


def test_the_rules_are_accepted_once_and_the_api_cannot_skip_them(hub):
    name, _, session = hub.account()
    token = hub.new_token(name, session=session)
    refused = hub.api("POST", f"/users/{name}/server", token=token)
    assert refused.status_code == 403, refused.text
    message = refused.json()["message"]
    assert "请先在 /hub/spawn 阅读并接受比赛规则和数据许可" in message and "accept the contest rules" in message
    assert not hub.api("GET", f"/users/{name}", token=token).json().get("servers")
    page = session.get(f"{hub.url}/hub/spawn/{name}", timeout=30)
    assert 'id="contesthub-rules"' in page.text and 'name="accept_rules"' in page.text

    hub.spawn(name, token)  # accepts through the API: recorded
    assert hub.api("DELETE", f"/users/{name}/server", token=token).status_code in (202, 204)
    for _ in range(120):
        if not hub.api("GET", f"/users/{name}", token=token).json().get("servers"):
            break
        time.sleep(0.5)
    again = hub.api("POST", f"/users/{name}/server", token=token)  # no form, no acceptance asked again
    assert again.status_code in (201, 202), again.text
    page = session.get(f"{hub.url}/hub/spawn/{name}", timeout=30)
    assert 'id="contesthub-rules"' not in page.text
    hub.api("DELETE", f"/users/{name}/server", token=token)


def test_the_hub_has_a_jurors_group_for_the_application_track(hub):
    r = hub.api("GET", "/groups/jurors", session=hub.organizer_session())
    assert r.status_code == 200 and r.json()["name"] == "jurors", r.text
