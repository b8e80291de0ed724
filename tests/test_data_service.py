"""The public data service (hub/data_service.py): search, rows, downloads, refusals, limits.

Most tests run the real service alone (a subprocess, as ``python -m hub.data_service``) over
a copy of the session's demo build; ``test_through_the_hub_without_login`` runs it as the
hub's public service behind the real proxy.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import requests
from hub_fixtures import ARTIFACTS, chromium_page, hub_settings, running_hub

from sandbox.settings import PROJECT_ROOT

HOSPITAL = "hospital_outpatient"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def data_service(data_root: Path, cache: Path, rate: int = 100_000, prefix: str = "/"):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTESTHUB_", "JUPYTERHUB_"))}
    env.update({"CONTESTHUB_DATA_ROOT": str(data_root), "CONTESTHUB_DATA_RATE": str(rate)})
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.data_service", "--port", str(port), "--prefix", prefix, "--cache", str(cache)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}{prefix}"
    try:
        for _ in range(200):
            try:
                requests.get(base + "api/openapi.json", timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stdout.read().decode()
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0].decode()
        assert "Traceback" not in out, out[-4000:]


@pytest.fixture(scope="module")
def open_data(demo, tmp_path_factory):
    """A copy of the demo's data root (tests plant files in it), one dataset made conditional."""
    root = tmp_path_factory.mktemp("open") / "data"
    shutil.copytree(demo.data_root, root, symlinks=True)
    cat = json.loads((root / "catalog.json").read_text("utf-8"))
    cat["datasets"]["us_employment"]["entry"]["open_tier"] = "conditional"
    (root / "catalog.json").write_text(json.dumps(cat, ensure_ascii=False), "utf-8")
    return root


@pytest.fixture(scope="module")
def service(open_data, tmp_path_factory):
    with data_service(open_data, tmp_path_factory.mktemp("cache")) as base:
        yield base


def _error(r: requests.Response, status: int, code: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:500])
    doc = r.json()
    assert doc["code"] == code, doc
    assert doc["message_zh"] and doc["message_en"] and "Traceback" not in r.text
    return doc


def test_search_ranks_like_the_sandbox_and_counts_facets(service, demo):
    from sandbox import catalog

    r = requests.get(service + "api/datasets", params={"q": "门诊"}, timeout=30)
    doc = r.json()
    assert [d["id"] for d in doc["datasets"]] == [d["id"] for d in catalog.search(demo.data_root, "门诊")]
    assert doc["datasets"][0]["id"] == HOSPITAL and doc["total"] == len(doc["datasets"])
    assert {f["value"]: f["count"] for f in doc["facets"]["theme"]} == {"health": doc["total"]}
    every = requests.get(service + "api/datasets", timeout=30).json()
    tiers = {f["value"]: f["count"] for f in every["facets"]["tier"]}
    assert tiers == {"unconditional": every["total"] - 1, "conditional": 1}
    health = requests.get(service + "api/datasets", params={"theme": "health"}, timeout=30).json()
    assert {d["theme"] for d in health["datasets"]} == {"health"}
    # The theme facet still counts the other themes (what a click would give).
    assert len(health["facets"]["theme"]) == len(every["facets"]["theme"])
    english = requests.get(service + "api/datasets", params={"q": "outpatient"}, timeout=30).json()
    assert english["datasets"][0]["id"] == HOSPITAL
    publisher = every["datasets"][0]["publisher_zh"]
    mine = requests.get(service + "api/datasets", params={"publisher": publisher}, timeout=30).json()
    assert mine["total"] >= 1 and {d["publisher_zh"] for d in mine["datasets"]} == {publisher}
    _error(requests.get(service + "api/datasets", params={"page": "x"}, timeout=30), 400, "bad-page")


def test_dataset_entry_has_versions_schema_quality_citation_and_challenges(service):
    doc = requests.get(service + f"api/datasets/{HOSPITAL}", timeout=30).json()
    t = doc["tables"]["daily_visits"]
    assert [f["name"] for f in t["schema"]["fields"]][:2] == ["date", "hospital_id"]
    assert all(len(f["sha256"]) == 64 for f in t["files"])
    assert doc["versions"][0]["tables"]["daily_visits"][0]["sha256"] == t["files"][0]["sha256"]
    assert "rows" in t["quality"] and "quarantine_file" not in json.dumps(doc)
    assert doc["citation"]["zh"] and doc["licence"]["id"] in doc["citation"]["en"]
    assert {c["id"] for c in doc["challenges"]} >= {"outpatient_forecast"}
    assert t["links"]["csv"].endswith(f"api/datasets/{HOSPITAL}/tables/daily_visits/download?format=csv")
    # A conditional dataset: its entry, no links, no rows, no downloads.
    cond = requests.get(service + "api/datasets/us_employment", timeout=30).json()
    assert cond["open_data"] is False and all("links" not in t for t in cond["tables"].values())
    table = next(iter(cond["tables"]))
    for what in ("rows", "download"):
        _error(
            requests.get(service + f"api/datasets/us_employment/tables/{table}/{what}", timeout=30),
            403,
            "not-open-to-the-public",
        )
    _error(requests.get(service + "api/datasets/nope", timeout=30), 404, "not-found")


def test_rows_page_through_the_whole_table_in_order(service, demo):
    import duckdb

    path = demo.data_root / HOSPITAL / "latest" / "daily_visits.parquet"
    want = duckdb.sql(f"SELECT date::VARCHAR, hospital_id FROM read_parquet('{path}') WHERE hospital_id = 'H0003'")
    want = [tuple(r) for r in want.fetchall()]
    got, url, pages = [], service + f"api/datasets/{HOSPITAL}/tables/daily_visits/rows", 0
    params = {"hospital_id": "H0003", "_size": "100"}
    while url:
        doc = requests.get(url, params=params, timeout=30).json()
        got += [(r["date"], r["hospital_id"]) for r in doc["rows"]]
        url, params, pages = doc["next_url"], None, pages + 1
    assert got == want and pages == -(-len(want) // 100)
    # Sorted, descending, across pages: the same rows as one sorted query.
    first = requests.get(
        service + f"api/datasets/{HOSPITAL}/tables/daily_visits/rows",
        params={"_sort_desc": "outpatient_visits", "_size": "7", "hospital_id__in": "H0003,H0004"},
        timeout=30,
    ).json()
    second = requests.get(first["next_url"], timeout=30).json()
    values = [r["outpatient_visits"] for r in first["rows"] + second["rows"]]
    top = duckdb.sql(
        f"SELECT outpatient_visits FROM read_parquet('{path}') WHERE hospital_id IN ('H0003','H0004') "
        "ORDER BY outpatient_visits DESC LIMIT 14"
    ).fetchall()
    assert values == [v for (v,) in top]


def test_filters(service):
    url = service + f"api/datasets/{HOSPITAL}/tables/daily_visits/rows"
    rows = requests.get(
        url, params={"date__gte": "2024-03-01", "date__lt": "2024-03-03", "outpatient_visits__gt": "1000"}, timeout=30
    ).json()["rows"]
    assert rows and all("2024-03-01" <= r["date"] < "2024-03-03" and r["outpatient_visits"] > 1000 for r in rows)
    contains = requests.get(url, params={"hospital_id__contains": "H001"}, timeout=30).json()["rows"]
    assert contains and all("H001" in r["hospital_id"] for r in contains)
    exact = requests.get(url, params={"date": "2024-03-01", "_size": "1000"}, timeout=30).json()["rows"]
    assert exact and {r["date"] for r in exact} == {"2024-03-01"}
    # A partitioned table (one folder per city) reads as one.
    metro = requests.get(
        service + "api/datasets/metro_ridership/tables/daily_entries/rows", params={"city": "上海"}, timeout=30
    ).json()
    assert metro["rows"] and {r["city"] for r in metro["rows"]} == {"上海"}


def test_hostile_query_strings(service):
    url = service + f"api/datasets/{HOSPITAL}/tables/daily_visits/rows"
    _error(requests.get(url, params={"secret": "1"}, timeout=30), 400, "unknown-filter")
    _error(requests.get(url, params={"date__regex": ".*"}, timeout=30), 400, "unknown-filter")
    _error(requests.get(url, params={"_sort": "1; DROP TABLE x"}, timeout=30), 400, "unknown-field")
    _error(requests.get(url, params={'"date" OR 1=1 --': "x"}, timeout=30), 400, "unknown-filter")
    # SQL in a value is a value: a wrong type for a number, no match for a string.
    _error(requests.get(url, params={"outpatient_visits__gt": "0 OR 1=1"}, timeout=30), 400, "bad-value")
    injected = requests.get(url, params={"hospital_id": "x' OR '1'='1"}, timeout=30).json()
    assert injected["rows"] == []
    copy = requests.get(url, params={"hospital_id": "'; COPY (SELECT 1) TO '/tmp/pwned.csv'; --"}, timeout=30)
    assert copy.json()["rows"] == [] and not Path("/tmp/pwned.csv").exists()
    # A huge _size is capped at 1000 rows, never an error nor a million rows.
    big = requests.get(url, params={"_size": "9" * 30}, timeout=30).json()
    assert len(big["rows"]) == 1000 and big["next"]
    _error(requests.get(url, params={"_size": "-5"}, timeout=30), 400, "bad-size")
    for bad in ("abc", "!!!", base64.urlsafe_b64encode(b'{"a": 1}').decode(), "W10", "WzEsMiwzLDRd", "A" * 9000):
        _error(requests.get(url, params={"_next": bad}, timeout=30), 400, "bad-next")
    forged = base64.urlsafe_b64encode(b"[99, 0]").decode().rstrip("=")  # a file the table does not have
    _error(requests.get(url, params={"_next": forged}, timeout=30), 400, "bad-next")
    _error(requests.get(url, params={"hospital_id__in": ",".join(["x"] * 101)}, timeout=30), 400, "bad-in")
    _error(requests.get(url, params={"hospital_id": "x" * 5000}, timeout=30), 400, "value-too-long")
    _error(requests.get(url, params={"version": "1 OR 1"}, timeout=30), 400, "bad-version")
    _error(requests.get(url, params={"version": "99"}, timeout=30), 404, "not-found")
    # Bytes that are not UTF-8 in the query string are refused or read as text, never a crash.
    raw = requests.get(url + "?hospital_id=%ff%fe", timeout=30)
    assert raw.status_code in (200, 400) and raw.json()
    english = requests.get(url, params={"secret": "1", "lang": "en"}, timeout=30).json()
    assert english["message"] == english["message_en"]


def test_downloads_parquet_and_csv_with_checksums_etag_and_range(service, demo):
    url = service + f"api/datasets/{HOSPITAL}/tables/daily_visits/download"
    pq_r = requests.get(url, timeout=60)
    assert pq_r.status_code == 200 and pq_r.headers["Content-Length"] == str(len(pq_r.content))
    sha = hashlib.sha256(pq_r.content).hexdigest()
    assert pq_r.headers["X-Checksum-SHA256"] == sha and pq_r.headers["ETag"] == f'"{sha}"'
    published = demo.data_root / HOSPITAL / "latest" / "daily_visits.parquet"
    assert pq_r.content == published.read_bytes()
    assert requests.get(url, headers={"If-None-Match": f'"{sha}"'}, timeout=30).status_code == 304
    part = requests.get(url, headers={"Range": "bytes=4-99"}, timeout=30)
    assert part.status_code == 206 and part.content == pq_r.content[4:100]
    assert part.headers["Content-Range"] == f"bytes 4-99/{len(pq_r.content)}"
    tail = requests.get(url, headers={"Range": "bytes=-8"}, timeout=30)
    assert tail.content == pq_r.content[-8:]
    _error(requests.get(url, headers={"Range": f"bytes={len(pq_r.content)}-"}, timeout=30), 416, "bad-range")

    csv_r = requests.get(url, params={"format": "csv"}, timeout=60)
    assert csv_r.content.startswith(b"\xef\xbb\xbfdate,hospital_id,")
    assert csv_r.headers["X-Checksum-SHA256"] == hashlib.sha256(csv_r.content).hexdigest()
    table = pacsv.read_csv(io.BytesIO(csv_r.content[3:]))
    assert table.num_rows == pq.read_metadata(published).num_rows
    # GBK: Chinese text in the national encoding (the metro table's city names).
    metro = service + "api/datasets/metro_ridership/tables/daily_entries/download"
    gbk = requests.get(metro, params={"format": "csv", "encoding": "gbk"}, timeout=60)
    assert gbk.headers["Content-Type"].endswith("gb18030")
    text = gbk.content.decode("gbk")
    assert "上海" in text and text.startswith("date,city,")
    utf8 = requests.get(metro, params={"format": "csv"}, timeout=60).content[3:].decode("utf-8")
    assert text == utf8
    # A partitioned table as one Parquet file, every partition in it.
    whole = requests.get(metro, timeout=60)
    assert pq.read_table(io.BytesIO(whole.content)).num_rows == len(utf8.strip().splitlines()) - 1
    _error(requests.get(url, params={"format": "xlsx"}, timeout=30), 400, "bad-format")
    _error(requests.get(url, params={"format": "csv", "encoding": "latin-1"}, timeout=30), 400, "bad-encoding")


def test_dcat_catalog_and_its_file_urls(service):
    doc = requests.get(service + "api/catalog.jsonld", timeout=30).json()
    by_id = {d["dct:identifier"]: d for d in doc["dcat:dataset"]}
    assert by_id["us_employment"]["dcat:distribution"] == []  # conditional: no download
    dist = by_id[HOSPITAL]["dcat:distribution"][0]
    r = requests.get(dist["dcat:downloadURL"]["@id"], timeout=30)
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == dist["spdx:checksum"]["spdx:checksumValue"]
    spec = requests.get(service + "api/openapi.json", timeout=30).json()
    assert "/api/datasets/{id}/tables/{table}/rows" in spec["paths"]


def test_nothing_outside_the_open_data_is_reachable(open_data, service, demo):
    """``..``, encoded slashes, a planted symlink, answer files' names: all 404, no byte of them."""
    solution = next((demo.private_root / "solutions").rglob("*.parquet"))
    secret = solution.read_bytes()
    # A symlink planted in a published version folder, and a catalog naming it (as if written by
    # a build gone wrong): the service still refuses to follow it out of the data root.
    version = open_data / HOSPITAL / "v1"
    (version / "leak.parquet").symlink_to(solution)
    cat = json.loads((open_data / "catalog.json").read_text("utf-8"))
    cat["datasets"][HOSPITAL]["entry"]["tables"]["daily_visits"]["files"].append(
        {"path": "leak.parquet", "bytes": 1, "sha256": "0" * 64}
    )
    (open_data / "catalog.json").write_text(json.dumps(cat, ensure_ascii=False), "utf-8")
    time.sleep(0.05)
    try:
        attempts = [
            f"files/{HOSPITAL}/v1/leak.parquet",
            f"files/{HOSPITAL}/v1/../../../{solution.relative_to(demo.private_root.parent)}",
            f"files/{HOSPITAL}/v1/..%2F..%2Fcatalog.json",
            f"files/{HOSPITAL}/v1/%2e%2e/%2e%2e/etc/passwd",
            "files/..%2F..%2F..%2Fetc%2Fpasswd",
            f"api/datasets/{HOSPITAL}/tables/daily_visits_solution/rows",
            f"api/datasets/{HOSPITAL}/tables/..%2F..%2Fsolutions/download",
            f"api/datasets/..%2F{HOSPITAL}/tables/daily_visits/rows",
            f"api/datasets/{HOSPITAL}/tables/daily_visits/download?version=1%2F..%2F..",
            f"api/datasets/{HOSPITAL}/tables/daily_visits/rows?_size=5000",
        ]
        for path in attempts:
            r = requests.get(service + path, timeout=30)
            assert secret[:64] not in r.content, path
            if "_size" not in path:
                assert r.status_code in (400, 404), (path, r.status_code)
        # The planted file listed in the table: rows and downloads refuse the whole table.
        r = requests.get(service + f"api/datasets/{HOSPITAL}/tables/daily_visits/rows", timeout=30)
        assert r.status_code == 404 and secret[:64] not in r.content
    finally:
        (version / "leak.parquet").unlink()
        cat["datasets"][HOSPITAL]["entry"]["tables"]["daily_visits"]["files"].pop()
        (open_data / "catalog.json").write_text(json.dumps(cat, ensure_ascii=False), "utf-8")


def test_rate_limit_answers_429_with_retry_after(open_data, tmp_path):
    with data_service(open_data, tmp_path / "cache", rate=5) as base:
        # Five a minute, in a burst: the start-up probe took one.
        codes = [requests.get(base + "api/datasets", timeout=30) for _ in range(6)]
        assert [r.status_code for r in codes] == [200] * 4 + [429] * 2
        refused = codes[-1]
        doc = _error(refused, 429, "rate-limited")
        assert int(refused.headers["Retry-After"]) >= 1 and "秒" in doc["message_zh"]


def test_through_the_hub_without_login(demo, tmp_path):
    """The service as the hub runs it: public at /services/data/, no cookie, no token; the
    leaderboard's catalog page, in Chromium, links a table's download there."""
    settings = hub_settings(tmp_path, demo.data_root, services="data,leaderboard")
    with running_hub(settings, tmp_path / "jupyterhub.log") as hub:
        base = f"{hub.url}/services/data/"
        found = None
        for _ in range(120):  # the proxy's route appears once the service answers
            found = requests.get(base + "api/datasets", params={"q": "门诊"}, timeout=30, allow_redirects=False)
            if found.status_code == 200:
                break
            time.sleep(0.5)
        assert found.status_code == 200, found.text[:500]
        assert found.json()["datasets"][0]["url"] == f"{base}api/datasets/{HOSPITAL}"
        rows = requests.get(
            base + f"api/datasets/{HOSPITAL}/tables/daily_visits/rows", params={"_size": "3"}, timeout=30
        ).json()
        assert len(rows["rows"]) == 3 and rows["next_url"].startswith(base)
        assert requests.get(rows["next_url"], timeout=30).json()["rows"][0] != rows["rows"][0]
        dl = requests.get(base + f"api/datasets/{HOSPITAL}/tables/hospitals/download?format=csv", timeout=60)
        assert dl.headers["X-Checksum-SHA256"] == hashlib.sha256(dl.content).hexdigest()
        assert dl.content.startswith(b"\xef\xbb\xbf")
        _error(requests.get(base + f"api/datasets/{HOSPITAL}/tables/x/rows?id=1", timeout=30), 404, "not-found")
        _error(
            requests.get(base + f"api/datasets/{HOSPITAL}/tables/daily_visits/rows?x__gt=1", timeout=30),
            400,
            "unknown-filter",
        )
        leak = requests.get(base + "files/..%2F..%2Fprivate%2Fhub%2Fjupyterhub.sqlite", timeout=30)
        assert leak.status_code == 404
        assert (settings.runtime_dir / "data-cache" / HOSPITAL).is_dir()  # exports cached in the runtime dir
        with chromium_page() as page:
            page.goto(f"{hub.url}/services/leaderboard/catalog")
            link = page.get_by_role("link", name="下载 CSV（UTF-8）")
            link.wait_for(timeout=120_000)
            href = link.get_attribute("href")
            page.screenshot(path=str(ARTIFACTS / "data-service-catalog-links.png"), full_page=True)
        assert href.startswith(f"{hub.url}/services/data/api/datasets/") and href.endswith("download?format=csv")
        got = requests.get(href, timeout=60)  # what the link gives a visitor: no cookie, no token
        assert got.status_code == 200 and got.content.startswith(b"\xef\xbb\xbf")
        assert got.headers["X-Checksum-SHA256"] == hashlib.sha256(got.content).hexdigest()


def test_cli_search_and_download_round_trip(open_data, tmp_path):
    """``contesthub data``: what a laptop does against a hub, the checksum checked."""
    from click.testing import CliRunner

    from hub.cli import cli

    with data_service(open_data, tmp_path / "cache", prefix="/services/data/") as base:
        hub_url = base.removesuffix("/services/data/")
        runner = CliRunner()
        found = runner.invoke(cli, ["--lang", "en", "data", "search", "门诊", "--hub", hub_url])
        assert found.exit_code == 0, found.output
        assert found.output.splitlines()[0].startswith(HOSPITAL)
        out = tmp_path / "got"
        run = runner.invoke(
            cli, ["data", "download", HOSPITAL, "daily_visits", "--out", str(out)], env={"CONTESTHUB_URL": hub_url}
        )
        assert run.exit_code == 0, run.output
        got = out / f"{HOSPITAL}-v1-daily_visits.parquet"
        published = open_data / HOSPITAL / "v1" / "daily_visits.parquet"
        assert got.read_bytes() == published.read_bytes() and "✓" in run.output
        csv_run = runner.invoke(
            cli,
            ["data", "download", "metro_ridership", "--format", "csv", "--encoding", "gbk", "--hub", hub_url,
             "--out", str(out)],
        )  # fmt: skip
        assert csv_run.exit_code == 0, csv_run.output
        assert "上海" in (out / "metro_ridership-v1-daily_entries.gbk.csv").read_bytes().decode("gbk")
        # A resumed download: half a file left by a cut connection is completed, not restarted.
        whole = got.read_bytes()
        got.unlink()
        (out / (got.name + ".part")).write_bytes(whole[: len(whole) // 2])
        again = runner.invoke(cli, ["data", "download", HOSPITAL, "daily_visits", "--hub", hub_url, "--out", str(out)])
        assert again.exit_code == 0 and got.read_bytes() == whole
        # A file spoiled on the server's disk (its bytes, not its size): the client refuses it.
        cached = next((tmp_path / "cache").rglob("daily_entries.gbk.csv"))
        spoiled = bytearray(cached.read_bytes())
        spoiled[-2] ^= 1
        cached.write_bytes(bytes(spoiled))
        bad = runner.invoke(
            cli,
            ["--lang", "en", "data", "download", "metro_ridership", "daily_entries", "--format", "csv",
             "--encoding", "gbk", "--hub", hub_url, "--out", str(tmp_path / "bad")],
        )  # fmt: skip
        assert bad.exit_code == 1 and "does not match" in bad.output
        assert not list((tmp_path / "bad").iterdir())
        denied = runner.invoke(cli, ["--lang", "en", "data", "download", "us_employment", "--hub", hub_url])
        assert denied.exit_code == 1 and "not open to the public" in denied.output
        nohub = runner.invoke(cli, ["--lang", "en", "data", "search", "x"], env={"CONTESTHUB_URL": ""})
        assert nohub.exit_code == 1 and "--hub" in nohub.output


def test_opening_sharing_and_plan_lists_as_json_and_csv(service):
    opening = requests.get(service + "api/lists/opening.json", timeout=30).json()
    ids = {r["id"] for r in opening["rows"]}
    assert "hospital_outpatient" in ids and "us_employment" in ids  # conditional is opened too, on conditions
    assert next(r for r in opening["rows"] if r["id"] == "us_employment")["opening_type_zh"] == "有条件开放"
    sharing = requests.get(service + "api/lists/sharing.csv", timeout=30)
    assert sharing.headers["Content-Type"].startswith("text/csv") and sharing.content.startswith(b"\xef\xbb\xbf")
    assert "无条件共享" in sharing.content.decode("utf-8-sig")
    plan = requests.get(service + "api/lists/plan.json", timeout=30).json()["rows"]
    assert {r["id"] for r in plan} >= {"bus_punctuality", "pension_coverage"}
    assert {r["status"] for r in plan} <= {"planned", "overdue", "published"}
    _error(requests.get(service + "api/lists/secret.json", timeout=30), 404, "not-found")


def test_usage_counts_per_dataset_and_day_kept_across_a_restart(open_data, tmp_path):
    cache = tmp_path / "cache"
    with data_service(open_data, cache) as base:
        for _ in range(2):
            requests.get(base + f"api/datasets/{HOSPITAL}/tables/daily_visits/rows", timeout=30).raise_for_status()
        requests.get(base + f"api/datasets/{HOSPITAL}", timeout=30).raise_for_status()
        url = base + f"api/datasets/{HOSPITAL}/tables/hospitals/download"
        whole = requests.get(url, timeout=30)
        requests.get(url, headers={"Range": "bytes=10-20"}, timeout=30)  # a resumed piece: not a download
        requests.get(url, headers={"If-None-Match": whole.headers["ETag"]}, timeout=30)  # 304: not one either
        requests.get(base + "api/datasets/metro_ridership/tables/daily_entries/download?format=csv", timeout=60)
        rows = requests.get(base + "api/usage.json", timeout=30).json()["rows"]
        mine = requests.get(base + "api/usage.json", params={"dataset": HOSPITAL}, timeout=30).json()["rows"]
    assert [(r["dataset"], r["api"], r["download"]) for r in rows] == [(HOSPITAL, 3, 1), ("metro_ridership", 0, 1)]
    assert len(mine) == 1 and set(mine[0]) == {"day", "dataset", "api", "download"}  # counts only, no addresses
    saved = json.loads((cache / "usage.json").read_text("utf-8"))  # written when the service stopped
    assert saved["days"][rows[0]["day"]][HOSPITAL] == {"api": 3, "download": 1}
    with data_service(open_data, cache) as base:  # a restart adds to what was counted
        requests.get(base + f"api/datasets/{HOSPITAL}", timeout=30).raise_for_status()
        again = requests.get(base + "api/usage.json", params={"dataset": HOSPITAL}, timeout=30).json()["rows"]
    assert again[0]["api"] == 4


def test_submit_from_a_laptop_with_a_token(hub, demo, tmp_path):
    """``contesthub submit CH FILE --hub URL --token T``: what a laptop does, as the Kaggle CLI does."""
    import duckdb
    from click.testing import CliRunner

    from hub.cli import cli

    if "submit" not in hub.services:
        pytest.skip("the submission service is not running in this hub")
    org = hub.new_token(hub.organizer, session=hub.organizer_session())
    name, _, session = hub.account()
    token = hub.new_token(name, session=session)
    r = requests.post(
        f"{hub.url}/services/submit/api/admin/teams",
        headers={"Authorization": f"token {org}"},
        json={"name": "laptop", "members": [name]},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    test = demo.data_root / HOSPITAL / "latest" / "daily_visits_test.parquet"
    csv_file = tmp_path / "predictions.csv"
    duckdb.sql(
        f"COPY (SELECT date, hospital_id, 100.0 AS outpatient_visits FROM read_parquet('{test}')) "
        f"TO '{csv_file}' (HEADER)"
    )
    env = {"JUPYTERHUB_API_TOKEN": "", "CONTESTHUB_SUBMIT_URL": ""}
    run = CliRunner().invoke(
        cli, ["--lang", "en", "submit", "outpatient_forecast", str(csv_file), "--hub", hub.url, "--token", token,
              "--json"], env=env,
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    doc = json.loads(run.output)
    assert doc["status"] == "scored" and doc["team"] == "laptop", doc
    bad = CliRunner().invoke(
        cli, ["--lang", "en", "submit", "outpatient_forecast", str(csv_file), "--hub", hub.url, "--token", "nope"],
        env=env,
    )  # fmt: skip
    assert bad.exit_code == 1 and "token" in bad.output.lower() and "Traceback" not in bad.output
