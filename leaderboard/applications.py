"""The application track (应用创新赛道): write-ups scored by a jury, blind, on a rubric.

* **Entries.** A team submits a write-up (Markdown or PDF, at most ``writeup_mb``), the
  notebooks it rests on, optional screenshots (PNG/JPEG) and a link, while the track is open.
  Every submission is a new version (all kept, files in the content-addressed file store); the
  last one before the track closes is the entry.
* **Jurors** (the hub's ``jurors`` group) see entries under a blind code, never the team's name
  or members: :func:`juror_view` and :func:`open_entry` return the title, the files and the link
  only (a write-up may still name its authors; the rules ask teams not to). A juror who declared
  a conflict with a team (:func:`declare_conflict`) is never assigned its entry and cannot open
  it (``juror-conflict``), even by its code.
* **Assignment** (:func:`assign`): each entry gets ``jurors_per_entry`` jurors without a
  conflict; the entries with the fewest eligible jurors are served first, each taking the least
  loaded jurors, so the loads differ by at most one when conflicts allow.
* **Results** (:func:`results`): per entry and criterion the trimmed mean (``trim`` scores
  dropped at each end when an entry has more than twice as many), the weighted mean of those
  over the criteria, the ranking, and the awards in the contest file's order (``count`` entries,
  or ``share`` of all entries rounded up). Agreement: the one-way ICC(1) of the weighted juror
  totals (each entry is scored by its own set of jurors, the design ICC(1) is for) and the
  jurors whose total for an entry is more than 2 points from its trimmed mean (outliers).
* **Publishing** (:func:`reveal`): after ``reveal``, once, recorded in the audit log; then
  :func:`finalists` gives the public list of awarded entries with their write-ups.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import secrets
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from leaderboard import audit, teams
from leaderboard.contest import ApplicationTrack, Contest
from leaderboard.models import Application, JurorConflict, JuryAssignment, JuryScore, Reveal, Team
from leaderboard.store import Store
from sandbox import clock
from sandbox.errors import ContesthubError, NotFound

REVEAL_KEY = "application_track"  # its row in ``reveals``
JURORS_GROUP = "jurors"
KINDS = {"writeup": ("markdown", "pdf"), "notebook": ("notebook",), "screenshot": ("png", "jpeg")}


class ApplicationError(ContesthubError):
    code = "application-invalid"


def track_of(contest: Contest) -> ApplicationTrack:
    if contest.application_track is None:
        raise NotFound("this contest has no application track", "本比赛没有应用创新赛道")
    return contest.application_track


def _kind(path: Path) -> str | None:
    """What a file is, from its bytes (a name can say anything)."""
    head = path.read_bytes()[:8]
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError:
        return None
    if path.suffix == ".ipynb":
        return "notebook" if text.lstrip().startswith("{") and '"cells"' in text else None
    return "markdown" if "\x00" not in text else None


@dataclass
class File:
    role: str  # writeup | notebook | screenshot
    path: Path


def submit(
    store: Store,
    contest: Contest,
    *,
    user: str,
    title: str,
    files: list[File],
    link: str | None = None,
    now: dt.datetime | None = None,
) -> Application:
    """Keep a new version of the user's team's entry; refuse (nothing kept) a closed track, a
    missing or wrong write-up, a file of the wrong kind or too large."""
    track, now = track_of(contest), now or clock.now()
    if not track.opens <= now < track.closes:
        raise ApplicationError(
            f"the application track takes entries from {track.opens:%Y-%m-%d %H:%M} to {track.closes:%Y-%m-%d %H:%M}",
            f"应用创新赛道的提交时间为 {track.opens:%Y-%m-%d %H:%M} 至 {track.closes:%Y-%m-%d %H:%M}",
            code="track-closed",
        )
    if [f.role for f in files].count("writeup") != 1:
        raise ApplicationError(
            "an entry has exactly one write-up (Markdown or PDF)",
            "每个作品需要且只能有一份说明文档（Markdown 或 PDF）",
            code="writeup-missing",
        )
    limit = track.writeup_mb << 20
    kept = []
    for f in files:
        size = f.path.stat().st_size
        if size > limit:
            raise ApplicationError(
                f"{f.path.name} is {size / 2**20:.1f} MiB; files may be at most {track.writeup_mb} MiB",
                f"{f.path.name} 大小为 {size / 2**20:.1f} MiB，超过上限 {track.writeup_mb} MiB",
                code="file-too-large",
            )
        kind = _kind(f.path)
        if f.role not in KINDS or kind not in KINDS[f.role]:
            wanted = " / ".join(KINDS.get(f.role, ()))
            raise ApplicationError(
                f"{f.path.name}: a {f.role} must be {wanted or 'one of writeup, notebook, screenshot'}",
                f"{f.path.name}：{f.role} 文件必须是 {wanted or 'writeup、notebook 或 screenshot'}",
                code="wrong-file-kind",
            )
        with open(f.path, "rb") as fh:
            upload = store.files.receive(fh, limit)
        store.files.keep(upload)
        kept.append({"role": f.role, "name": f.path.name[:200], "sha256": upload.sha256, "size": size, "kind": kind})
    if link and not link.startswith(("https://", "http://")):
        raise ApplicationError("the link must start with https://", "链接必须以 https:// 开头", code="bad-link")
    with store.session() as s:
        team = teams.team_of(s, user)
        if team is None:
            raise ApplicationError(f"{user} is not in a team yet", f"{user} 尚未加入队伍", code="no-team")
        last = s.execute(
            select(Application).where(Application.team_id == team.id).order_by(Application.version.desc()).limit(1)
        ).scalar()
        version = last.version + 1 if last else 1
        app = Application(
            team_id=team.id,
            version=version,
            code=last.code if last else "E-" + secrets.token_hex(4).upper(),
            user=user,
            title=title.strip()[:200],
            files=kept,
            link=(link or None) and link[:500],
            created_at=now,
        )
        s.add(app)
        s.flush()
        audit.record(s, user, "application.submit", f"{team.name}#v{version}", {"files": kept, "title": app.title})
        return app


def entries(session: Session, contest: Contest) -> dict[int, Application]:
    """Each team's entry: its last version before the track closed."""
    track = track_of(contest)
    rows = session.execute(
        select(Application).where(Application.created_at < track.closes).order_by(Application.version)
    ).scalars()
    return {a.team_id: a for a in rows}


def _team_by_code(session: Session, contest: Contest, code: str) -> int:
    for team_id, app in entries(session, contest).items():
        if app.code == code:
            return team_id
    raise NotFound(f"no entry {code!r}", f"没有作品 {code!r}")


def declare_conflict(session: Session, juror: str, team_name: str) -> None:
    """The juror will not see this team's entry; an assignment already made is withdrawn."""
    team = teams.get(session, team_name)
    if session.get(JurorConflict, (juror, team.id)) is None:
        session.add(JurorConflict(juror=juror, team_id=team.id))
    assigned = session.get(JuryAssignment, (juror, team.id))
    if assigned is not None:
        session.delete(assigned)
    audit.record(session, juror, "jury.conflict", team.name, {})


def assign(session: Session, contest: Contest, jurors: list[str], *, by: str) -> dict[str, list[str]]:
    """Give every entry ``jurors_per_entry`` jurors without a conflict, loads as even as allowed."""
    track = track_of(contest)
    k = track.jurors_per_entry
    conflicts = {(c.juror, c.team_id) for c in session.execute(select(JurorConflict)).scalars()}
    load = {j: 0 for j in sorted(set(jurors))}
    by_team: dict[int, list[str]] = {}
    team_ids = sorted(entries(session, contest))
    eligible = {t: [j for j in load if (j, t) not in conflicts] for t in team_ids}
    for t in sorted(team_ids, key=lambda t: (len(eligible[t]), t)):
        if len(eligible[t]) < k:
            raise ApplicationError(
                f"an entry has only {len(eligible[t])} jurors without a conflict; {k} are needed",
                f"有作品只有 {len(eligible[t])} 位无利益冲突的评委，需要 {k} 位",
                code="too-few-jurors",
            )
        chosen = sorted(eligible[t], key=lambda j: (load[j], hashlib.sha256(f"{j}:{t}".encode()).hexdigest()))[:k]
        for j in chosen:
            load[j] += 1
        by_team[t] = chosen
    session.execute(JuryAssignment.__table__.delete())
    for t, chosen in by_team.items():
        for j in chosen:
            session.add(JuryAssignment(juror=j, team_id=t))
    names = dict(session.execute(select(Team.id, Team.name)).all())
    out = {names[t]: chosen for t, chosen in by_team.items()}
    audit.record(session, by, "jury.assign", "application_track", {"assignments": out, "per_entry": k})
    return out


def _blind(app: Application) -> dict:
    """What a juror may see of an entry: no team, no members, no submitting user."""
    return {
        "code": app.code,
        "title": app.title,
        "version": app.version,
        "files": [{k: f[k] for k in ("role", "name", "sha256", "size", "kind")} for f in app.files],
        "link": app.link,
    }


def juror_view(session: Session, contest: Contest, juror: str) -> list[dict]:
    """The entries assigned to ``juror``, blind, with the scores they gave so far."""
    mine = entries(session, contest)
    assigned = session.execute(select(JuryAssignment.team_id).where(JuryAssignment.juror == juror)).scalars()
    out = []
    for t in sorted(assigned, key=lambda t: mine[t].code):
        given = session.execute(select(JuryScore).where(JuryScore.juror == juror, JuryScore.team_id == t)).scalars()
        out.append({**_blind(mine[t]), "scores": {g.criterion: g.score for g in given}})
    return out


def open_entry(session: Session, contest: Contest, juror: str, code: str) -> dict:
    """One entry, blind, for a juror assigned to it; a conflicted juror is refused whatever the code."""
    t = _team_by_code(session, contest, code)
    if session.get(JurorConflict, (juror, t)) is not None:
        raise ApplicationError(
            "you declared a conflict of interest with this entry's team; it is not shown to you",
            "你已声明与该作品的队伍存在利益冲突，无法查看该作品",
            code="juror-conflict",
        )
    if session.get(JuryAssignment, (juror, t)) is None:
        raise ApplicationError("this entry is not assigned to you", "该作品未分配给你", code="not-assigned")
    return _blind(entries(session, contest)[t])


def score(session: Session, contest: Contest, juror: str, code: str, scores: dict[str, int]) -> None:
    """A juror's scores of one entry on every criterion (replacing earlier ones), until the reveal."""
    track = track_of(contest)
    if session.get(Reveal, REVEAL_KEY) is not None:
        raise ApplicationError("the results are published", "结果已公布，不能再评分", code="already-revealed")
    open_entry(session, contest, juror, code)  # the same refusals
    t = _team_by_code(session, contest, code)
    wanted = {c.id: c for c in track.criteria}
    if set(scores) != set(wanted):
        raise ApplicationError(
            f"score every criterion: {', '.join(wanted)}", f"请为每个评分项打分：{', '.join(wanted)}", code="criteria"
        )
    for cid, value in scores.items():
        c = wanted[cid]
        if not isinstance(value, int) or not c.low <= value <= c.high:
            raise ApplicationError(
                f"{cid}: {value!r} is not a whole number from {c.low} to {c.high}",
                f"{c.title['zh']}：{value!r} 不是 {c.low} 到 {c.high} 之间的整数",
                code="score-range",
            )
    for cid, value in scores.items():
        row = session.get(JuryScore, (juror, t, cid))
        if row is None:
            session.add(JuryScore(juror=juror, team_id=t, criterion=cid, score=value))
        else:
            row.score, row.at = value, clock.now()
    audit.record(session, juror, "jury.score", code, {"scores": scores})


def trimmed_mean(values: list[float], trim: int) -> float:
    """The mean after dropping ``trim`` values at each end, when more than ``2 * trim`` are given."""
    v = sorted(values)
    if len(v) > 2 * trim:
        v = v[trim : len(v) - trim] if trim else v
    return float(np.mean(v))


def icc1(groups: list[list[float]]) -> float | None:
    """One-way random-effects ICC(1) for groups of ratings of unequal sizes (Shrout & Fleiss;
    the average group size adjusted as in ANOVA for unbalanced designs)."""
    groups = [g for g in groups if len(g) >= 2]
    n = len(groups)
    if n < 2:
        return None
    sizes = np.array([len(g) for g in groups], dtype=float)
    total = sizes.sum()
    grand = np.mean(np.concatenate(groups))
    msb = sum(k * (np.mean(g) - grand) ** 2 for g, k in zip(groups, sizes, strict=True)) / (n - 1)
    msw = sum(((np.array(g) - np.mean(g)) ** 2).sum() for g in groups) / (total - n)
    k0 = (total - (sizes**2).sum() / total) / (n - 1)
    denominator = msb + (k0 - 1) * msw
    return float((msb - msw) / denominator) if denominator else None


def results(session: Session, contest: Contest) -> dict:
    """Every entry's trimmed means, weighted score, rank and award; agreement and outliers."""
    track = track_of(contest)
    weights = {c.id: c.weight for c in track.criteria}
    given: dict[int, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for r in session.execute(select(JuryScore)).scalars():
        given[r.team_id][r.juror][r.criterion] = r.score
    names = {t.id: t for t in session.execute(select(Team)).scalars()}
    rows, totals = [], []
    for t, app in entries(session, contest).items():
        complete = {j: s for j, s in given[t].items() if set(s) == set(weights)}
        if not complete:
            continue
        means = {cid: trimmed_mean([s[cid] for s in complete.values()], track.trim) for cid in weights}
        weighted = sum(weights[c] * means[c] for c in weights) / sum(weights.values())
        per_juror = {j: sum(weights[c] * s[c] for c in weights) / sum(weights.values()) for j, s in complete.items()}
        totals.append(list(per_juror.values()))
        rows.append(
            {
                "team": names[t].name,
                "display_name": names[t].display_name,
                "code": app.code,
                "title": app.title,
                "version": app.version,
                "jurors": len(complete),
                "means": means,
                "score": weighted,
                "outliers": sorted(j for j, v in per_juror.items() if abs(v - weighted) > 2),
            }
        )
    rows.sort(key=lambda r: (-r["score"], r["code"]))
    given_awards, start = {}, 0
    for award in track.awards:
        n = award.count if award.count is not None else math.ceil(award.share * len(rows))
        for r in rows[start : start + n]:
            given_awards[r["team"]] = award.id
        start += n
    for i, r in enumerate(rows, 1):
        r["rank"], r["award"] = i, given_awards.get(r["team"])
    return {"entries": rows, "icc1": icc1(totals)}


def reveal(session: Session, contest: Contest, *, by: str, now: dt.datetime | None = None) -> dict:
    """Publish the results (once, after the track's reveal time); recorded."""
    track, now = track_of(contest), now or clock.now()
    if now < track.reveal:
        raise ApplicationError(
            f"the results may be published from {track.reveal:%Y-%m-%d %H:%M}",
            f"结果最早于 {track.reveal:%Y-%m-%d %H:%M} 公布",
            code="reveal-too-early",
        )
    if session.get(Reveal, REVEAL_KEY) is not None:
        raise ApplicationError("the results are already published", "结果已公布", code="already-revealed")
    report = results(session, contest)
    session.add(Reveal(challenge=REVEAL_KEY, revealed_at=now, by=by, report=report))
    audit.record(
        session, by, "application.reveal", REVEAL_KEY, {"awards": {r["team"]: r["award"] for r in report["entries"]}}
    )
    return report


def finalists(session: Session) -> list[dict] | None:
    """The public page's list: the awarded entries with their titles and write-ups; None before the reveal."""
    rec = session.get(Reveal, REVEAL_KEY)
    if rec is None:
        return None
    out = []
    for r in rec.report["entries"]:
        if r["award"] is None:
            continue
        out.append({k: r[k] for k in ("rank", "award", "display_name", "title", "score", "code")})
    return out
