"""The public data service: the open data for anyone, without an account, at ``/services/data/``.

A read-only tornado service that the hub runs as a public service (hub/services.py; the
proxy forwards every request, no login) and that runs alone too::

    CONTESTHUB_DATA_ROOT=var/data python -m hub.data_service --port 8030 --prefix /

In the style of Datasette, every catalog page has a JSON twin and every list is paginated:

=====================================================  ============================================
``api/datasets?q=&theme=&tier=&publisher=&page=``      search (sandbox.search's ranking), facets
``api/datasets/{id}``                                  catalog entry, versions with checksums,
                                                       tables with Table Schema, quality, licence,
                                                       citation, the challenges that use it
``api/datasets/{id}/tables/{t}/rows``                  rows: ``version``, ``_size`` (≤ 1000),
                                                       ``_next``, ``_sort``/``_sort_desc``,
                                                       ``<field>__<op>=`` (exact gt gte lt lte in
                                                       contains), declared fields only
``api/datasets/{id}/tables/{t}/download``              ``format=parquet|csv``, ``encoding=gbk``,
                                                       ``version``; Range, ETag, SHA-256 header
``api/catalog.jsonld``                                 DCAT-AP JSON-LD (sandbox/catalog.py)
``api/lists/{opening|sharing|plan}.{json|csv}``        开放清单, 共享清单, 开放计划
                                                       (sandbox/gov_catalog.py)
``files/{id}/v{N}/{path}``                             the published Parquet files DCAT names
``api/openapi.json``                                   this table, for programs
``api/usage.json?dataset=``                            downloads and API calls per dataset and day
=====================================================  ============================================

Only the unconditional tier's data is served (hub/open_data.py says how nothing else is
reachable). Errors are ``{"code", "message", "message_en", "message_zh"}`` JSON with the HTTP
status. Each client (its address, as hub/login_throttle.py finds it behind the hub's proxy)
may make ``CONTESTHUB_DATA_RATE`` requests a minute (default 600, a burst of as many);
beyond, 429 with ``Retry-After``. Addresses live only in that in-memory bucket table.
DuckDB work runs on a thread pool, never on the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

from tornado import httpserver, ioloop, web

from hub import data_usage, open_data
from hub.login_throttle import client_address
from sandbox.errors import ContesthubError, NotFound

log = logging.getLogger("contesthub.data")

DEFAULT_RATE = 600  # requests per client and minute


class RateLimit:
    """A token bucket per client: ``rate`` requests a minute, a burst of as many."""

    MAX_CLIENTS = 50_000

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.burst = max(1.0, per_minute)
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str, now: float) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        tokens, last = self.buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            self.buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate
        self.buckets[client] = (tokens - 1, now)
        if len(self.buckets) > self.MAX_CLIENTS:  # forget the clients whose bucket is full again
            full = [c for c, (t, seen) in self.buckets.items() if t + (now - seen) * self.rate >= self.burst]
            for c in full:
                del self.buckets[c]
        return 0.0


class Context:
    def __init__(self, data_root: Path, cache: Path, rate: float, trusted_proxies: list[str]):
        self.catalog = open_data.Catalog(data_root)
        self.cache = cache
        self.limit = RateLimit(rate)
        self.trusted_proxies = trusted_proxies
        self.pages = open_data.LRU(open_data.ROW_CACHE)
        self.usage = data_usage.Usage(cache)
        self.pool = ThreadPoolExecutor(max_workers=int(os.environ.get("CONTESTHUB_DATA_WORKERS", "4")))

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)


class Base(web.RequestHandler):
    ctx: Context

    def initialize(self, ctx: Context, prefix: str) -> None:
        self.ctx = ctx
        self.prefix = prefix

    @property
    def lang(self) -> str:
        return "en" if (self.get_query_argument("lang", "") or "").startswith("en") else "zh"

    def set_default_headers(self) -> None:
        self.set_header("Access-Control-Allow-Origin", "*")
        self.set_header("X-Content-Type-Options", "nosniff")

    def prepare(self) -> None:
        client = client_address(self.request, trusted_proxies=self.ctx.trusted_proxies)
        wait = self.ctx.limit.take(client, time.monotonic())
        if wait:
            self.set_header("Retry-After", str(max(1, int(wait + 0.999))))
            raise open_data.Refused(
                429,
                "rate-limited",
                f"too many requests from your address; try again in {wait:.0f} s",
                f"请求过于频繁，请在 {wait:.0f} 秒后重试",
            )

    @property
    def base(self) -> str:
        """The service's own URL as the client reached it (through the hub's proxy or not)."""
        proto = self.request.headers.get("X-Forwarded-Proto", self.request.protocol).split(",")[0].strip()
        host = self.request.headers.get("X-Forwarded-Host", self.request.host).split(",")[0].strip()
        return f"{proto}://{host}{self.prefix}"

    def write_json(self, doc, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(doc, ensure_ascii=False, default=open_data._json_value))

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, ContesthubError):
            doc = exc.to_dict(self.lang)
        elif isinstance(exc, web.HTTPError) and status_code < 500:
            doc = {
                "code": f"http-{status_code}",
                "message_en": exc.log_message or self._reason,
                "message_zh": {405: "该接口不支持这种请求方法；请查看 api/openapi.json"}.get(status_code, "请求有误"),
            }
            doc["message"] = doc["message_zh"] if self.lang == "zh" else doc["message_en"]
        else:
            doc = {
                "code": "internal-error",
                "message": "服务内部错误，已记录" if self.lang == "zh" else "an internal error, logged",
                "message_en": "an internal error, logged",
                "message_zh": "服务内部错误，已记录",
            }
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(doc, ensure_ascii=False))

    def send_error(self, status_code: int = 500, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, open_data.Refused):
            status_code = exc.status
        elif isinstance(exc, NotFound):
            status_code = 404
        elif isinstance(exc, ContesthubError):
            status_code = 400
        if self._headers_written:
            self.finish() if not self._finished else None
            return
        headers = {k: v for k, v in self._headers.get_all() if k in ("Retry-After",)}
        self.clear()
        for k, v in headers.items():
            self.set_header(k, v)
        self.set_status(status_code)
        self.write_error(status_code, **kwargs)

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, ContesthubError):
            return
        super().log_exception(typ, value, tb)

    def version_arg(self) -> int | None:
        text = self.get_query_argument("version", "")
        if not text:
            return None
        if not re.fullmatch(r"\d{1,9}", text):
            raise open_data.bad_request("bad-version", "version must be a whole number", "version 必须是整数")
        return int(text)


class DatasetsHandler(Base):
    async def get(self) -> None:
        arg = self.get_query_argument
        page = arg("page", "1")
        if not re.fullmatch(r"\d{1,6}", page):
            raise open_data.bad_request("bad-page", "page must be a whole number", "page 必须是整数")
        doc = await self.ctx.run(
            lambda: open_data.search(
                self.ctx.catalog,
                arg("q", ""),
                theme=arg("theme", ""),
                tier=arg("tier", ""),
                publisher=arg("publisher", ""),
                page=int(page),
            )
        )
        for d in doc["datasets"]:
            d["url"] = f"{self.base}api/datasets/{d['id']}"
        self.write_json(doc)


class DatasetHandler(Base):
    async def get(self, ds_id: str) -> None:
        self.write_json(await self.ctx.run(open_data.dataset_document, self.ctx.catalog, ds_id, self.base))
        self.ctx.usage.count(ds_id, "api")


class RowsHandler(Base):
    async def get(self, ds_id: str, table: str) -> None:
        args = {k: [v.decode("utf-8", "replace") for v in vs] for k, vs in self.request.query_arguments.items()}
        version = self.version_arg()

        def next_url(token: str) -> str:
            keep = [(k, v) for k, vs in args.items() if k != "_next" for v in vs]
            return f"{self.base}api/datasets/{ds_id}/tables/{table}/rows?{urlencode([*keep, ('_next', token)])}"

        # The same URL, the same catalog: the same bytes (published versions never change).
        key = (self.ctx.catalog.stamp(), self.request.uri, self.base)
        body = self.ctx.pages.get(key)
        if body is None:
            doc = await self.ctx.run(open_data.read_rows, self.ctx.catalog, ds_id, table, version, args, next_url)
            body = json.dumps(doc, ensure_ascii=False, default=open_data._json_value).encode()
            self.ctx.pages.put(key, body)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(body)
        self.ctx.usage.count(ds_id, "api")


class DownloadHandler(Base):
    """A table version as one file: streamed in 1 MiB pieces, with Range, ETag and its SHA-256."""

    async def get(self, ds_id: str, table: str) -> None:
        fmt = self.get_query_argument("format", "parquet")
        encoding = self.get_query_argument("encoding", "utf-8")
        ex = await self.ctx.run(
            open_data.export, self.ctx.catalog, self.ctx.cache, ds_id, table, self.version_arg(), fmt, encoding
        )
        if await send_file(self, ex.path, ex.sha256, ex.media_type, ex.filename):
            self.ctx.usage.count(ds_id, "download")

    head = get


class FileHandler(Base):
    """The published Parquet files, by the URL the DCAT export gives them."""

    async def get(self, rel: str) -> None:
        ds_id, _, f, path = await self.ctx.run(self.ctx.catalog.published_file, rel)
        name = f"{ds_id}-{Path(f['path']).name}"
        if await send_file(self, path, f["sha256"], "application/vnd.apache.parquet", name):
            self.ctx.usage.count(ds_id, "download")

    head = get


async def send_file(h: Base, path: Path, sha256: str, media: str, filename: str) -> bool:
    """Send the file (or the asked range); True when it was a download (a GET from its first byte)."""
    size = path.stat().st_size
    etag = f'"{sha256}"'
    h.set_header("ETag", etag)
    h.set_header("Accept-Ranges", "bytes")
    h.set_header("X-Checksum-SHA256", sha256)
    h.set_header("Cache-Control", "public, max-age=3600")
    h.set_header("Content-Type", media)
    h.set_header("Content-Disposition", f"attachment; filename={filename}")
    if etag in [t.strip() for t in h.request.headers.get("If-None-Match", "").split(",")]:
        h.set_status(304)
        h.finish()
        return False
    start, end = 0, size - 1
    rng = h.request.headers.get("Range", "")
    if rng and h.request.headers.get("If-Range", etag) == etag:
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
        if not m or m.group(1) == m.group(2) == "":
            m = None
        if m:
            if m.group(1) == "":
                start = max(0, size - int(m.group(2)))
            else:
                start = int(m.group(1))
                end = min(size - 1, int(m.group(2))) if m.group(2) else size - 1
        if m is None or start >= size or start > end:
            h.set_header("Content-Range", f"bytes */{size}")
            raise open_data.Refused(
                416,
                "bad-range",
                f"the range {rng[:60]!r} is outside the file's {size} bytes",
                f"请求的范围 {rng[:60]!r} 超出文件大小（{size} 字节）",
            )
        h.set_status(206)
        h.set_header("Content-Range", f"bytes {start}-{end}/{size}")
    h.set_header("Content-Length", str(end - start + 1))
    if h.request.method == "HEAD":
        h.finish()
        return False
    with path.open("rb") as fh:
        fh.seek(start)
        left = end - start + 1
        while left > 0:
            chunk = fh.read(min(open_data.CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            h.write(chunk)
            await h.flush()
    h.finish()
    return start == 0


class CatalogHandler(Base):
    async def get(self) -> None:
        doc = await self.ctx.run(open_data.dcat, self.ctx.catalog, self.base)
        self.set_header("Content-Type", "application/ld+json; charset=utf-8")
        self.finish(json.dumps(doc, ensure_ascii=False))


class ListHandler(Base):
    """开放清单 / 共享清单 / 开放计划 as JSON or as CSV (UTF-8 with BOM)."""

    async def get(self, name: str, ext: str) -> None:
        rows = await self.ctx.run(open_data.catalog_list, self.ctx.catalog, name)
        if ext == "csv":
            from sandbox.gov_catalog import to_csv

            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", f"attachment; filename={name}.csv")
            self.finish(to_csv(rows))
        else:
            self.write_json({"list": name, "rows": rows})


class UsageHandler(Base):
    """Downloads and API calls per dataset and day: aggregates only (hub/data_usage.py)."""

    def get(self) -> None:
        dataset = self.get_query_argument("dataset", "") or None
        self.write_json({"rows": self.ctx.usage.rows(dataset)})


class OpenAPIHandler(Base):
    def get(self) -> None:
        self.write_json(openapi(self.prefix))


class RootHandler(Base):
    def get(self) -> None:
        self.write_json(
            {
                "title": {"zh": "contesthub 公共数据服务", "en": "contesthub public data service"},
                "datasets": f"{self.base}api/datasets",
                "catalog": f"{self.base}api/catalog.jsonld",
                "openapi": f"{self.base}api/openapi.json",
            }
        )


class NotFoundHandler(Base):
    def prepare(self) -> None:
        super().prepare()
        raise open_data.Refused(
            404, "not-found", "no such endpoint; see api/openapi.json", "没有这个接口；请查看 api/openapi.json"
        )


def make_app(ctx: Context, prefix: str) -> web.Application:
    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    p = re.escape(prefix)
    seg = r"([^/]+)"
    routes = [
        (rf"{p}", RootHandler),
        (rf"{p}api/datasets", DatasetsHandler),
        (rf"{p}api/datasets/{seg}", DatasetHandler),
        (rf"{p}api/datasets/{seg}/tables/{seg}/rows", RowsHandler),
        (rf"{p}api/datasets/{seg}/tables/{seg}/download", DownloadHandler),
        (rf"{p}api/catalog.jsonld", CatalogHandler),
        (rf"{p}api/lists/(opening|sharing|plan)\.(json|csv)", ListHandler),
        (rf"{p}api/openapi.json", OpenAPIHandler),
        (rf"{p}api/usage.json", UsageHandler),
        (rf"{p}files/(.+)", FileHandler),
    ]
    args = {"ctx": ctx, "prefix": prefix}
    return web.Application(
        [(r, h, args) for r, h in routes],
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
        log_function=_log_request,
    )


def _log_request(handler: web.RequestHandler) -> None:
    """Refusals and failures at INFO; the answered requests (thousands a second) at DEBUG only."""
    status = handler.get_status()
    level = logging.WARNING if status >= 500 else logging.INFO if status >= 400 else logging.DEBUG
    if log.isEnabledFor(level):
        took = 1000 * handler.request.request_time()
        log.log(level, "%d %s %s %.1fms", status, handler.request.method, handler.request.path, took)


def openapi(prefix: str) -> dict:
    """The OpenAPI 3.1 description of the service."""

    def q(name: str, desc: str, schema: dict | None = None) -> dict:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "description": desc,
            "schema": schema or {"type": "string"},
        }

    path = lambda name: {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}  # noqa: E731
    error = {"description": "error: {code, message, message_en, message_zh}", "content": {"application/json": {}}}
    common = {"400": error, "404": error, "429": {**error, "headers": {"Retry-After": {"schema": {"type": "integer"}}}}}
    table_args = [path("id"), path("table"), q("version", "dataset version (default: latest)", {"type": "integer"})]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "contesthub public data service / 公共数据服务",
            "version": "1",
            "description": "Open data of the unconditional tier, read-only, no account needed. "
            "无条件开放数据，只读，无需账号。",
        },
        "servers": [{"url": prefix.rstrip("/") or "/"}],
        "paths": {
            "/api/datasets": {
                "get": {
                    "summary": "search datasets (zh/en) with facets",
                    "parameters": [
                        q("q", "words, zh or en"),
                        q("theme", "theme id"),
                        q("tier", "unconditional, conditional, not-open"),
                        q("publisher", "publisher name, zh or en"),
                        q("page", "page, 20 datasets each", {"type": "integer", "minimum": 1}),
                    ],
                    "responses": {"200": {"description": "datasets, total, pages, facets"}, **common},
                }
            },
            "/api/datasets/{id}": {
                "get": {
                    "summary": "catalog entry, versions, tables with Table Schema, quality, citation, challenges",
                    "parameters": [path("id")],
                    "responses": {"200": {"description": "the dataset"}, **common},
                }
            },
            "/api/datasets/{id}/tables/{table}/rows": {
                "get": {
                    "summary": "rows, filtered on declared fields: <field>__<op>=value, "
                    f"op one of {', '.join(open_data.OPS)}",
                    "parameters": [
                        *table_args,
                        q("_size", f"rows per page, at most {open_data.MAX_ROWS}", {"type": "integer"}),
                        q("_next", "the cursor from the previous page's next"),
                        q("_sort", "a declared field, ascending"),
                        q("_sort_desc", "a declared field, descending"),
                    ],
                    "responses": {"200": {"description": "ok, columns, rows, next, next_url"}, **common},
                }
            },
            "/api/datasets/{id}/tables/{table}/download": {
                "get": {
                    "summary": "the table version as one file; Range, ETag, X-Checksum-SHA256",
                    "parameters": [
                        *table_args,
                        q("format", "parquet or csv", {"enum": ["parquet", "csv"]}),
                        q("encoding", "csv only: utf-8 (with BOM) or gbk (GB18030)", {"enum": ["utf-8", "gbk"]}),
                    ],
                    "responses": {"200": {"description": "the file"}, "206": {"description": "a range"}, **common},
                }
            },
            "/api/catalog.jsonld": {
                "get": {"summary": "DCAT-AP JSON-LD catalog", "responses": {"200": {"description": "JSON-LD"}}}
            },
            "/api/lists/{list}.{format}": {
                "get": {
                    "summary": "opening list, sharing list, opening plan (开放清单、共享清单、开放计划)",
                    "parameters": [
                        {
                            "name": "list",
                            "in": "path",
                            "required": True,
                            "schema": {"enum": ["opening", "sharing", "plan"]},
                        },
                        {"name": "format", "in": "path", "required": True, "schema": {"enum": ["json", "csv"]}},
                    ],
                    "responses": {"200": {"description": "rows"}, **common},
                }
            },
            "/api/openapi.json": {"get": {"summary": "this description", "responses": {"200": {"description": "ok"}}}},
        },
    }


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s data] %(message)s")
    parser = argparse.ArgumentParser(description="the public data service (hub/data_service.py)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("CONTESTHUB_PORT") or 8030))
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--prefix", default=os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/data/"))
    parser.add_argument("--data-root", default=os.environ.get("CONTESTHUB_DATA_ROOT", "var/data"))
    parser.add_argument("--cache", default=os.environ.get("CONTESTHUB_DATA_CACHE", ""))
    parser.add_argument("--rate", type=float, default=float(os.environ.get("CONTESTHUB_DATA_RATE") or DEFAULT_RATE))
    ns = parser.parse_args()
    data_root = Path(ns.data_root)
    cache = Path(ns.cache) if ns.cache else Path.home() / ".cache" / "contesthub-data"
    cache.mkdir(parents=True, exist_ok=True)
    trusted = [n for n in os.environ.get("CONTESTHUB_TRUSTED_PROXIES", "").split(",") if n.strip()]
    ctx = Context(data_root, cache, ns.rate, trusted)
    server = httpserver.HTTPServer(make_app(ctx, ns.prefix), xheaders=False, max_body_size=1 << 16)
    server.listen(ns.port, ns.address)
    ioloop.PeriodicCallback(ctx.usage.save, 5_000).start()
    loop = ioloop.IOLoop.current()
    # The hub stops its services with SIGTERM: stop the loop, so that the counts are saved.
    signal.signal(signal.SIGTERM, lambda *_: loop.add_callback_from_signal(loop.stop))
    log.info("public data service on %s:%s%s over %s", ns.address, ns.port, ns.prefix, data_root)
    try:
        ioloop.IOLoop.current().start()
    except KeyboardInterrupt:
        log.info("public data service stopped")
    finally:
        ctx.usage.save()


if __name__ == "__main__":
    main()
