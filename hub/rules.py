"""The contest's rules and the data licences, accepted once before a contestant's first server.

JupyterHub shows a spawner's *options form* before it starts a server; here that form is the
contest's rules (from the contest file: rounds, challenges, dates, quotas, team size, final
selections, the upload limit) and the licence of every published dataset, with one box to
tick. It is shown until the contestant accepts; the acceptance is an entry in the contest's
audit log (``rules.accept``, with the SHA-256 of the text accepted), so it is recorded once,
hash-chained with everything else, and the form is never shown again.

The REST API cannot skip it: a start without an acceptance on record is refused with 403
(zh/en), unless the request itself accepts (``POST /hub/api/users/NAME/server`` with the body
``{"accept_rules": true}``), which is then recorded the same way. The check runs after the
home is prepared (a refusal for another reason, such as a squatted Unix account, comes first).
"""

from __future__ import annotations

import asyncio
import hashlib
import html
from pathlib import Path

from sqlalchemy import select
from tornado import web

from leaderboard import audit
from leaderboard import contest as contest_mod
from sandbox import catalog
from sandbox.settings import Paths

ACTION = "rules.accept"
FIELD = "accept_rules"


def rules_text(contest: contest_mod.Contest, data_root: Path) -> list[tuple[str, str]]:
    """The rules as (zh, en) lines: what a contestant agrees to."""
    tz = contest.timezone
    out = [
        (
            f"比赛：{contest.title['zh']}（时区 {tz}）",
            f"Contest: {contest.title['en']} (time zone {tz})",
        ),
        (
            f"每队最多 {contest.max_team_size} 人，每人只能加入一个队伍；"
            f"提交文件不超过 {contest.upload_limit_mb} MiB。",
            f"Teams of at most {contest.max_team_size}, one team per person; submission files up to "
            f"{contest.upload_limit_mb} MiB.",
        ),
    ]
    for r in contest.rounds:
        rule = ""
        if r.advance is not None:
            rule = f"；前 {r.advance.top} 名晋级" + ("（按赛区）" if r.advance.per_region else "")
        out.append(
            (
                f"{r.title['zh']}：{r.opens.astimezone(tz):%Y-%m-%d} 至 {r.closes.astimezone(tz):%Y-%m-%d}{rule}",
                f"{r.title['en']}: {r.opens.astimezone(tz):%Y-%m-%d} to {r.closes.astimezone(tz):%Y-%m-%d}"
                + (f"; the top {r.advance.top} advance" if r.advance else ""),
            )
        )
    for ch in contest.challenges:
        out.append(
            (
                f"赛题 {ch.title['zh']}：每天 {ch.daily_quota} 次提交，可选 {ch.final_selections} 个最终提交，"
                f"{ch.closes.astimezone(tz):%Y-%m-%d %H:%M} 截止；最终排名以保密测试集为准，公布前不可见。",
                f"Challenge {ch.title['en']}: {ch.daily_quota} submissions a day, {ch.final_selections} final "
                f"selections, closes {ch.closes.astimezone(tz):%Y-%m-%d %H:%M}; the final ranking uses the private "
                "test set and stays sealed until revealed.",
            )
        )
    for ds_id, doc in sorted(catalog.load(data_root)["datasets"].items()):
        entry = doc.get("entry") or {}
        licence, title = entry.get("licence") or {}, entry.get("title") or {}
        if licence:
            out.append(
                (
                    f"数据 {title.get('zh', ds_id)}：许可 {licence.get('title', licence.get('id'))} "
                    f"{licence.get('url', '')}",
                    f"Data {title.get('en', ds_id)}: licence {licence.get('title', licence.get('id'))} "
                    f"{licence.get('url', '')}",
                )
            )
    return out


def digest(lines: list[tuple[str, str]]) -> str:
    return hashlib.sha256("\n".join(f"{zh}\n{en}" for zh, en in lines).encode()).hexdigest()


def form_html(lines: list[tuple[str, str]]) -> str:
    """The options form: every line escaped (titles and licences come from files anyone may edit)."""
    items = "".join(f"<li>{html.escape(zh)}<br><small>{html.escape(en)}</small></li>" for zh, en in lines)
    return (
        '<div id="contesthub-rules">'
        "<h3>比赛规则与数据许可 / Contest rules and data licences</h3>"
        "<p>启动你的 JupyterLab 之前，请阅读并接受以下规则与数据许可（只需一次）。"
        "<br><small>Before your JupyterLab starts, read and accept the rules and data licences below "
        "(once).</small></p>"
        f"<ul>{items}</ul>"
        f'<label><input type="checkbox" name="{FIELD}" id="{FIELD}" required> '
        "我已阅读并接受比赛规则和数据许可 / I have read and accept the contest rules and data licences</label>"
        "</div>"
    )


def options_from_form(formdata: dict) -> dict:
    """The form's answer as the spawner's ``user_options``."""
    return {FIELD: formdata.get(FIELD, [""])[0] == "on"}


class Rules:
    """The acceptance gate of one hub: the form to show, and the check before a server starts."""

    def __init__(self, paths: Paths, contest_file: str | None = None):
        self.paths, self.contest_file = paths, contest_file
        self._store = None

    def _lines(self) -> list[tuple[str, str]]:
        return rules_text(contest_mod.load_for(self.paths, self.contest_file), self.paths.data_root)

    def store(self):
        if self._store is None:  # at the first start, when the services have made the store
            from leaderboard import store

            self._store = store.connect(self.paths)
        return self._store

    def accepted(self, user: str) -> bool:
        from leaderboard.models import AuditEntry

        with self.store().read_session() as s:
            found = s.execute(
                select(AuditEntry.seq).where(AuditEntry.action == ACTION, AuditEntry.subject == user).limit(1)
            ).first()
        return found is not None

    def record(self, user: str, lines: list[tuple[str, str]]) -> None:
        with self.store().session() as s:
            audit.record(s, user, ACTION, user, {"rules_sha256": digest(lines)})

    async def options_form(self, spawner) -> str:
        """The rules until the contestant has accepted them; then nothing (JupyterHub starts at once)."""
        if await asyncio.to_thread(self.accepted, spawner.user.name):
            return ""
        return form_html(await asyncio.to_thread(self._lines))

    async def check(self, spawner) -> None:
        """Before a start: accepted before, or accepted now (recorded), or refused with 403."""
        name = spawner.user.name
        if await asyncio.to_thread(self.accepted, name):
            return
        if (spawner.user_options or {}).get(FIELD) is True:
            await asyncio.to_thread(self.record, name, await asyncio.to_thread(self._lines))
            spawner.log.info("%s accepted the contest rules and data licences", name)
            return
        raise web.HTTPError(
            403,
            "请先在 /hub/spawn 阅读并接受比赛规则和数据许可，再启动服务器。"
            'Read and accept the contest rules and data licences at /hub/spawn (or send {"accept_rules": true}) '
            "before starting a server.",
        )
