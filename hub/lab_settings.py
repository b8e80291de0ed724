"""JupyterLab as a contestant first meets it: in Chinese, on the getting-started notebook.

* **Chinese by default.** The zh-CN language pack (``jupyterlab-language-pack-zh-CN``) is
  installed, and ``sandbox/lab/overrides.json`` makes ``zh_CN`` JupyterLab's default locale;
  English stays one click away (设置 → 语言 → English), and a contestant's own choice wins
  over the default. The same file turns off the "Jupyter news" prompt and the update check:
  a sandbox has no business fetching news from the internet.
* **The overrides reach every server** through ``--LabApp.app_settings_dir`` on the
  single-user command line (:func:`spawner_args`), pointing at ``sandbox/lab``: the sandbox
  package is what every contestant's interpreter imports anyway, so the folder is readable
  by their accounts in secure mode too, and nothing is written into a virtualenv.
  (Zero to JupyterHub: copy the file to ``/usr/local/share/jupyter/lab/settings/`` in the
  image instead.)
* **The first login opens the getting-started notebook** instead of the launcher: the start
  that hands the notebook out (the home's first) sends the browser to
  ``/lab/tree/getting_started.ipynb`` (:func:`default_url`); later starts go to ``/lab``,
  where JupyterLab restores the contestant's own layout.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

GETTING_STARTED = "getting_started.ipynb"
LAB = "/lab"
FIRST = f"/lab/tree/{GETTING_STARTED}"


def settings_dir() -> Path:
    """``sandbox/lab``: JupyterLab's application settings folder for contestants' servers."""
    spec = importlib.util.find_spec("sandbox")
    if spec is None or spec.origin is None:
        raise RuntimeError("the sandbox package is not importable: no JupyterLab settings")
    return Path(spec.origin).resolve().parent / "lab"


def spawner_args() -> list[str]:
    """Arguments of ``jupyterhub.singleuser`` that apply ``sandbox/lab/overrides.json``."""
    return [f"--LabApp.app_settings_dir={settings_dir()}"]


def default_url(copied: list[str]) -> str:
    """Where the browser lands after this start: the getting-started notebook when this start
    handed it out (the first), else JupyterLab with the contestant's own layout."""
    return FIRST if GETTING_STARTED in copied else LAB
