"""The public leaderboard and open-data catalog (Streamlit), bilingual, read-only.

Run it alone::

    streamlit run leaderboard/app.py

or as the hub's public service at ``/services/leaderboard/`` (``hub/services.py`` passes
``--server.baseUrlPath /services/leaderboard/``; the websocket and static files follow the
base path). Configuration comes from the environment: the data and private roots from
``sandbox.settings.Paths.from_env()``, the contest from ``CONTESTHUB_CONTEST`` (else
``config/contest.toml``), the store from ``CONTESTHUB_DB_URL`` (else the SQLite file under
the private root), the default language from ``CONTESTHUB_LANG`` (else Chinese; the sidebar
switches, ``?lang=en`` links to English).

This file is two things at once:

* run as a script (``__name__ == "__main__"``: Streamlit's script runner and ``AppTest``),
  it builds the navigation: contest home, leaderboard, teams, data catalog, and, for
  organizers only, the organizer page (pages in ``leaderboard/views/``);
* imported as a module (``streamlit run`` finds the ``st.App`` below and serves it), it is
  the ASGI app: Streamlit plus the three OAuth routes of :mod:`leaderboard.views.hub_auth`
  that let the hub tell the app who an organizer is.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from leaderboard.views import hub_auth

# Not "pages/": Streamlit would also treat a pages/ folder next to the entry script as the
# old-style page list, and its widgets in the sidebar would vanish on every rerun.
PAGES = Path(__file__).resolve().parent / "views"
LANG_NAMES = {"zh": "中文", "en": "English"}


def main() -> None:
    # Imported here, not at the top: the ASGI side (below) needs only the OAuth routes, and
    # the query layer's caches should be created inside Streamlit's runtime.
    from leaderboard import queries
    from leaderboard.views import common

    t = common.t
    try:
        title = queries.contest(common.source()).title[common.lang()]
    except Exception:  # a broken contest file is reported by the page that needs it
        title = t("app_title")
    st.set_page_config(page_title=title, page_icon=":material/leaderboard:", layout="wide")
    st.sidebar.radio(
        t("language"),
        common.LANGS,
        index=common.LANGS.index(common.lang()),
        format_func=LANG_NAMES.__getitem__,
        key=common.LANG_WIDGET,
        on_change=common.remember_lang,
        horizontal=True,
    )
    user = hub_auth.identity()
    pages = [
        st.Page(PAGES / "home.py", title=t("page_home"), icon=":material/home:", url_path="home", default=True),
        st.Page(PAGES / "board.py", title=t("page_board"), icon=":material/leaderboard:", url_path="leaderboard"),
        st.Page(PAGES / "team.py", title=t("page_team"), icon=":material/groups:", url_path="team"),
        st.Page(PAGES / "catalog.py", title=t("page_catalog"), icon=":material/dataset:", url_path="catalog"),
        st.Page(PAGES / "access.py", title=t("page_access"), icon=":material/lock_open:", url_path="conditional"),
        st.Page(PAGES / "reports.py", title=t("page_reports"), icon=":material/feedback:", url_path="reports"),
        st.Page(PAGES / "lists.py", title=t("page_lists"), icon=":material/checklist:", url_path="lists"),
    ]
    try:
        track = queries.contest(common.source()).application_track
    except Exception:  # a broken contest file is reported by the page that needs it
        track = None
    if track is not None:
        pages.append(st.Page(PAGES / "finalists.py", title=t("page_finalists"), icon=":material/emoji_events:"))
    if hub_auth.is_organizer(user):
        # Registered per session: for everybody else the page does not exist at all.
        pages.append(
            st.Page(
                PAGES / "organizer.py",
                title=t("page_organizer"),
                icon=":material/admin_panel_settings:",
                url_path=hub_auth.ORGANIZER_PAGE,
            )
        )
    page = st.navigation(pages)
    _account(user)
    page.run()


def _account(user: dict | None) -> None:
    from leaderboard.views import common

    t = common.t
    if user:
        role = t("role_organizer") if hub_auth.is_organizer(user) else t("role_visitor")
        st.sidebar.caption(t("signed_in_as", name=common.md(user.get("name", "?")), role=role))
        if hub_auth.under_hub():
            st.sidebar.link_button(t("sign_out"), hub_auth.prefix() + hub_auth.LOGOUT)
    elif hub_auth.under_hub():
        st.sidebar.link_button(t("organizer_sign_in"), hub_auth.prefix() + hub_auth.LOGIN)


if __name__ == "__main__":
    main()
else:
    app = st.App(__file__, routes=hub_auth.routes())
