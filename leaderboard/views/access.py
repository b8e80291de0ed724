"""Conditional data (有条件开放): what can be applied for and how much it is used, for
everyone; the requests, the decisions and the access log, for organizers and for the
publishing body's reviewers (the hub group a descriptor names in ``access.reviewers``).

The public sees counts only (teams approved now, server starts, queries): never a team's
name, a purpose or a user. A decision is the one thing this app writes to the store, through
``leaderboard.access`` (with its audit entry), and only for a signed-in organizer or reviewer;
where the app's database role is read-only (the cluster manifests), the page says to decide
with ``contesthub access`` instead.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from leaderboard import access, queries
from leaderboard.views import common, hub_auth
from leaderboard.views.common import t
from sandbox import catalog
from sandbox.settings import Paths


@st.cache_resource(show_spinner=False)
def _writer(db_url: str, data_root: str, private_root: str, datasets_dir: str):
    from leaderboard import store

    return store.connect(Paths(Path(data_root), Path(private_root), Path(datasets_dir)), db_url)


def _state(state: str) -> str:
    return {
        "pending": t("access_state_pending"),
        "approved": t("access_state_approved"),
        "rejected": t("access_state_rejected"),
        "revoked": t("access_state_revoked"),
        "expired": t("access_state_expired"),
    }.get(state, state)


def _kind(kind: str) -> str:
    return {
        "grant": t("access_kind_grant"),
        "server-start": t("access_kind_server_start"),
        "query": t("access_kind_query"),
    }.get(kind, kind)


def _public(listed: dict, counts: dict, lang: str) -> None:
    rows = []
    for ds_id, d in listed.items():
        e = d["entry"]
        c = counts.get(ds_id, {})
        rows.append(
            {
                t("col_dataset"): f"{e['title'][lang]} ({ds_id})",
                t("col_rows"): sum(tb["rows"] for tb in e["tables"].values()),
                t("col_teams_approved"): c.get("teams_approved", 0),
                t("col_server_starts"): c.get("server-start", 0),
                t("col_queries"): c.get("query", 0),
            }
        )
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.caption(t("access_how_to_apply"))
    for ds_id, d in listed.items():
        agreement = (d["entry"].get("access") or {}).get("agreement")
        if agreement:
            with st.expander(t("access_agreement", dataset=ds_id, version=agreement["version"])):
                st.text(agreement["text"][lang])


def _not_open(entries: dict, lang: str) -> None:
    """The sharing list's 不予开放 datasets: what they are and why they are not open."""
    if not entries:
        return
    st.subheader(t("access_not_open"))
    st.dataframe(
        pd.DataFrame(
            {
                t("col_dataset"): [f"{e['title'][lang]} ({ds_id})" for ds_id, e in entries.items()],
                t("col_publisher"): [e["publisher"][lang] for e in entries.values()],
                t("col_reason"): [(e.get("reason") or {}).get(lang, "") for e in entries.values()],
            }
        ),
        hide_index=True,
    )


def _decide(src, ds_id: str, requests: list[dict], who: str) -> None:
    from hub import conditional_acl
    from sandbox.descriptor import load_all

    pending = [r["id"] for r in requests if r["state"] == "pending"]
    approved = [r["id"] for r in requests if r["state"] == "approved"]
    writer = None
    try:
        if pending:
            with st.form(f"approve-{ds_id}"):
                rid = st.selectbox(t("col_request"), pending, key=f"pending-{ds_id}")
                days = st.number_input(t("access_days"), min_value=1, max_value=3660, value=90, key=f"days-{ds_id}")
                reason = st.text_input(t("access_reason"), max_chars=access.MAX_REASON, key=f"why-{ds_id}")
                approve = st.form_submit_button(t("access_approve"))
                reject = st.form_submit_button(t("access_reject"))
            if approve or reject:
                writer = _writer(src.db_url, src.data_root, src.private_root, src.datasets_dir)
                with writer.session() as s:
                    if approve:
                        ds = load_all(Path(src.datasets_dir), [ds_id])[0]
                        expires = common.now() + pd.Timedelta(days=int(days)).to_pytimedelta()
                        access.approve(s, ds, int(rid), who, expires_at=expires)
                    else:
                        access.reject(s, int(rid), who, reason=reason)
                st.success(t("access_decided", request=rid))
        if approved:
            with st.form(f"revoke-{ds_id}"):
                rid = st.selectbox(t("col_request"), approved, key=f"approved-{ds_id}")
                reason = st.text_input(t("access_reason"), max_chars=access.MAX_REASON, key=f"revoke-why-{ds_id}")
                revoke = st.form_submit_button(t("access_revoke"))
            if revoke:
                writer = _writer(src.db_url, src.data_root, src.private_root, src.datasets_dir)
                with writer.session() as s:
                    access.revoke(s, int(rid), who, reason=reason)
                st.success(t("access_decided", request=rid))
        if writer is not None:  # secure mode: the roots follow the grants in force at once
            paths = Paths(Path(src.data_root), Path(src.private_root), Path(src.datasets_dir))
            conditional_acl.sync(writer, paths)
    except access.AccessError as exc:
        st.error(exc.message(common.lang()))
    except Exception as exc:  # a read-only database role (cluster): decide with the CLI
        st.error(t("access_write_failed", error=common.md(type(exc).__name__)))


def main() -> None:
    src = common.source()
    lang = common.lang()
    st.title(t("page_access"))
    cat = catalog.load(Path(src.data_root))
    listed = cat.get("conditional", {})
    _not_open(cat.get("not_open", {}), lang)
    if not listed:
        st.info(t("access_none"))
        return
    try:
        with queries.store(src).read_session() as s:
            counts = access.public_counts(s)
    except Exception as exc:
        common.store_unavailable(exc)
        counts = {}
    _public(listed, counts, lang)

    user = hub_auth.identity()
    organizer = hub_auth.is_organizer(user)
    groups = set((user or {}).get("groups") or [])
    mine = [
        ds_id
        for ds_id, d in listed.items()
        if access.may_decide((d["entry"].get("access") or {}).get("reviewers"), organizer=organizer, groups=groups)
    ]
    if not user or not mine:
        return
    st.header(t("access_requests"))
    with queries.store(src).read_session() as s:
        by_dataset = {ds_id: access.listing(s, dataset=ds_id) for ds_id in mine}
    for ds_id in mine:
        st.subheader(ds_id)
        rows = by_dataset[ds_id]
        st.dataframe(
            pd.DataFrame(
                {
                    t("col_request"): [r["id"] for r in rows],
                    t("col_team"): [r["team"] for r in rows],
                    t("col_state"): [_state(r["state"]) for r in rows],
                    t("col_purpose"): [r["purpose"] for r in rows],
                    t("col_serves"): [r["serves"] for r in rows],
                    t("col_agreement"): [r["agreement_version"] for r in rows],
                    t("col_expires"): [r["expires_at"] or "" for r in rows],
                    t("col_reason"): [r["reason"] or "" for r in rows],
                }
            ),
            hide_index=True,
        )
        _decide(src, ds_id, rows, user.get("name", "?"))
    st.header(t("access_log"))
    ds_choice = st.selectbox(t("col_dataset"), mine, key="log-dataset")
    with queries.store(src).read_session() as s:
        events = access.events(s, dataset=ds_choice)
    teams = sorted({e["team"] for e in events if e["team"]})
    team_choice = st.selectbox(t("col_team"), ["", *teams], key="log-team")
    shown = [e for e in events if not team_choice or e["team"] == team_choice]
    st.dataframe(
        pd.DataFrame(
            {
                t("col_time"): [e["at"][:19] for e in shown],
                t("col_team"): [e["team"] or "" for e in shown],
                t("col_user"): [e["user"] for e in shown],
                t("col_kind"): [_kind(e["kind"]) for e in shown],
            }
        ),
        hide_index=True,
    )


main()
