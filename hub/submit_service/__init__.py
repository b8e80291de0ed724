"""The submission service: the contest engine over HTTP, as a JupyterHub-managed service.

It runs at ``/services/submit/`` behind the hub's proxy. Every request carries a JupyterHub
token (``Authorization: token ...``); jupyterhub's own :class:`HubAuth` identifies it, and
only tokens of *users* that hold ``access:services!service=submit`` get in (a notebook's
token has it through ``c.Spawner.server_token_scopes``). The caller's team is their team in
the contest store. With local accounts the store is the only source (hub groups only mirror
it, see hub/groups.py); where an identity provider owns the groups
(``CONTESTHUB_TEAMS_FROM_GROUPS=1``, OAuth mode), a user it put in a group named
``team-<name>`` (see ``CONTESTHUB_TEAM_GROUP_PREFIX``) joins that team on first contact,
unless an organizer removed them from it. Organizers are the hub's admins and the members of
the ``organizers`` group (which the hub's config also makes admins; leaderboard/roles.py).

Before a byte of an upload is stored, a read checks that the team may upload now (the
challenge is open, its quota, upload rate and storage leave room); the body is then streamed
to disk as it arrives (never held in memory) with the contest's size limit, and charged,
recorded and kept in one transaction. Nothing is scored here: the submission waits in the
store for the scorer pool (hub/scorer.py, other processes, on other machines in a cluster)
and the client asks for it, holding its request open until it is finished (``?wait=``, a long
poll) or again and again. A poll of a submission still pending is answered from memory: one
read every quarter of a second brings the status of every pending submission the service
knows of up to date (:class:`PendingWatch`), instead of one read per poll; the leaderboard
JSON is computed at most once a second per challenge. Uploads waiting for the write lock are
accepted together, in one transaction (``submissions.accept_many``). No database work runs on the event
loop: handlers hand it to bounded thread pools, one for reads (read-only transactions, which
on SQLite never wait for the write lock), one for the polls' refresh and one for writes. The
OpenAPI description is served at
``api/openapi.json``. No response ever carries a private score or rank before the reveal,
and no contestant ever sees a traceback: errors are ``{"code", "message", "message_en",
"message_zh"}``.

The package is laid out like JupyterHub's ``apihandlers/``: ``context`` (the shared state),
``base`` (identity, JSON, errors), ``contestants``, ``upload``, ``organizers`` (each ending with
its ``default_handlers``), ``app`` (the routes and ``main``).
"""

from hub.submit_service.app import die_with_the_hub, main, make_app
from hub.submit_service.base import Base, Refusal, allowed_methods, http_status, is_int, row_id, text_field
from hub.submit_service.context import BOARD_TTL, WATCH_EVERY, Context, PendingWatch

__all__ = [
    "BOARD_TTL",
    "WATCH_EVERY",
    "Base",
    "Context",
    "PendingWatch",
    "Refusal",
    "allowed_methods",
    "die_with_the_hub",
    "http_status",
    "is_int",
    "main",
    "make_app",
    "row_id",
    "text_field",
]
