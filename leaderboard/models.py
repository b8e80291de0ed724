"""The contest store's tables (SQLAlchemy 2; migrations in ``leaderboard/migrations``).

What the tables promise, and how:

* every submission is kept: a row per upload that passed the quota gate, with its
  content-addressed file (``sha256``), whatever became of it (``status``), and its errors;
* every score can be recomputed: a score row names the metric version and dataset version
  it came from; a rescore adds rows and flips ``active``, it never overwrites;
* quotas are counters with a guard (``used < daily quota + granted``) changed by one
  conditional UPDATE, which both SQLite and PostgreSQL apply atomically;
* the private score lives in ``scores.sealed_private_score``; only :mod:`leaderboard.ranking`
  reads it, and only for a revealed challenge or an organizer;
* the audit log is append-only and hash-chained; ``audit_head`` is the one row a writer
  locks to extend the chain, so concurrent writers cannot fork it.

All times are stored as UTC (naive in the database, aware in Python).
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from sandbox import clock, statuses


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in Python; naive UTC in the database (SQLite has no time zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("store times must be time-zone aware")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict] = {dt.datetime: UTCDateTime, dict: JSON, list: JSON}


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    # ``name`` is the JupyterHub group (a slug); ``display_name`` is free text a team chose
    # and is shown escaped everywhere.
    name: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.now)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    # The contest region (赛区) a team plays in, when rounds advance teams per region.
    region: Mapped[str | None] = mapped_column(String(64))

    members: Mapped[list[Member]] = relationship(back_populates="team", order_by="Member.joined_at")


class Member(Base):
    """A user belongs to at most one team (the primary key is the user)."""

    __tablename__ = "members"

    user: Mapped[str] = mapped_column(String(255), primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), index=True)
    joined_at: Mapped[dt.datetime] = mapped_column(default=clock.now)

    team: Mapped[Team] = relationship(back_populates="members")


class Submission(Base):
    __tablename__ = "submissions"
    __table_args__ = (
        Index("ix_submissions_challenge_team", "challenge", "team_id"),
        Index("ix_submissions_status", "status"),
        # Covers the standings queries: no table lookups for 100,000 submissions.
        Index("ix_submissions_board", "challenge", "status", "team_id", "created_at", "id"),
        # A team's uploads of the last minute (rate limit) and its stored bytes (storage cap).
        Index("ix_submissions_team_created", "team_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    user: Mapped[str] = mapped_column(String(255))
    challenge: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.now)
    # The day the quota was charged to, in the contest's time zone.
    quota_day: Mapped[dt.date] = mapped_column(Date)
    file_name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    # received → validating → scored | invalid | error
    status: Mapped[str] = mapped_column(String(16), default=statuses.RECEIVED)
    # True while the submission holds one unit of its team's daily quota.
    charged: Mapped[bool] = mapped_column(Boolean, default=True)
    errors: Mapped[list] = mapped_column(default=list)
    provenance: Mapped[dict] = mapped_column(default=dict)
    selected: Mapped[bool] = mapped_column(Boolean, default=False)
    # Claims by scorers (leaderboard/scorer.py): how many began, who holds the current one
    # ("host:pid") and until when, unless renewed. A claim past its lease, or whose scorer
    # process is gone, goes back to the queue; one that brought scorers down twice ends in error.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    # When the bytes of an invalid file were deleted after the retention period (its sha256,
    # size and errors stay); None while the file is kept.
    file_dropped_at: Mapped[dt.datetime | None]

    team: Mapped[Team] = relationship()
    scores: Mapped[list[Score]] = relationship(back_populates="submission", order_by="Score.id")


class Score(Base):
    __tablename__ = "scores"
    __table_args__ = (
        Index("ix_scores_submission_active", "submission_id", "active"),
        Index("ix_scores_board", "submission_id", "active", "public_score"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"))
    public_score: Mapped[float | None] = mapped_column(Float)
    sealed_private_score: Mapped[float | None] = mapped_column(Float)
    rows: Mapped[int] = mapped_column(BigInteger)
    metric: Mapped[str] = mapped_column(String(32))
    metric_version: Mapped[int] = mapped_column(Integer)
    dataset_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.now)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    rescore_id: Mapped[int | None] = mapped_column(ForeignKey("rescores.id"))

    submission: Mapped[Submission] = relationship(back_populates="scores")

    @classmethod
    def of(cls, submission_id: int, result, *, active: bool, rescore_id: int | None = None) -> Score:
        """The score row of a valid :class:`leaderboard.scoring.ScoreResult`."""
        return cls(
            submission_id=submission_id,
            public_score=result.public_score,
            sealed_private_score=result.private_score,
            rows=result.rows,
            metric=result.metric,
            metric_version=result.metric_version,
            dataset_version=result.dataset_version,
            active=active,
            rescore_id=rescore_id,
        )


class Quota(Base):
    """Submissions a team used on one challenge on one day, and extra ones granted."""

    __tablename__ = "quotas"

    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), primary_key=True)
    challenge: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    used: Mapped[int] = mapped_column(Integer, default=0)
    granted: Mapped[int] = mapped_column(Integer, default=0)


class QuotaGrant(Base):
    __tablename__ = "quota_grants"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    challenge: Mapped[str] = mapped_column(String(64))
    day: Mapped[dt.date] = mapped_column(Date)
    extra: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    by: Mapped[str] = mapped_column(String(255))
    at: Mapped[dt.datetime] = mapped_column(default=clock.now)


class Reveal(Base):
    __tablename__ = "reveals"

    challenge: Mapped[str] = mapped_column(String(64), primary_key=True)
    revealed_at: Mapped[dt.datetime] = mapped_column(default=clock.now)
    by: Mapped[str] = mapped_column(String(255))
    # Bootstrap intervals and tied groups computed at the reveal (see ranking.intervals).
    report: Mapped[dict] = mapped_column(default=dict)


class Rescore(Base):
    __tablename__ = "rescores"

    id: Mapped[int] = mapped_column(primary_key=True)
    challenge: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(32))
    metric_version: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.now)
    # pending → published | discarded
    status: Mapped[str] = mapped_column(String(16), default="pending")
    decided_at: Mapped[dt.datetime | None]


class Advancement(Base):
    """A team admitted to a round after the first, by ``contesthub rounds advance`` (leaderboard/rounds.py)."""

    __tablename__ = "advancements"

    round: Mapped[str] = mapped_column(String(64), primary_key=True)  # the round the team may enter
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), primary_key=True)
    from_round: Mapped[str] = mapped_column(String(64), index=True)
    region: Mapped[str | None] = mapped_column(String(64))
    # Why: {"challenge": id, "rank": n} or {"rank_sum": n, "ranks": {challenge: rank}}.
    basis: Mapped[dict] = mapped_column(default=dict)
    at: Mapped[dt.datetime] = mapped_column(default=clock.now)
    by: Mapped[str] = mapped_column(String(255))


class Application(Base):
    """One version of a team's entry to the application track (leaderboard/applications.py).

    Files are kept in the submission file store under their SHA-256; every version stays, and the
    last one before the track closes is the entry."""

    __tablename__ = "applications"
    __table_args__ = (Index("ix_applications_team_version", "team_id", "version", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    version: Mapped[int] = mapped_column(Integer)
    # The blind code jurors know the entry by: random at the first version, kept by later ones.
    code: Mapped[str] = mapped_column(String(16), index=True)
    user: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(200))
    # [{"role": "writeup" | "notebook" | "screenshot", "name", "sha256", "size", "kind"}]
    files: Mapped[list] = mapped_column(default=list)
    link: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.now)


class JuryAssignment(Base):
    __tablename__ = "jury_assignments"

    juror: Mapped[str] = mapped_column(String(255), primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=clock.now)


class JurorConflict(Base):
    """A juror who declared a conflict with a team never sees its entry."""

    __tablename__ = "juror_conflicts"

    juror: Mapped[str] = mapped_column(String(255), primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=clock.now)


class JuryScore(Base):
    __tablename__ = "jury_scores"

    juror: Mapped[str] = mapped_column(String(255), primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), primary_key=True)
    criterion: Mapped[str] = mapped_column(String(64), primary_key=True)
    score: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(default=clock.now)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime]
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    payload: Mapped[str] = mapped_column(Text)  # canonical JSON, hashed as stored
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's last entry; the row a writer locks while it appends."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


# --- conditional data (issue 17): access requests and the access log (leaderboard/access.py) ---


class AccessRequest(Base):
    """A team's request to read a conditional dataset, and the decision on it.

    ``status``: pending → approved | rejected; approved → revoked | expired. An approved
    request grants access until ``expires_at``; the hub's sync marks it expired after that.
    """

    __tablename__ = "access_requests"
    __table_args__ = (Index("ix_access_requests_dataset_team", "dataset", "team_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    dataset: Mapped[str] = mapped_column(String(100))
    purpose: Mapped[str] = mapped_column(Text)
    serves: Mapped[str] = mapped_column(Text)  # the challenge or application it serves
    agreement_version: Mapped[str] = mapped_column(String(32))
    requested_by: Mapped[str] = mapped_column(String(255))
    requested_at: Mapped[dt.datetime] = mapped_column(default=clock.now)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    decided_by: Mapped[str | None] = mapped_column(String(255))
    decided_at: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)  # why rejected or revoked

    team: Mapped[Team] = relationship()


class AccessEvent(Base):
    """One read of a conditional dataset, recorded by the platform (never by a kernel's file)."""

    __tablename__ = "access_events"
    __table_args__ = (Index("ix_access_events_dataset_team_at", "dataset", "team_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=clock.now)
    dataset: Mapped[str] = mapped_column(String(100))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    user: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))  # grant | server-start | query
    detail: Mapped[dict] = mapped_column(default=dict)


# --- data requests and error reports (issue 17, item 6; leaderboard/reports.py) ----------------


class DataReport(Base):
    """A signed-in user's request for a dataset not in the catalog, or a report of an error in
    a published one; organizers triage it: new → accepted | planned | rejected | fixed."""

    __tablename__ = "data_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # request | error
    user: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.now)
    dataset: Mapped[str] = mapped_column(String(100))
    version: Mapped[int | None] = mapped_column(Integer)
    table_name: Mapped[str | None] = mapped_column(String(100))
    row_key: Mapped[str | None] = mapped_column(String(200))
    field: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="new")
    planned_for: Mapped[dt.date | None] = mapped_column(Date)
    reason: Mapped[str | None] = mapped_column(Text)
    fixed_in_version: Mapped[int | None] = mapped_column(Integer)
    decided_by: Mapped[str | None] = mapped_column(String(255))
    decided_at: Mapped[dt.datetime | None]


class SubmissionProvenance(Base):
    """Where a submission from a kernel came from, as its kernel reported it (``leaderboard/provenance.py``):
    the notebook (its saved file's digest; its content in the file store under ``notebook_stored``),
    the environment's package list and its digest, and the tables the kernel read."""

    __tablename__ = "submission_provenance"

    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), primary_key=True)
    notebook_name: Mapped[str | None] = mapped_column(String(255))
    notebook_sha256: Mapped[str | None] = mapped_column(String(64))
    notebook_size: Mapped[int | None] = mapped_column(BigInteger)
    notebook_stored: Mapped[str | None] = mapped_column(String(64))  # the kept copy's digest
    outputs_stripped: Mapped[bool] = mapped_column(Boolean, default=False)
    packages_sha256: Mapped[str] = mapped_column(String(64))
    packages: Mapped[list] = mapped_column(default=list)
    python: Mapped[str] = mapped_column(String(32), default="")
    reads: Mapped[list] = mapped_column(default=list)
    recorded_at: Mapped[dt.datetime] = mapped_column(default=clock.now)


class Rerun(Base):
    """A finalist's notebook run again in a clean sandbox (``leaderboard/rerun.py``): reproduced,
    differs or failed, with the details, the end of the run's output and who asked."""

    __tablename__ = "reruns"
    __table_args__ = (Index("ix_reruns_challenge", "challenge", "submission_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"))
    challenge: Mapped[str] = mapped_column(String(64))
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    verdict: Mapped[str] = mapped_column(String(16))  # reproduced | differs | failed
    detail: Mapped[dict] = mapped_column(default=dict)
    log: Mapped[str] = mapped_column(Text, default="")
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    by: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime]
