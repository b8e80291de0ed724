"""The one rule for a user name, wherever an account is made or used.

A name must be safe as a JupyterHub name, as a Unix account (``jupyter-<name>`` in the secure
mode, within useradd's 32 characters) and as a Kubernetes label, so it is 1 to 31 lowercase
letters, digits, ``.``, ``_`` or ``-``, starting with a letter or digit. Sign-up, the login
form (``c.Authenticator.username_pattern``) and the roster import all use this rule: a roster
that accepted longer names would create accounts that can never log in.
"""

from __future__ import annotations

import re

MAX_LENGTH = 31
USERNAME_PATTERN = rf"^[a-z0-9][a-z0-9_.-]{{0,{MAX_LENGTH - 1}}}$"
_NAME = re.compile(USERNAME_PATTERN)
# What to tell someone whose name breaks the rule (en, zh).
RULE_EN = (
    f"Choose a name of 1 to {MAX_LENGTH} lowercase letters, digits, '.', '_' or '-', starting with a letter or digit."
)
RULE_ZH = f"用户名须为 1–{MAX_LENGTH} 个小写字母、数字、“.”、“_”或“-”，并以字母或数字开头。"


def valid_username(name: str) -> bool:
    """True when ``name`` follows the rule (already lowercase: normalise before asking)."""
    return bool(_NAME.fullmatch(name))
