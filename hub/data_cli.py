"""``contesthub data``: the public data service from a laptop (search, download with a checked SHA-256).

The hub is named with ``--hub URL`` or ``CONTESTHUB_URL`` (its public address, e.g.
``https://contest.example.org``; the service is at ``/services/data/`` under it). No account
is needed: the service is public (hub/data_service.py).

A download is written to ``<name>.part`` while it arrives and renamed only after its SHA-256
matches the one the service states (``X-Checksum-SHA256``) and, for a published Parquet file,
the one in the catalog; a mismatch deletes the file and fails. An interrupted download is
resumed from its ``.part`` with a Range request tied to the file's ETag.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import click
import requests

from sandbox.errors import ContesthubError

SERVICE_PATH = "/services/data/"
CHUNK = 1 << 20


class DataServiceError(ContesthubError):
    code = "data-service"


def service_url(hub: str | None) -> str:
    url = (hub or os.environ.get("CONTESTHUB_URL") or "").strip()
    if not url:
        raise DataServiceError(
            "name the hub: --hub https://hub.example.org or CONTESTHUB_URL",
            "请指定平台地址：--hub https://hub.example.org 或设置 CONTESTHUB_URL",
        )
    if not re.match(r"https?://", url):
        raise DataServiceError(f"{url!r} is not an http(s) URL", f"{url!r} 不是 http(s) 地址")
    url = url.rstrip("/")
    return url + "/" if url.endswith(SERVICE_PATH.rstrip("/")) else url + SERVICE_PATH


def _get(url: str, lang: str, **kw) -> requests.Response:
    try:
        r = requests.get(url, timeout=kw.pop("timeout", 60), **kw)
    except requests.RequestException as exc:
        raise DataServiceError(f"cannot reach {url}: {exc}", f"无法连接 {url}：{exc}") from None
    if r.status_code >= 400 and r.status_code != 416:
        try:
            doc = r.json()
            raise DataServiceError(doc["message_en"], doc["message_zh"], code=doc.get("code"))
        except (ValueError, KeyError):
            raise DataServiceError(
                f"{url}: HTTP {r.status_code} (is this a contesthub hub?)",
                f"{url}：HTTP {r.status_code}（这是 contesthub 平台吗？）",
            ) from None
    return r


@click.group("data")
def data() -> None:
    """The public open data of a hub, from anywhere (公共开放数据：搜索、下载)."""


@data.command("search")
@click.argument("words", nargs=-1)
@click.option("--hub", help="The hub's public URL [CONTESTHUB_URL].")
@click.option("--theme", default="", help="Only this theme.")
@click.option("--json", "as_json", is_flag=True, help="Print the service's JSON.")
@click.pass_context
def search_cmd(ctx: click.Context, words: tuple[str, ...], hub: str | None, theme: str, as_json: bool) -> None:
    """Find datasets by zh or en WORDS (按中英文关键词查找数据集)."""
    lang = (ctx.obj or {}).get("lang", "zh")
    base = service_url(hub)
    r = _get(f"{base}api/datasets", lang, params={"q": " ".join(words), "theme": theme})
    doc = r.json()
    if as_json:
        click.echo(r.text)
        return
    title = "title_zh" if lang == "zh" else "title_en"
    for d in doc["datasets"]:
        mark = "" if d["open_data"] else ("  [仅目录]" if lang == "zh" else "  [catalog only]")
        click.echo(f"{d['id']:<24} v{d['version']:<3} {d['rows']:>10} {d[title]}{mark}")
    click.echo(f"{doc['total']} 个数据集" if lang == "zh" else f"{doc['total']} dataset(s)")


@data.command("download")
@click.argument("dataset_id")
@click.argument("table", required=False)
@click.option("--hub", help="The hub's public URL [CONTESTHUB_URL].")
@click.option("--version", "version", type=int, help="A published version (default: the latest).")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True)
@click.option("--encoding", type=click.Choice(["utf-8", "gbk"]), default="utf-8", show_default=True, help="CSV only.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=".", help="Folder to write to.")
@click.pass_context
def download_cmd(
    ctx: click.Context,
    dataset_id: str,
    table: str | None,
    hub: str | None,
    version: int | None,
    fmt: str,
    encoding: str,
    out_dir: str,
) -> None:
    """Download TABLE of DATASET_ID (every table without TABLE), checking its SHA-256 (下载并校验)."""
    lang = (ctx.obj or {}).get("lang", "zh")
    base = service_url(hub)
    entry = _get(f"{base}api/datasets/{requests.utils.quote(dataset_id, safe='')}", lang).json()
    if not entry["open_data"]:
        raise DataServiceError(
            f"{dataset_id} is not open to the public: only its catalog entry is",
            f"{dataset_id} 不是无条件开放数据：只公开目录信息",
        )
    names = [table] if table else list(entry["tables"])
    for name in names:
        if name not in entry["tables"]:
            raise DataServiceError(
                f"{dataset_id} has no table {name!r} (tables: {', '.join(entry['tables'])})",
                f"{dataset_id} 没有表 {name!r}（现有表：{'、'.join(entry['tables'])}）",
            )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        params = {"format": fmt, **({"encoding": encoding} if fmt == "csv" else {})}
        if version is not None:
            params["version"] = str(version)
        url = f"{base}api/datasets/{dataset_id}/tables/{name}/download"
        path, sha = fetch(url, params, out, lang)
        click.echo(f"{path}  sha256 {sha}  ✓")


def fetch(url: str, params: dict, out: Path, lang: str) -> tuple[Path, str]:
    """Download ``url`` into ``out``: resumable, renamed into place only with a matching SHA-256."""
    head = _get(url, lang, params=params, headers={"Range": "bytes=0-0"})
    name = re.search(r"filename=([^;]+)", head.headers.get("Content-Disposition", ""))
    filename = Path(name.group(1).strip('"') if name else "download").name
    expected = head.headers.get("X-Checksum-SHA256", "")
    etag = head.headers.get("ETag", "")
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise DataServiceError(f"{url}: the service gave no SHA-256", f"{url}：服务未提供 SHA-256 校验值")
    target = out / filename
    part = out / (filename + ".part")
    digest = hashlib.sha256()
    have = part.stat().st_size if part.exists() else 0
    if have:
        with part.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
    headers = {"Range": f"bytes={have}-", "If-Range": etag} if have else {}
    with _get(url, lang, params=params, headers=headers, stream=True, timeout=600) as r:
        if r.status_code == 416:  # the .part holds the whole file already
            pass
        else:
            mode = "ab" if r.status_code == 206 else "wb"
            if mode == "wb":
                digest = hashlib.sha256()
            with part.open(mode) as fh:
                for chunk in r.iter_content(CHUNK):
                    fh.write(chunk)
                    digest.update(chunk)
    got = digest.hexdigest()
    if got != expected:
        part.unlink(missing_ok=True)
        raise DataServiceError(
            f"{filename}: SHA-256 {got} does not match the service's {expected}; the file was deleted, "
            "download it again",
            f"{filename}：SHA-256 {got} 与服务给出的 {expected} 不符；文件已删除，请重新下载",
            code="checksum-mismatch",
        )
    os.replace(part, target)
    return target, got
