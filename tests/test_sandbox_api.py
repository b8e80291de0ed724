"""The contestant API on the demo catalog: values checked against an independent pandas reading."""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest
from factories import field, table

import sandbox
from sandbox.api import SandboxError
from sandbox.errors import NotFound


def _parquet(demo, ds_id: str, tname: str) -> pd.DataFrame:
    doc = json.loads((demo.data_root / ds_id / "latest" / "catalog.json").read_text("utf-8"))
    files = doc["tables"][tname]["files"]
    return pd.concat(pd.read_parquet(demo.data_root / ds_id / "latest" / f["path"]) for f in files)


def test_datasets_search_describe(contestant):
    df = sandbox.datasets()
    assert {"hospital_outpatient", "rand_hie", "metro_ridership"} <= set(df["id"])
    assert df.set_index("id").loc["rand_hie", "rows"] == 20190
    assert sandbox.search("门诊")["id"].iloc[0] == "hospital_outpatient"
    assert "us_employment" in set(sandbox.search("employment")["id"])
    d = sandbox.describe("hospital_outpatient")
    fields = d.fields().set_index(["table", "field"])
    assert fields.loc[("visit_records", "fee_yuan"), "unit"] == "元 (CNY)"
    assert fields.loc[("visit_records", "age"), "privacy"] == "quasi: age_band"
    text = str(d)
    assert "医院门诊就诊数据（模拟）" in text and "fee_yuan" in text and "元 (CNY)" in text
    assert "<table" in d._repr_html_() and "就诊费用" in d._repr_html_()


def test_sql_join_matches_pandas(contestant, demo):
    got = sandbox.sql("""
        SELECT h.province, sum(v.outpatient_visits) AS visits
        FROM hospital_outpatient.daily_visits v JOIN hospital_outpatient.hospitals h USING (hospital_id)
        WHERE v.date >= DATE '2024-01-01'
        GROUP BY h.province ORDER BY h.province""").df()
    visits, hospitals = (
        _parquet(demo, "hospital_outpatient", "daily_visits"),
        _parquet(demo, "hospital_outpatient", "hospitals"),
    )
    merged = visits[visits["date"] >= pd.Timestamp("2024-01-01").date()].merge(hospitals, on="hospital_id")
    expected = merged.groupby("province", as_index=False)["outpatient_visits"].sum().sort_values("province")
    assert got["province"].tolist() == expected["province"].tolist()
    assert got["visits"].tolist() == expected["outpatient_visits"].tolist()


def test_table_and_relation_outputs(contestant):
    rel = sandbox.table("rand_hie.visits")
    assert rel.aggregate("count(*)").fetchall() == [(20190,)]
    assert rel.columns[:3] == ["mdvis", "lncoins", "idp"]
    assert rel.limit(3).arrow().read_all().num_rows == 3  # DuckDB 2.0: .arrow() streams batches
    assert "first rows" in rel._repr_html_()


def test_queries_can_be_pinned_to_any_version(paths, make_dataset, build, tmp_path, monkeypatch):
    ds = make_dataset(
        {"t": table([field("id", "integer"), field("v", "integer")], primaryKey=["id"])}, {"data.csv": "id,v\n1,10\n"}
    )
    assert build(ds).version == 1
    (ds.folder / "data.csv").write_text("id,v\n1,10\n2,20\n")
    assert build(ds).version == 2
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CONTESTHUB_DATA_ROOT", str(paths.data_root))
    monkeypatch.setenv("CONTESTHUB_PRIVATE_ROOT", str(paths.private_root))
    sandbox.refresh()
    try:
        q = f"SELECT sum(v) FROM {ds.id}.t"
        assert sandbox.sql(q).fetchall() == [(30,)]
        assert sandbox.sql(q, version={ds.id: 1}).fetchall() == [(10,)]
        assert sandbox.sql(q, version={ds.id: 2}).fetchall() == [(30,)]
        with pytest.raises(NotFound, match="has no version 7"):
            sandbox.sql(q, version={ds.id: 7})
    finally:
        sandbox.refresh()


def test_confinement(contestant, demo):
    own = contestant / "my_features.csv"
    own.write_text("a\n1\n2\n")
    assert sandbox.sql(f"SELECT sum(a) FROM read_csv('{own}')").fetchall() == [(3,)]
    salt = demo.private_root / "secrets" / "hash_salt"
    assert salt.exists()
    for query in (
        f"SELECT * FROM read_csv('{salt}')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_parquet('https://example.org/x.parquet')",
    ):
        with pytest.raises(SandboxError) as info:
            sandbox.sql(query).fetchall()
        assert info.value.code == "access-denied"
        assert "reads only the open data" in info.value.en and "只能读取开放数据" in info.value.zh
    with pytest.raises(duckdb.Error, match="locked"):
        sandbox.sql("SET enable_external_access = true").fetchall()
    with pytest.raises(SandboxError) as info:
        sandbox.sql(f"COPY (SELECT 1) TO '{demo.private_root}/evil.csv'").fetchall()
    assert info.value.code == "access-denied" and not (demo.private_root / "evil.csv").exists()
    # Writing into the data root itself is stopped by the file system (a read-only mount, files
    # owned by the service account), not by DuckDB: that is tested with real accounts in the hub.


def test_memory_limit_gives_advice_and_the_session_survives(contestant, monkeypatch):
    monkeypatch.setenv("CONTESTHUB_MEMORY_LIMIT", "64MB")
    sandbox.refresh()
    with pytest.raises(SandboxError) as info:
        sandbox.sql("SELECT count(DISTINCT (i * 7919) % 100000000) FROM range(60000000) t(i)").fetchall()
    assert info.value.code == "memory-limit"
    assert "64 MiB" in info.value.en and "sandbox.dask" in info.value.en and "64 MiB" in info.value.zh
    assert sandbox.sql("SELECT count(*) FROM rand_hie.visits").fetchall() == [(20190,)]


def test_unknown_table_lists_the_naming_rule(contestant):
    with pytest.raises(NotFound) as info:
        sandbox.sql("SELECT * FROM hospital_outpatient.nope").fetchall()
    assert "<dataset>.<table>" in info.value.en and "sandbox.datasets()" in info.value.en
    with pytest.raises(NotFound, match=r"<dataset>\.<table>"):
        sandbox.table("visits")


def test_dask_prunes_columns_and_partitions(contestant, demo):
    beijing = sandbox.dask("metro_ridership.daily_entries", columns=["entries"], filters=[("city", "==", "北京")])
    assert list(beijing.columns) == ["entries"]
    q = "SELECT sum(entries) FROM metro_ridership.daily_entries WHERE city = '北京'"
    expected = sandbox.sql(q).fetchall()[0][0]
    assert int(beijing["entries"].sum().compute()) == expected
    assert beijing.npartitions < sandbox.dask("metro_ridership.daily_entries").npartitions
    visits = sandbox.dask("hospital_outpatient.daily_visits", columns=["outpatient_visits"])
    total = sandbox.sql("SELECT sum(outpatient_visits) FROM hospital_outpatient.daily_visits").fetchall()[0][0]
    assert int(visits["outpatient_visits"].sum().compute()) == total


def test_cli_sql_formats(contestant, demo, run_cli):
    q = "SELECT mode, CAST(sum(choice) AS INTEGER) AS chosen FROM travel_mode_choice.alternatives GROUP BY 1 ORDER BY 1"
    csv = run_cli("sql", q, "--format", "csv", root=demo)
    assert csv.exit_code == 0 and csv.output.splitlines() == ["mode,chosen", "1,36", "2,58", "3,17", "4,39"]
    js = run_cli("sql", q, "--format", "json", root=demo)
    assert json.loads(js.output)[0] == {"mode": 1, "chosen": 36}
    tab = run_cli("sql", q, root=demo)
    assert "chosen" in tab.output and "4 row(s)" in tab.output
    bad = run_cli("sql", "SELECT * FROM nowhere.t", root=demo)
    assert bad.exit_code == 1 and "Error:" in bad.output and "Traceback" not in bad.output


def test_integer_sums_stay_integers(contestant):
    df = sandbox.sql("SELECT sum(outpatient_visits) AS visits FROM hospital_outpatient.daily_visits").df()
    assert str(df["visits"].dtype) == "int64"
    huge = sandbox.sql("SELECT sum(x) AS s FROM (SELECT 9223372036854775807::BIGINT AS x UNION ALL SELECT 10)").df()
    assert float(huge["s"][0]) == 9223372036854775817.0  # too big for int64: DuckDB's own conversion


def test_pinned_queries_share_one_instance_and_its_memory_limit(contestant):
    latest = sandbox.sql("SELECT current_setting('memory_limit')").fetchall()
    pinned = sandbox.sql("SELECT current_setting('memory_limit')", version={"rand_hie": 1}).fetchall()
    assert latest == pinned
    catalogs = {r[0] for r in sandbox.sql("SELECT database_name FROM duckdb_databases()").fetchall()}
    assert {"memory", "pinned_1"} <= catalogs
    assert sandbox.sql("SELECT count(*) FROM rand_hie.visits", version={"rand_hie": 1}).fetchall() == [(20190,)]
