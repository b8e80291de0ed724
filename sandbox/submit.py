"""``sandbox.submit``: send predictions to the contest's submission service from a notebook.

Inside a hub's JupyterLab no extra login is needed: the notebook server's own token
(``JUPYTERHUB_API_TOKEN``) carries ``access:services!service=submit``, and the spawner
tells us where the service is (``CONTESTHUB_SUBMIT_URL``). A DataFrame is written to a CSV
under ``~/submissions/`` first, so the contestant keeps exactly what was sent. The file is
streamed (never loaded into memory), then the service is polled until the submission is
scored or rejected, and the outcome is shown in both languages.

Only the standard library's HTTP client is used: the sandbox talks to the service like any
other client, and knows nothing of the hub or the contest engine.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from sandbox import clock, statuses
from sandbox.errors import ContesthubError

PENDING = statuses.PENDING
LONG_POLL = 30  # seconds the service may hold a request for a pending submission (its maximum)


class SubmitError(ContesthubError):
    code = "submit-failed"


@dataclass
class SubmissionResult:
    """What became of one submission, as the team may see it (never a private score)."""

    id: int
    challenge: str
    status: str
    public_score: float | None = None
    metric: str | None = None
    errors: list[dict] = field(default_factory=list)
    file: str = ""
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.status in (statuses.SCORED, "valid")

    def lines(self, lang: str = "zh") -> list[str]:
        zh = lang == "zh"
        if self.status == "valid":
            rows = self.raw.get("rows", 0)
            return [
                f"文件检查通过（{rows:,} 行），可以提交；检查不计入提交次数"
                if zh
                else f"the file passes every check ({rows:,} rows) and can be submitted; checking costs no quota"
            ]
        if self.status == statuses.INVALID and not self.id:
            head = (
                "文件未通过检查（未提交，不计入次数）："
                if zh
                else "the file does not pass the checks (nothing was sent):"
            )
            return [head, *self._problem_lines(zh)]
        if self.status == statuses.SCORED:
            return [
                f"提交 #{self.id} 已评分：公开榜得分 {self.public_score:.6g}（{self.metric}）"
                if zh
                else f"submission #{self.id} scored: public score {self.public_score:.6g} ({self.metric})"
            ]
        if self.status in PENDING:
            return [f"提交 #{self.id} 仍在评分中" if zh else f"submission #{self.id} is still being scored"]
        if self.status == statuses.INVALID and self.raw.get("charged"):
            head = (
                f"提交 #{self.id} 未通过检查；今天的免费无效提交已用完，本次计入提交次数："
                if zh
                else f"submission #{self.id} was not scored; today's free invalid files are used up, so it counted "
                "against your quota:"
            )
        else:
            head = (
                f"提交 #{self.id} 未通过检查（不计入提交次数）："
                if zh
                else f"submission #{self.id} was not scored (it did not count against your quota):"
            )
        return [head, *self._problem_lines(zh)]

    def _problem_lines(self, zh: bool) -> list[str]:
        out = []
        for e in self.errors:
            where = []
            if e.get("column"):
                where.append(f"column {e['column']}" if not zh else f"列 {e['column']}")
            if e.get("rows"):
                where.append(("rows " if not zh else "行 ") + ", ".join(map(str, e["rows"][:5])))
            msg = e.get("message_zh" if zh else "message_en") or e.get("message", "")
            out.append(f"  - [{e.get('code')}] {msg}" + (f" ({'; '.join(where)})" if where else ""))
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines("zh") + self.lines("en"))

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.ok else "#b35900" if self.status in PENDING else "#cf222e"
        body = "<br>".join(escape(line) for line in self.lines("zh") + self.lines("en"))
        return f'<div style="border-left:4px solid {colour};padding:4px 8px">{body}</div>'


def _service() -> tuple[str, str]:
    url = os.environ.get("CONTESTHUB_SUBMIT_URL")
    token = os.environ.get("JUPYTERHUB_API_TOKEN")
    if not url or not token:
        raise SubmitError(
            "no submission service is configured here: submit from a JupyterLab started by the contest hub "
            "(it sets CONTESTHUB_SUBMIT_URL and JUPYTERHUB_API_TOKEN)",
            "当前环境没有配置提交服务：请在比赛平台启动的 JupyterLab 中提交"
            "（它会设置 CONTESTHUB_SUBMIT_URL 和 JUPYTERHUB_API_TOKEN）",
            code="no-service",
        )
    return url.rstrip("/") + "/api", token


def _request(method: str, url: str, token: str, data=None, headers: dict | None = None, timeout: float = 600) -> dict:
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Authorization": f"token {token}", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            doc = json.loads(exc.read() or b"{}")
        except ValueError:
            doc = {}
        error = SubmitError(
            doc.get("message_en") or f"the submission service answered {exc.code} {exc.reason}",
            doc.get("message_zh") or f"提交服务返回 {exc.code} {exc.reason}",
            code=doc.get("code") or f"http-{exc.code}",
        )
        error.retry_after = doc.get("retry_after")
        raise error from None
    except urllib.error.URLError as exc:
        raise SubmitError(
            f"the submission service cannot be reached ({exc.reason}); try again in a minute",
            f"无法连接提交服务（{exc.reason}）；请稍后再试",
            code="service-unreachable",
        ) from None


def _as_file(challenge: str, predictions, folder: Path | None = None) -> Path:
    """A path as given, or a DataFrame written to ``folder`` (``~/submissions/`` by default)."""
    if isinstance(predictions, str | os.PathLike):
        path = Path(predictions).expanduser()
        if not path.is_file():
            raise SubmitError(f"there is no file {path}", f"文件 {path} 不存在", code="no-file")
        return path
    if not hasattr(predictions, "to_csv"):
        raise SubmitError(
            "submit a pandas DataFrame or the path of a CSV/Parquet file",
            "请提交 pandas DataFrame，或 CSV/Parquet 文件的路径",
            code="bad-argument",
        )
    folder = folder or Path.home() / "submissions"
    folder.mkdir(exist_ok=True)
    path = folder / f"{challenge}-{clock.now().astimezone():%Y%m%d-%H%M%S}.csv"
    predictions.to_csv(path, index=False)
    return path


def _provenance() -> dict[str, str]:
    from sandbox import __version__

    out = {"sandbox_version": __version__, "client": "sandbox.submit"}
    if os.environ.get("JPY_SESSION_NAME"):  # set by jupyter_server for a notebook's kernel
        out["notebook"] = os.path.basename(os.environ["JPY_SESSION_NAME"])
    return out


# Set only by `contesthub verify-run` (leaderboard/rerun.py) in the kernel it re-runs a finalist's
# notebook in: submit() writes the predictions there instead of uploading them.
RERUN_OUTPUT = "CONTESTHUB_RERUN_OUTPUT"


def _send_provenance(api: str, token: str, submission_id: int, quiet: bool) -> None:
    """The notebook, packages and tables read (sandbox/provenance.py), kept beside the submission.

    The submission stands without it: a failure here is said, never raised."""
    from sandbox import provenance

    try:
        body = json.dumps(provenance.collect(), ensure_ascii=False).encode("utf-8")
        _request(
            "POST",
            f"{api}/submissions/{submission_id}/provenance",
            token,
            data=body,
            headers={"Content-Type": "application/json"},
        )
    except (SubmitError, OSError, ValueError) as exc:
        if not quiet:
            text = exc.message("zh") + " / " + exc.message("en") if isinstance(exc, SubmitError) else str(exc)
            print(f"未能记录提交的来源（笔记本、环境）/ the submission's provenance was not recorded: {text}")


def submit(challenge: str, predictions, *, wait: float = 300.0, quiet: bool = False) -> SubmissionResult:
    """Send predictions (a DataFrame or a file) for ``challenge`` and wait for the score.

    Costs one of the team's daily submissions unless the file is rejected.
    """
    from urllib.parse import quote, urlencode

    capture = os.environ.get(RERUN_OUTPUT)
    if capture:  # a finalist's notebook re-run by the organizers: keep the file, send nothing
        path = _as_file(challenge, predictions)
        shutil.copyfile(path, capture)
        if not quiet:
            print(f"重新运行：预测已保存 / re-run: predictions kept ({challenge})")
        return SubmissionResult(id=0, challenge=challenge, status="captured", file=str(path))
    api, token = _service()
    path = _as_file(challenge, predictions)
    query = urlencode({"file_name": path.name, **_provenance()})
    deadline = time.monotonic() + wait
    while True:
        try:
            with open(path, "rb") as body:
                doc = _request(
                    "POST",
                    f"{api}/challenges/{quote(challenge)}/submissions?{query}",
                    token,
                    data=body,
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(path.stat().st_size)},
                )
            break
        except SubmitError as exc:  # the team uploaded too much in the last minute: wait as told, once in a while
            pause = getattr(exc, "retry_after", None)
            if exc.code != "rate-limited" or not pause or time.monotonic() + pause > deadline:
                raise
            if not quiet:
                print(f"上传过于频繁，{pause} 秒后自动重试 / too many uploads this minute; trying again in {pause} s")
            time.sleep(pause)
    _send_provenance(api, token, doc["id"], quiet)
    while doc["status"] in PENDING and (left := deadline - time.monotonic()) > 0:
        # A long poll: the service answers as soon as the submission is finished (or after `wait`).
        wait = max(1, min(LONG_POLL, int(left)))
        doc = _request("GET", f"{api}/submissions/{doc['id']}?wait={wait}", token)
    result = SubmissionResult(
        id=doc["id"],
        challenge=doc["challenge"],
        status=doc["status"],
        public_score=doc.get("public_score"),
        metric=doc.get("metric"),
        errors=doc.get("errors") or [],
        file=str(path),
        raw=doc,
    )
    if not quiet and not _in_ipython():
        print(result)
    return result


def _challenge_spec(challenge: str) -> dict:
    from sandbox.settings import Paths

    path = Paths.from_env().data_root / "contest.json"
    if not path.exists():
        raise SubmitError(
            f"the contest's submission rules are not published in this data root ({path})",
            f"此数据目录中没有比赛的提交规则（{path}）",
            code="no-contest",
        )
    specs = {c["id"]: c for c in json.loads(path.read_text("utf-8"))["challenges"]}
    if challenge not in specs:
        raise SubmitError(
            f"no challenge {challenge!r} (challenges: {', '.join(specs)})",
            f"没有赛题 {challenge!r}（现有赛题：{', '.join(specs)}）",
            code="not-found",
        )
    return specs[challenge]


def validate(challenge: str, predictions) -> SubmissionResult:
    """Run the submission service's file checks here, on this machine: costs no quota, sends nothing.

    Checks columns, ids against the published test table, values and labels, exactly as the
    service does before scoring; only the score itself needs the hidden answers.
    """
    import tempfile

    import duckdb

    from sandbox import api
    from sandbox.quoting import lit, q
    from sandbox.submission_checks import Expect, SubmissionInvalid, validate_file

    spec = _challenge_spec(challenge)
    expect = Expect(
        id_columns=tuple(spec["id_columns"]),
        prediction_columns=tuple(spec["prediction_columns"]),
        input=spec["input"],
        labels=tuple(spec["labels"]),
        max_bytes=spec["max_bytes"],
        # the service's limit after decompressing (the same as before it, in a contest.json
        # published before it said so)
        max_uncompressed_bytes=spec.get("max_uncompressed_bytes", spec["max_bytes"]),
        group=spec.get("group"),
    )
    folder, table = api.locate(spec["test_table"])
    files = ", ".join(lit(str(folder / f["path"])) for f in table["files"])
    test_ids = (
        "SELECT "
        + ", ".join(f"CAST({q(c)} AS VARCHAR) AS {q(c)}" for c in expect.id_columns)
        + f" FROM read_parquet([{files}])"
    )
    with tempfile.TemporaryDirectory(prefix="contesthub-validate-") as work:
        path = _as_file(challenge, predictions, folder=Path(work))
        con = duckdb.connect()
        con.execute("SET disabled_optimizers = 'in_clause'").fetchall()
        try:
            loaded = validate_file(con, path, Path(work) / "unpacked", expect, test_ids)
        except SubmissionInvalid as exc:
            errors = [{**p.to_dict(), "row": p.rows[0] if p.rows else None} for p in exc.problems]
            return SubmissionResult(id=0, challenge=challenge, status=statuses.INVALID, errors=errors, file=str(path))
        finally:
            con.close()
    return SubmissionResult(id=0, challenge=challenge, status="valid", file=str(path), raw={"rows": loaded.rows})


def my_submissions(challenge: str | None = None) -> list[dict]:
    """The team's submissions, newest first (public scores only)."""
    from urllib.parse import urlencode

    api, token = _service()
    return _request(
        "GET", f"{api}/submissions" + (f"?{urlencode({'challenge': challenge})}" if challenge else ""), token
    )


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None
