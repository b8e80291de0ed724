"""Who is looking: the JupyterHub user behind a browser, through the hub's OAuth.

The leaderboard is a public JupyterHub service: the proxy forwards anyone, and most pages
need no login. Only the organizer page needs to know who the visitor is; it is shown to
JupyterHub **admins** (the organizers). The hub identifies a user to a service with OAuth
(``jupyterhub.services.auth.HubOAuth``); Streamlit's script cannot answer HTTP requests
itself, so :func:`routes` adds three small Starlette routes to the app's server
(``st.App(..., routes=...)`` in ``leaderboard/app.py``), under the service prefix:

``oauth_login``     remembers a random state (cookie + server side, with a PKCE verifier) and
                    sends the browser to the hub's ``/hub/api/oauth2/authorize``;
``oauth_callback``  (``JUPYTERHUB_OAUTH_CALLBACK_URL``) checks the state, exchanges the code
                    for a token (``HubOAuth.token_for_code``) and keeps the token in an
                    HttpOnly, SameSite=Strict cookie named like HubOAuth's (the OAuth client
                    id), limited to the service's path;
``oauth_logout``    forgets it.

On every script run, :func:`identity` reads that cookie from ``st.context.cookies`` (the
cookies of the request that opened the page's websocket; Streamlit refuses websockets from
other origins) and asks the hub who owns the token (``HubOAuth.user_for_token``, cached by
HubOAuth for a minute). The answer includes ``admin``. When the app does not run under the
hub (no ``JUPYTERHUB_API_TOKEN``), nobody is an organizer.

Why not a cookie the hub sets: the shared ``jupyterhub-services`` cookie went away with
JupyterHub 2.0; since then every service runs its own OAuth and keeps its own cookie, which
is what this module does for a Streamlit app. Organizers must hold ``access:services`` (the
hub's admin role has it); a plain user who tries to sign in is refused by the hub and stays
a visitor.

Test seam: ``st.session_state[IDENTITY_KEY]`` (a user model such as ``{"name": "org",
"admin": True}``) is used instead of the cookie. No widget has that key, so only code in
the app's process (``AppTest``) can set it.
"""

from __future__ import annotations

import hmac
import logging
import os
from functools import cache
from urllib.parse import urlencode

import streamlit as st

from leaderboard import roles

log = logging.getLogger("contesthub.leaderboard")

IDENTITY_KEY = "_contesthub_identity"
LOGIN, CALLBACK, LOGOUT = "oauth_login", "oauth_callback", "oauth_logout"
ORGANIZER_PAGE = "organizer"


def under_hub() -> bool:
    """True when JupyterHub started the app as a service (it sets these variables)."""
    return bool(os.environ.get("JUPYTERHUB_API_TOKEN") and os.environ.get("JUPYTERHUB_CLIENT_ID"))


@cache
def oauth():
    """The service's HubOAuth client, configured from the JUPYTERHUB_* variables."""
    from jupyterhub.services.auth import HubOAuth

    return HubOAuth(cache_max_age=60)


def prefix() -> str:
    """The service's URL prefix (``/services/leaderboard/``), ending with a slash."""
    value = os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "/"
    return value if value.endswith("/") else value + "/"


is_organizer = roles.is_organizer  # admins and the organizers' group, the rule every service applies


def identity() -> dict | None:
    """The visitor's JupyterHub user model (``name``, ``admin``, ``groups``), or None."""
    seam = st.session_state.get(IDENTITY_KEY)
    if isinstance(seam, dict):
        return seam
    if not under_hub():
        return None
    return user_for_cookies(st.context.cookies)


def user_for_cookies(cookies) -> dict | None:
    auth = oauth()
    token = cookies.get(auth.cookie_name)
    if not token:
        return None
    try:
        return auth.user_for_token(token, sync=True)
    except Exception as exc:  # the hub is down or the token expired: treat as not signed in
        log.warning("could not identify a visitor with the hub: %s", exc)
        return None


# --- the OAuth routes (served by the app's Starlette server) ------------------------------


def _cookie_args(request, samesite: str) -> dict:
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    public = os.environ.get("JUPYTERHUB_PUBLIC_URL", "")
    return {"path": prefix(), "httponly": True, "samesite": samesite, "secure": secure or public.startswith("https")}


async def _login(request):
    from starlette.responses import PlainTextResponse, RedirectResponse

    if not under_hub():
        return PlainTextResponse("this leaderboard does not run behind JupyterHub: no sign-in here", status_code=404)
    auth = oauth()
    verifier, challenge, method = auth.generate_pkce_code_challenge()
    state = auth.generate_state(next_url=prefix() + ORGANIZER_PAGE, code_verifier=verifier)
    query = {"state": state, "code_challenge": challenge, "code_challenge_method": method}
    response = RedirectResponse(f"{auth.login_url}&{urlencode(query)}", status_code=302)
    # Lax, not Strict: when the hub's login goes through an outside identity provider, the
    # redirect back to the callback counts as cross-site, and a Strict cookie would be withheld.
    response.set_cookie(auth.state_cookie_name, state, max_age=600, **_cookie_args(request, "lax"))
    return response


async def _callback(request):
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import PlainTextResponse, RedirectResponse

    if not under_hub():
        return PlainTextResponse("this leaderboard does not run behind JupyterHub", status_code=404)
    auth = oauth()
    code, state = request.query_params.get("code"), request.query_params.get("state", "")
    remembered = request.cookies.get(auth.state_cookie_name, "")
    # The state must be the one this browser was given (cookie) and one this process issued
    # (every state issued here carries a PKCE verifier; an unknown state has none).
    verifier = auth.get_code_verifier(state) if state else None
    if not code or not verifier or not hmac.compare_digest(state, remembered):
        return PlainTextResponse("OAuth state mismatch: start the sign-in again", status_code=400)
    next_url = auth.get_next_url(state)
    auth.clear_oauth_state(state)
    try:
        token = await run_in_threadpool(auth.token_for_code, code, code_verifier=verifier)
    except Exception as exc:
        log.warning("the hub refused the OAuth code: %s", exc)
        return PlainTextResponse("the hub did not accept the sign-in; start it again", status_code=400)
    if not next_url.startswith(prefix()):
        next_url = prefix()
    response = RedirectResponse(next_url, status_code=302)
    response.delete_cookie(auth.state_cookie_name, path=prefix())
    # Strict: only the app's own page (its websocket) ever needs to send it.
    response.set_cookie(auth.cookie_name, token, **_cookie_args(request, "strict"))
    return response


async def _logout(request):
    from starlette.responses import RedirectResponse

    response = RedirectResponse(prefix(), status_code=302)
    if under_hub():
        response.delete_cookie(oauth().cookie_name, path=prefix())
    return response


def routes() -> list:
    """Starlette routes for sign-in; they match under any prefix (the hub's or none)."""
    from starlette.routing import Route

    out = []
    for name, endpoint in ((LOGIN, _login), (CALLBACK, _callback), (LOGOUT, _logout)):
        out += [Route(f"/{name}", endpoint), Route(f"/{{prefix:path}}/{name}", endpoint)]
    return out
