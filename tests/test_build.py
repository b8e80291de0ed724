"""Versions: immutable, atomically published, and never half-visible."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import duckdb
from factories import field, table

from sandbox.build import latest_version, versions
from sandbox.digests import sha256_file

FIELDS = [field("id", "integer"), field("value", "number"), field("label")]


def _big_csv(path, rows: int) -> None:
    duckdb.sql(
        f"COPY (SELECT i AS id, i * 0.5 AS value, 'label-' || (i % 97) AS label FROM range({rows}) t(i)) "
        f"TO '{path}' (HEADER)"
    ).fetchall()


def _checksums_match(paths, ds_id: str) -> bool:
    latest = paths.data_root / ds_id / "latest"
    doc = json.loads((latest / "catalog.json").read_text("utf-8"))
    return all(sha256_file(latest / f["path"]) == f["sha256"] for t in doc["tables"].values() for f in t["files"])


def test_versions_are_immutable_and_latest_flips(make_dataset, build, paths):
    ds = make_dataset({"t": table(FIELDS, primaryKey=["id"])}, {"data.csv": "id,value,label\n1,0.5,a\n2,1.5,b\n"})
    first = build(ds)
    assert (first.status, first.version) == ("built", 1)
    v1_bytes = (paths.data_root / ds.id / "v1" / "t.parquet").read_bytes()

    again = build(ds)
    assert (again.status, again.version) == ("up-to-date", 1)  # nothing changed, nothing rebuilt

    (ds.folder / "data.csv").write_text("id,value,label\n1,0.5,a\n2,1.5,b\n3,2.5,c\n")
    second = build(ds)
    assert (second.status, second.version) == ("built", 2)
    assert latest_version(paths.data_root, ds.id) == 2 and versions(paths.data_root, ds.id) == [1, 2]
    assert (paths.data_root / ds.id / "v1" / "t.parquet").read_bytes() == v1_bytes
    assert duckdb.sql(f"SELECT count(*) FROM '{paths.data_root}/{ds.id}/latest/t.parquet'").fetchall()[0][0] == 3
    assert build(ds, force=True).version == 3

    root = json.loads((paths.data_root / "catalog.json").read_text("utf-8"))
    assert root["datasets"][ds.id]["latest"] == 3
    assert [v["rows"] for v in root["datasets"][ds.id]["versions"]] == [2, 3, 3]
    assert _checksums_match(paths, ds.id)

    # Their modes say so too: nobody, not even the builder's own account, writes into a version.
    v1 = paths.data_root / ds.id / "v1"
    assert {oct(p.stat().st_mode & 0o777) for p in v1.rglob("*") if p.is_file()} == {"0o444"}
    assert oct(v1.stat().st_mode & 0o777) == "0o555"


def test_failed_build_leaves_previous_version_served(make_dataset, build, paths):
    ds = make_dataset({"t": table(FIELDS, primaryKey=["id"])}, {"data.csv": "id,value,label\n1,0.5,a\n"})
    assert build(ds).version == 1
    (ds.folder / "data.csv").write_text("id,value,label\n1,0.5,a\n1,oops,b\n")
    failed = build(ds)
    assert failed.status == "failed"
    assert latest_version(paths.data_root, ds.id) == 1 and versions(paths.data_root, ds.id) == [1]
    assert not list((paths.data_root / ds.id).glob(".tmp-*"))
    assert _checksums_match(paths, ds.id)


def test_build_killed_midway_keeps_previous_version_intact(make_dataset, build, paths, tmp_path):
    src = tmp_path / "big.csv"
    _big_csv(src, 2_000)
    ds = make_dataset({"t": table(FIELDS, primaryKey=["id"])}, {"data.csv": src.read_bytes()})
    assert build(ds).version == 1
    _big_csv(ds.folder / "data.csv", 3_000_000)  # a build long enough to interrupt

    cmd = [
        sys.executable,
        "-c",
        "from hub.cli import main; main()",
        "--data-root",
        str(paths.data_root),
        "--private-root",
        str(paths.private_root),
        "--datasets-dir",
        str(paths.datasets_dir),
        "datasets",
        "build",
        ds.id,
        "--json",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    home = paths.data_root / ds.id
    deadline = time.monotonic() + 300  # a loaded 2-core machine starts slowly
    saw_partial_output = False
    while time.monotonic() < deadline and proc.poll() is None:
        tmp = list(home.glob(".tmp-*"))
        if tmp and any(tmp[0].iterdir()):
            saw_partial_output = True
            break
        if tmp:
            # While the new version is being written, readers still get v1, whole.
            assert latest_version(paths.data_root, ds.id) == 1 and _checksums_match(paths, ds.id)
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert saw_partial_output, "the build finished before it could be interrupted; make the input larger"

    # Killed while writing: the half-written version is invisible, v1 is served and intact.
    assert latest_version(paths.data_root, ds.id) == 1
    assert versions(paths.data_root, ds.id) == [1]
    assert _checksums_match(paths, ds.id)
    assert duckdb.sql(f"SELECT count(*) FROM '{home}/latest/t.parquet'").fetchall()[0][0] == 2_000

    # The next build cleans up after the killed one and publishes normally.
    result = build(ds)
    assert (result.status, result.version) == ("built", 2)
    assert not list(home.glob(".tmp-*"))
    assert duckdb.sql(f"SELECT count(*) FROM '{home}/latest/t.parquet'").fetchall()[0][0] == 3_000_000
    assert _checksums_match(paths, ds.id)


def test_catalog_records_rows_bytes_and_sha256(make_dataset, build, paths):
    ds = make_dataset({"t": table(FIELDS, primaryKey=["id"])}, {"data.csv": "id,value,label\n2,1.5,b\n1,0.5,a\n"})
    build(ds)
    doc = json.loads((paths.data_root / ds.id / "latest" / "catalog.json").read_text("utf-8"))
    t = doc["tables"]["t"]
    assert t["rows"] == 2 and t["files"][0]["path"] == "t.parquet"
    assert t["bytes"] == (paths.data_root / ds.id / "latest" / "t.parquet").stat().st_size
    assert doc["descriptor_version"] == "1.0.0" and doc["access_rights"] == "PUBLIC"
    # sorted by the primary key even though the source was not
    assert duckdb.sql(f"SELECT id FROM '{paths.data_root}/{ds.id}/latest/t.parquet'").fetchall() == [(1,), (2,)]


def test_partitioned_table_is_hive_partitioned(make_dataset, build, paths):
    fields = [field("day", "date"), field("city"), field("n", "integer")]
    ds = make_dataset(
        {"t": table(fields, primaryKey=["day", "city"], partition_by=["city"])},
        {"data.csv": "day,city,n\n2024-01-01,北京,1\n2024-01-01,上海,2\n2024-01-02,北京,3\n"},
    )
    assert build(ds).status == "built"
    parts = sorted(p.parent.name for p in (paths.data_root / ds.id / "latest" / "t").rglob("*.parquet"))
    assert len(parts) == 2 and all(p.startswith("city=") for p in parts)  # folder names are URL-escaped
    back = duckdb.sql(
        f"SELECT city, sum(n) FROM read_parquet('{paths.data_root}/{ds.id}/latest/t/*/*.parquet', "
        "hive_partitioning=true) GROUP BY city ORDER BY city"
    ).fetchall()
    assert back == [("上海", 2), ("北京", 4)]
    assert _checksums_match(paths, ds.id)
