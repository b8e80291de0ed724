"""Results anyone can check: commitments before a challenge opens, a signed bundle at its reveal.

* **The contest's key.** An Ed25519 key pair made at set-up (:func:`signing_key`, when the
  contest rules are published): the private key in ``<private root>/secrets/results_ed25519.pem``
  (mode 0600, travels with backups), the public key in ``contest.json`` and on the contest home
  page, so a bundle signed by anyone else is told apart.
* **Commitments** (:func:`commit`). For each challenge, the SHA-256 of its hidden solution file,
  of the public/private split (which rows the public board scores) and of the scoring code (each
  file's digest, :data:`SCORING_CODE`), recorded in the audit log and published in
  ``<data root>/contest-results/commitments.json`` when the rules are published, that is before the
  challenge opens. A later change (a rebuilt solution, another scorer) adds a commitment; every
  one of them is in the bundle, so nobody can swap a solution unseen.
* **The bundle** (:func:`publish_bundle`), written at the reveal to
  ``<data root>/contest-results/<challenge>.json``: the final board, every final submission with its
  file's digest and both scores, the commitments, the split row by row (the salt that makes it
  stays secret: it makes every challenge's split), the re-run verdicts when there are any, and
  the audit log's head, signed with the contest's key.
* **Verification** (:func:`verify`, ``contesthub verify-results``) needs nothing but this code
  and the bundle: it checks the signature and that this checkout's scoring code is the committed
  one; given the solutions (the layout of ``<private root>/solutions``) it checks their digests,
  and given the submission files (``<sha[:2]>/<sha>`` as the store keeps them, or flat) it
  re-scores every final submission with the scorer's own code and recomputes the board.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import itertools
import json
import math
import os
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from leaderboard import audit, metrics
from leaderboard.contest import Challenge, Contest
from leaderboard.models import AuditEntry, AuditHead
from sandbox.errors import ContesthubError
from sandbox.settings import PROJECT_ROOT, Paths

FORMAT = "contesthub-results/1"
# Under the data root, public; a name no dataset can take (dataset ids have no hyphen).
RESULTS_DIR = "contest-results"
# The code a score depends on: the metrics, reading and checking a file, joining it with the solution.
SCORING_CODE = (
    "leaderboard/metrics.py",
    "leaderboard/scoring.py",
    "sandbox/submission_checks.py",
    "sandbox/quoting.py",
)
COMMIT_ACTION, BUNDLE_ACTION = "challenge.commit", "challenge.results"
CHUNK = 1 << 20


class ResultsError(ContesthubError):
    code = "results"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def canonical_bytes(doc: dict) -> bytes:
    """What is signed: sorted keys, no spaces, UTF-8 (floats as Python writes them: exact)."""
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def results_dir(paths: Paths) -> Path:
    return paths.data_root / RESULTS_DIR


# --- the contest's key ---------------------------------------------------------------------


def key_file(private_root: Path) -> Path:
    return private_root / "secrets" / "results_ed25519.pem"


def signing_key(paths: Paths) -> Ed25519PrivateKey:
    """The contest's signing key, made on first use (0600; made whole, then linked into place, so
    two processes starting together agree on one key)."""
    path = key_file(paths.private_root)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results_ed25519-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ResultsError(f"{path} is not an Ed25519 key", f"{path} 不是 Ed25519 密钥")
    return key


def public_key_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


# --- commitments ---------------------------------------------------------------------------


def scoring_code(root: Path = PROJECT_ROOT) -> dict[str, str]:
    """Each scoring code file's SHA-256, by its path in the repository."""
    return {name: _sha256_file(root / name) for name in SCORING_CODE}


def _digest(doc: dict) -> str:
    return hashlib.sha256(canonical_bytes(doc)).hexdigest()


def _packed_split(public: np.ndarray) -> bytes:
    return np.packbits(np.asarray(public, dtype=bool)).tobytes()


def commitment(ch: Challenge, paths: Paths) -> dict:
    """What the platform commits to for a challenge: digests only, nothing a contestant could use."""
    from leaderboard.scoring import public_rows, solution_for

    solution, version = solution_for(ch, paths)
    public = public_rows(ch, paths, version)
    code = scoring_code()
    return {
        "challenge": ch.id,
        "dataset_version": version,
        "solution_file": f"{ch.dataset}/v{version}/{ch.table}.parquet",
        "solution_sha256": _sha256_file(solution),
        "split_rows": len(public),
        "split_sha256": hashlib.sha256(_packed_split(public)).hexdigest(),
        "metric": f"{ch.scorer.name}@{ch.scorer.version}",
        "scoring_files": code,
        "scoring_code_sha256": _digest(code),
    }


def commitments(session: Session, challenge_id: str | None = None) -> list[dict]:
    """Every recorded commitment (oldest first) with its audit entry's number, time and hash."""
    q = select(AuditEntry).where(AuditEntry.action == COMMIT_ACTION).order_by(AuditEntry.seq)
    if challenge_id is not None:
        q = q.where(AuditEntry.subject == challenge_id)
    return [
        {**json.loads(e.payload), "audit_seq": e.seq, "at": e.at.isoformat(), "audit_hash": e.hash}
        for e in session.execute(q).scalars()
    ]


def commit(session: Session, contest: Contest, paths: Paths, *, by: str) -> list[dict]:
    """Record a commitment for each challenge whose solution exists and has none that matches
    (a first one, or a change); publish them all. Returns the ones recorded now."""
    from sandbox.errors import NotFound

    made = []
    for ch in contest.challenges:
        try:
            now = commitment(ch, paths)
        except NotFound:
            continue  # no solution built yet: nothing to commit to
        earlier = commitments(session, ch.id)
        if earlier and {k: earlier[-1].get(k) for k in now} == now:
            continue
        audit.record(session, by, COMMIT_ACTION, ch.id, now)
        made.append(now)
    signing_key(paths)  # made at set-up, with the first commitments
    _write_json(results_dir(paths) / "commitments.json", {"commitments": commitments(session)})
    return made


def _write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o755)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


# --- the bundle ----------------------------------------------------------------------------


def _challenge_doc(ch: Challenge) -> dict:
    """What re-scoring needs of the challenge's definition (the bundle carries it: no contest file needed)."""
    return {
        "id": ch.id,
        "title": ch.title,
        "dataset": ch.dataset,
        "table": ch.table,
        "id_columns": list(ch.id_columns),
        "target": ch.target,
        "positive": ch.positive,
        "prediction": ch.prediction,
        "metric": ch.metric,
        "metric_params": ch.metric_params,
        "public_fraction": ch.public_fraction,
        "final_selections": ch.final_selections,
        "upload_limit_mb": ch.upload_limit_mb,
        "higher_is_better": ch.higher_is_better,
        "opens": ch.opens.isoformat(),
    }


def _challenge_of(doc: dict) -> Challenge:
    """The :class:`Challenge` to score with, from a bundle (dates and quotas play no part in a score)."""
    from sandbox import clock

    now = clock.now()
    return Challenge(
        id=doc["id"],
        title=doc["title"],
        description={},
        dataset=doc["dataset"],
        table=doc["table"],
        id_columns=tuple(doc["id_columns"]),
        target=doc["target"],
        positive=doc["positive"],
        prediction=doc["prediction"],
        metric=doc["metric"],
        metric_params=doc["metric_params"],
        public_fraction=doc["public_fraction"],
        daily_quota=0,
        max_team_size=0,
        final_selections=doc["final_selections"],
        opens=now,
        closes=now,
        reveal=now,
        upload_limit_mb=doc["upload_limit_mb"],
    )


def bundle(session: Session, contest: Contest, paths: Paths, challenge_id: str) -> dict:
    """The signed results of a revealed challenge (raises Sealed before the reveal)."""
    from leaderboard import ranking, rerun
    from leaderboard.scoring import public_rows

    ch = contest.challenge(challenge_id)
    finals = ranking.final_submissions(session, ch)
    rec = ranking.revealed(session, ch.id)
    board = [
        {k: r[k] for k in ("rank", "team", "score", "public_score", "submission_id")}
        for r in ranking.private_standings(session, ch)
    ]
    committed = commitments(session, ch.id)
    if not committed:
        raise ResultsError(
            f"{ch.id} has no commitment; run `contesthub contest publish` (it records them)",
            f"赛题 {ch.id} 没有承诺记录；请运行 `contesthub contest publish`（会记录承诺）",
        )
    public = public_rows(ch, paths, committed[-1]["dataset_version"])
    head = session.get(AuditHead, 1)
    key = signing_key(paths)
    doc = {
        "format": FORMAT,
        "contest": contest.title,
        "challenge": _challenge_doc(ch),
        "revealed_at": rec.revealed_at.isoformat(),
        "commitments": committed,
        "split": {
            "rows": len(public),
            "public_bits": base64.b64encode(zlib.compress(_packed_split(public), 9)).decode("ascii"),
        },
        "board": board,
        "final_submissions": finals,
        # The newest verdict of each finalist's notebook run again (contesthub verify-run), if any.
        "rerun_verdicts": [
            {k: v[k] for k in ("team", "submission_id", "verdict", "detail", "finished_at")}
            for v in rerun.latest(session, ch.id)
        ],
        "audit_head": {"seq": head.seq, "hash": head.hash} if head else {"seq": 0, "hash": audit.GENESIS},
        "public_key": public_key_hex(key),
    }
    doc["signature"] = key.sign(canonical_bytes(doc)).hex()
    return doc


def publish_bundle(store, contest: Contest, paths: Paths, challenge_id: str, *, by: str) -> Path:
    """Write the revealed challenge's signed bundle to ``<data root>/contest-results/<id>.json`` (recorded)."""
    with store.session() as s:
        doc = bundle(s, contest, paths, challenge_id)
        path = results_dir(paths) / f"{challenge_id}.json"
        _write_json(path, doc)
        audit.record(s, by, BUNDLE_ACTION, challenge_id, {"sha256": _sha256_file(path), "signature": doc["signature"]})
    return path


# --- verification --------------------------------------------------------------------------


@dataclass
class Verdict:
    """What ``verify-results`` found: every check made, every problem with the file it concerns."""

    bundle: str
    checked: list[str] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)  # {"file", "en", "zh"}

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, file: str | Path, en: str, zh: str) -> None:
        self.problems.append({"file": str(file), "en": en, "zh": zh})

    def to_dict(self) -> dict:
        return {"ok": self.ok, "bundle": self.bundle, "checked": self.checked, "problems": self.problems}


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _commit_digests(c: dict) -> tuple:
    return c["solution_sha256"], c["split_sha256"], c["scoring_code_sha256"], c["metric"]


def _submission_file(folder: Path, sha256: str) -> Path | None:
    for candidate in (folder / sha256[:2] / sha256, folder / sha256):
        if candidate.is_file():
            return candidate
    return None


def verify(
    bundle_path: Path,
    solutions: Path | None = None,
    submissions: Path | None = None,
    public_key: str | None = None,
) -> Verdict:
    """Check a results bundle; with the solutions and submissions, re-score and recompute the board.

    Reads no store, no contest file and no private root: only this checkout's code and the
    files given."""
    v = Verdict(bundle=str(bundle_path))
    try:
        doc = json.loads(Path(bundle_path).read_text("utf-8"))
        signature = bytes.fromhex(doc.pop("signature"))
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(doc["public_key"]))
        ch = _challenge_of(doc["challenge"])
        committed = doc["commitments"][-1]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        v.problem(bundle_path, f"not a results bundle: {exc}", f"不是结果包：{exc}")
        return v
    # 1. The signature: the bundle is what the contest's key signed, byte for byte.
    try:
        key.verify(signature, canonical_bytes(doc))
        v.checked.append("signature")
    except InvalidSignature:
        v.problem(
            bundle_path,
            "the signature does not match: the bundle was changed after it was signed",
            "签名不符：结果包在签名后被改动过",
        )
    if public_key and public_key.lower() != doc["public_key"]:
        v.problem(
            bundle_path,
            "signed with another key than the contest's (compare with the key on the contest home page)",
            "签名密钥不是本比赛的密钥（请与比赛首页公布的公钥核对）",
        )
    # 2. This checkout scores as the committed code does.
    for name, digest in committed["scoring_files"].items():
        here = PROJECT_ROOT / name
        if not here.is_file() or _sha256_file(here) != digest:
            v.problem(
                here,
                f"this checkout's {name} is not the committed scoring code; check out the contest's release",
                f"本地的 {name} 与承诺的评分代码不同；请检出比赛所用版本",
            )
    if f"{ch.scorer.name}@{ch.scorer.version}" != committed["metric"]:
        v.problem(
            PROJECT_ROOT / "leaderboard/metrics.py",
            f"the metric here is {ch.scorer.name}@{ch.scorer.version}, the commitment says {committed['metric']}",
            f"本地指标为 {ch.scorer.name}@{ch.scorer.version}，承诺为 {committed['metric']}",
        )
    v.checked.append("scoring code")
    # What was committed to when the challenge opened must be what scored it.
    opens = dt.datetime.fromisoformat(doc["challenge"]["opens"]) if doc["challenge"].get("opens") else None
    when = {c["audit_seq"]: dt.datetime.fromisoformat(c["at"]) for c in doc["commitments"]}
    at_open = [c for c in doc["commitments"] if opens is None or when[c["audit_seq"]] <= opens]
    at_open = at_open or doc["commitments"][:1]
    for later in doc["commitments"]:
        changed = _commit_digests(later) != _commit_digests(at_open[-1])
        if opens is not None and when[later["audit_seq"]] > opens and changed:
            v.problem(
                bundle_path,
                f"the solution, split or scoring code changed after the challenge opened "
                f"(commitment {later['audit_seq']} at {later['at']})",
                f"赛题开放后答案、划分或评分代码被更改（承诺 {later['audit_seq']}，{later['at']}）",
            )
    # 3. The split in the bundle is the committed one.
    packed = zlib.decompress(base64.b64decode(doc["split"]["public_bits"]))
    public = np.unpackbits(np.frombuffer(packed, dtype=np.uint8))[: doc["split"]["rows"]].astype(bool)
    if hashlib.sha256(packed).hexdigest() != committed["split_sha256"] or len(public) != committed["split_rows"]:
        v.problem(bundle_path, "the public/private split is not the committed one", "公开/私有划分与承诺不符")
    v.checked.append("split")
    solution_ok = False
    if solutions is not None:
        solution = Path(solutions) / committed["solution_file"]
        if not solution.is_file():
            v.problem(solution, "the solution file is missing", "答案文件缺失")
        elif _sha256_file(solution) != committed["solution_sha256"]:
            v.problem(
                solution,
                "the solution file is not the committed one (its SHA-256 differs)",
                "答案文件与承诺不符（SHA-256 不同）",
            )
        else:
            solution_ok = True
            v.checked.append("solution")
    rescored: dict[int, tuple[float | None, float | None]] = {}
    if submissions is not None:
        for f in doc["final_submissions"]:
            file = _submission_file(Path(submissions), f["sha256"])
            what = f"submission {f['submission_id']} ({f['team']})"
            if file is None:
                v.problem(Path(submissions) / f["sha256"], f"{what}: the file is missing", f"{what}：文件缺失")
                continue
            if _sha256_file(file) != f["sha256"]:
                v.problem(
                    file,
                    f"{what}: the file is not the one submitted (its SHA-256 differs)",
                    f"{what}：文件与提交时不同（SHA-256 不同）",
                )
                continue
            if not solution_ok:
                continue
            _rescore(v, ch, file, Path(solutions) / committed["solution_file"], public, f, rescored)
        v.checked.append("submissions")
    _check_board(v, bundle_path, doc, ch, rescored)
    return v


def _rescore(v: Verdict, ch: Challenge, file: Path, solution: Path, public: np.ndarray, f: dict, out: dict) -> None:
    from leaderboard.scoring import score_with_split

    what = f"submission {f['submission_id']} ({f['team']})"
    try:
        got = score_with_split(ch, file, solution, public)
    except (ContesthubError, metrics.MetricUndefined, ValueError) as exc:
        v.problem(file, f"{what}: could not be scored again: {exc}", f"{what}：无法重新评分：{exc}")
        return
    if not got.valid:
        v.problem(
            file, f"{what}: invalid when scored again: {got.errors[:3]}", f"{what}：重新评分时无效：{got.errors[:3]}"
        )
        return
    out[f["submission_id"]] = (got.public_score, got.private_score)
    for split, zh, mine in (("public", "公开", got.public_score), ("private", "私有", got.private_score)):
        said = f[f"{split}_score"]
        if not _close(mine, said):
            v.problem(
                file,
                f"{what}: {split} score {mine!r} scored again, the bundle says {said!r}",
                f"{what}：重新评分得到{zh}分数 {mine!r}，结果包为 {said!r}",
            )


def _check_board(v: Verdict, bundle_path: Path, doc: dict, ch: Challenge, rescored: dict) -> None:
    """The board follows from the final submissions' private scores (re-scored ones where given)."""
    best: dict[str, float] = {}
    for f in doc["final_submissions"]:
        score = rescored.get(f["submission_id"], (None, f["private_score"]))[1]
        if score is None:
            continue
        if f["team"] not in best or (score > best[f["team"]] if ch.higher_is_better else score < best[f["team"]]):
            best[f["team"]] = score
    board = doc["board"]
    if {r["team"] for r in board} != set(best):
        v.problem(
            bundle_path, "the board's teams are not the final submissions' teams", "排行榜的队伍与最终提交的队伍不符"
        )
    for r in board:
        if r["team"] in best and not _close(r["score"], best[r["team"]]):
            v.problem(
                bundle_path,
                f"the board gives {r['team']} {r['score']!r}; its final submissions give {best[r['team']]!r}",
                f"排行榜上 {r['team']} 的分数为 {r['score']!r}，其最终提交得分为 {best[r['team']]!r}",
            )
    scores = [r["score"] for r in board]
    in_order = all((a >= b) if ch.higher_is_better else (a <= b) for a, b in itertools.pairwise(scores))
    if not in_order or [r["rank"] for r in board] != list(range(1, len(board) + 1)):
        v.problem(bundle_path, "the board is not in the order of its scores", "排行榜的顺序与分数不符")
    v.checked.append("board")
