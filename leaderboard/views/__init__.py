"""The leaderboard app's pages (``home``, ``board``, ``team``, ``catalog``, ``organizer``) and
what they share (``common``: language, formatting, escaping, the test seams; ``hub_auth``: who
the visitor is when the app runs behind JupyterHub).

Each page file is a Streamlit script that ``leaderboard/app.py`` registers with
``st.navigation``; the helper modules are imported, never run as pages.
"""
