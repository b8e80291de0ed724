"""What every page shares: the language, the clock, formatting and escaping.

Escaping: team names, user names and file names are free text that anyone can choose (a
team may call itself ``<img src=x onerror=alert(1)>``). Pages show them with
``st.dataframe`` / ``st.text`` (which never interpret markup) or pass them through
:func:`md` before they go into any Markdown; nothing in the app uses ``unsafe_allow_html``.

Test seams: the pages read the time from ``sandbox.clock``, which a test pins in-process
(``AppTest`` runs the pages in the test's process); :data:`hub_auth.IDENTITY_KEY`, a
``st.session_state`` key no widget uses, gives a visitor an identity without the hub's OAuth.
A browser can set neither.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import re

import pandas as pd
import streamlit as st

from leaderboard import i18n, queries
from leaderboard.contest import Challenge, Contest
from sandbox import clock

# The chosen language lives under a plain key (kept across pages); the sidebar's widget has
# its own key and copies its value here when it changes.
LANG_KEY = "lang"
LANG_WIDGET = "lang_choice"
LANGS = ("zh", "en")

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$:])")


def lang() -> str:
    value = st.session_state.get(LANG_KEY)
    return value if value in LANGS else default_lang()


def default_lang() -> str:
    """``?lang=en`` in the address, else ``CONTESTHUB_LANG``, else Chinese."""
    asked = st.query_params.get("lang")
    if asked in LANGS:
        return asked
    return queries.environment_lang() or "zh"


def t(key: str, **values) -> str:
    return i18n.t(key, lang(), **values)


def translator():
    """``t`` bound to this run's language, for ``format_func`` callbacks that run later."""
    current = lang()
    return lambda key, **values: i18n.t(key, current, **values)


def remember_lang() -> None:
    st.session_state[LANG_KEY] = st.session_state[LANG_WIDGET]


def pinned_now() -> dt.datetime | None:
    """The moment a test pinned (``None`` in production: the queries read the clock themselves)."""
    return clock.pinned_moment()


def now() -> dt.datetime:
    return clock.now()


def data_service_url() -> str:
    """The public data service (hub/data_service.py) under the hub's public URL; relative when unknown."""
    return os.environ.get("CONTESTHUB_PUBLIC_URL", "").rstrip("/") + "/services/data/"


def source() -> queries.Source:
    return queries.Source.from_env()


def md(text: object) -> str:
    """Free text made safe for Markdown: shown literally, never as markup or a link.

    Markdown punctuation is backslash-escaped and ``< > & " '`` become entities, so
    ``<img src=x onerror=alert(1)>`` is displayed as those characters.
    """
    return html.escape(_MD_SPECIAL.sub(r"\\\1", str(text)), quote=True)


def local(moment: dt.datetime | pd.Timestamp | None, contest: Contest, with_seconds: bool = False) -> str:
    """A moment in the contest's time zone, e.g. ``2026-12-01 10:00``."""
    if moment is None or moment is pd.NaT or (isinstance(moment, float) and moment != moment):
        return ""
    if isinstance(moment, pd.Timestamp):
        moment = moment.to_pydatetime()
    return moment.astimezone(contest.timezone).strftime("%Y-%m-%d %H:%M:%S" if with_seconds else "%Y-%m-%d %H:%M")


def decimals(ch: Challenge) -> int:
    """Digits a score is shown with: errors in the target's units get 4, rates and probabilities 5."""
    return 4 if ch.scorer.input == "value" and not ch.higher_is_better else 5


def score_text(value: float | None, ch: Challenge) -> str:
    if value is None or value != value:
        return ""
    return f"{value:.{decimals(ch)}f}"


def movement_text(value) -> str:
    """▲ climbed, ▼ fell, = held its place, a word for a team new on the board."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return t("movement_new")
    value = int(value)
    if value > 0:
        return f"▲{value}"
    if value < 0:
        return f"▼{-value}"
    return "="


def challenge_title(ch: Challenge) -> str:
    return ch.title.get(lang()) or ch.title["en"]


def metric_text(ch: Challenge) -> str:
    direction = t("higher_better") if ch.higher_is_better else t("lower_better")
    return f"{ch.scorer.title[lang()]} ({ch.metric}, {direction})"


def duration_text(delta: dt.timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    return t("duration", days=days, hours=hours, minutes=minutes)


def store_unavailable(exc: Exception) -> None:
    st.info(t("store_unavailable"))


def clamp_page(key: str, pages: int) -> None:
    """Keep a pagination widget's page within range after a search shrank the list."""
    if st.session_state.get(key, 1) > pages:
        st.session_state[key] = 1
