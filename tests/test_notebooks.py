"""The sandbox's notebooks, run in a real kernel against the demo catalog.

Each notebook is executed once per module with ``nbclient`` (kernel ``python3``, which
jupyter_client starts with this interpreter, so the project's venv). The kernel inherits
the environment a contestant's kernel gets from the spawner: the data and private roots
and a home of its own. The tests then read the outputs a person would see, and check the
numbers against DuckDB reading the demo Parquet files directly, not through ``sandbox``.

The getting-started notebook comes first; then the starter notebook of each challenge
(``sandbox/notebooks/<challenge id>.ipynb``), run without its ``submit``-tagged cell: the
submission file it saves must pass the submission checks, and its validation score must
beat a trivial baseline computed here.
"""

from __future__ import annotations

import ast
import html
import json
import math
import re
import time
from types import SimpleNamespace

import duckdb
import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient

from leaderboard import contest
from leaderboard.scoring import score_file
from sandbox.descriptor import load_all
from sandbox.settings import PROJECT_ROOT

NOTEBOOK = PROJECT_ROOT / "sandbox" / "notebooks" / "getting_started.ipynb"
# The Vega-Lite versions JupyterLab 4 renders with its built-in renderer, so without network.
JUPYTERLAB_VEGALITE = {f"application/vnd.vegalite.v{n}+json" for n in (3, 4, 5)}
CJK = re.compile(r"[\u3400-\u9fff]")


def run_notebook(nb, demo, home) -> None:
    """Run every cell of ``nb`` in a kernel with a contestant's environment, working folder ``home``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("CONTESTHUB_DATA_ROOT", str(demo.data_root))
        mp.setenv("CONTESTHUB_PRIVATE_ROOT", str(demo.private_root))
        mp.setenv("CONTESTHUB_THREADS", "2")
        for name in ("CONTESTHUB_MEMORY_LIMIT", "CONTESTHUB_SPILL_DIR", "MEM_LIMIT", "CPU_LIMIT"):
            mp.delenv(name, raising=False)
        NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(home)}}).execute()


@pytest.fixture(scope="module")
def executed(demo, tmp_path_factory):
    """The notebook after running every cell, as a contestant's kernel would."""
    home = tmp_path_factory.mktemp("home")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    run_notebook(nb, demo, home)
    return nb


# --- reading outputs -----------------------------------------------------------------------


def cell(nb, snippet: str):
    """The code cell whose source is ``snippet``, or else the one cell that contains it."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    found = [c for c in code if c.source.strip() == snippet] or [c for c in code if snippet in c.source]
    assert len(found) == 1, f"{len(found)} code cells contain {snippet!r}"
    return found[0]


def result(c) -> dict:
    """The data bundle of the cell's result (its ``Out[n]``)."""
    results = [o for o in c.outputs if o.output_type == "execute_result"]
    assert len(results) == 1, [o.output_type for o in c.outputs]
    return results[0].data


def table(page: str) -> list[dict[str, str]]:
    """The rows of the first HTML table in ``page`` (pandas' ``to_html``), keyed by header; "" is the index."""
    head, body = page.split("<tbody>", 1)
    header = [html.unescape(h.strip()) for h in re.findall(r"<th[^>]*>(.*?)</th>", head.split("<thead>", 1)[1], re.S)]
    rows = []
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body.split("</tbody>", 1)[0], re.S):
        cells = [html.unescape(v.strip()) for v in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)]
        assert len(cells) == len(header), (header, cells)
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def assert_bilingual(text: str) -> None:
    """Chinese first, then English: the first word (code spans aside) is Chinese, and English follows."""
    prose = re.sub(r"`[^`]*`", "", text)
    first = re.search(r"[A-Za-z\u3400-\u9fff]", prose)
    assert first and CJK.match(first.group()), text
    assert re.search(r"[A-Za-z]{3,} [A-Za-z]{3,}", prose), text


def parquet(demo, ds_id: str, tname: str, version: int | None = None) -> str:
    """``read_parquet([...])`` over a published table's files, found from its catalog.json."""
    folder = demo.data_root / ds_id / (f"v{version}" if version else "latest")
    files = json.loads((folder / "catalog.json").read_text("utf-8"))["tables"][tname]["files"]
    return f"read_parquet({[str(folder / f['path']) for f in files]!r}, hive_partitioning=true)"


# --- the stored notebook -------------------------------------------------------------------


def test_stored_notebook_is_clean_and_bilingual():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4 and nb.metadata.kernelspec.name == "python3"
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None, c.source
        else:
            assert_bilingual(c.source)
    assert "提交预测 / Submitting predictions" in nb.cells[-1].source and "sandbox.submit" in nb.cells[-1].source
    assert not any("sandbox.submit" in c.source for c in nb.cells if c.cell_type == "code")


# --- the executed notebook -----------------------------------------------------------------


def test_every_cell_ran_cleanly(executed):
    silent = []
    for c in executed.cells:
        if c.cell_type != "code":
            continue
        for o in c.outputs:
            assert o.output_type != "error", (c.source, o.get("ename"), o.get("evalue"))
            assert not (o.output_type == "stream" and o.name == "stderr"), (c.source, o.text)
            # sandbox prints its errors (zh and en, in red) instead of raising a traceback
            assert not (o.output_type == "stream" and "\x1b[31m" in o.text), (c.source, o.text)
        if not c.outputs:
            silent.append(c.source.splitlines()[0])
    assert silent == ["import sandbox", "import altair as alt"]  # only the set-up cells show nothing


def test_what_is_open(executed, demo):
    listed = {row["id"] for row in table(result(cell(executed, "sandbox.datasets()"))["text/html"])}
    # Every dataset open without conditions; conditional ones only for approved teams (none here).
    assert listed == {d.id for d in load_all(PROJECT_ROOT / "datasets") if d.tier == "unconditional"}
    assert "hospital_outpatient" in result(cell(executed, "sandbox.datasets()"))["text/plain"]
    outpatient = table(result(cell(executed, 'sandbox.search("门诊")'))["text/html"])
    assert outpatient[0]["id"] == "hospital_outpatient" and outpatient[0]["title_zh"] == "医院门诊就诊数据（模拟）"
    ridership = table(result(cell(executed, 'sandbox.search("ridership")'))["text/html"])
    assert [row["id"] for row in ridership] == ["metro_ridership"]


def test_describe_shows_units_and_definitions(executed):
    described = result(cell(executed, 'sandbox.describe("hospital_outpatient")'))
    page = described["text/html"]
    assert "医院门诊就诊数据（模拟） / Hospital outpatient visits (synthetic)" in page
    fee = next(row for row in table(page) if row["field"] == "fee_yuan")
    assert (fee["title_zh"], fee["unit"], fee["table"]) == ("就诊费用", "元 (CNY)", "visit_records")
    assert fee["definition_zh"] == "本次门诊的医疗费用总额（含医保支付和个人支付）"
    assert "fee_yuan" in described["text/plain"] and "元 (CNY)" in described["text/plain"]
    with_units = table(result(cell(executed, ".fields()"))["text/html"])
    assert {row["field"]: row["unit"] for row in with_units} == {
        "beds": "张 (beds)",
        "outpatient_visits": "人次 (visits)",
        "emergency_visits": "人次 (visits)",
        "age": "岁 (years)",
        "fee_yuan": "元 (CNY)",
    }


def test_describe_shows_one_output(executed):
    outputs = cell(executed, 'sandbox.describe("hospital_outpatient")').outputs
    assert [o.output_type for o in outputs] == ["execute_result"]


def test_sql_join_per_province_matches_the_parquet_files(executed, demo):
    expected = duckdb.sql(f"""
        SELECT h.province, count(DISTINCT h.hospital_id) AS hospitals, sum(v.outpatient_visits) AS visits,
               count(DISTINCT v.date) AS days
        FROM {parquet(demo, "hospital_outpatient", "daily_visits")} AS v
        JOIN {parquet(demo, "hospital_outpatient", "hospitals")} AS h ON v.hospital_id = h.hospital_id
        GROUP BY h.province ORDER BY visits DESC""").fetchall()
    shown = table(result(cell(executed, "by_province = sandbox.sql("))["text/html"])
    assert [row["province"] for row in shown] == [province for province, *_ in expected]
    assert len(shown) == 10
    for row, (_, hospitals, visits, days) in zip(shown, expected, strict=True):
        assert int(row["hospitals"]) == hospitals
        assert int(row["visits"]) == visits  # an integer, as shown: the notebook casts sum() to BIGINT
        assert abs(float(row["visits_per_day"]) - visits / days) <= 0.5


def test_spring_festival_dip_and_weekday_effect(executed, demo):
    visits = parquet(demo, "hospital_outpatient", "daily_visits")
    expected = duckdb.sql(f"""
        SELECT strftime(date - CAST(isodow(date) - 1 AS INTEGER), '%Y-%m-%d') AS monday,
               sum(outpatient_visits) AS visits
        FROM {visits} WHERE date BETWEEN DATE '2024-01-01' AND DATE '2024-03-31'
        GROUP BY monday HAVING count(DISTINCT date) = 7 ORDER BY monday""").fetchall()
    weeks = table(result(cell(executed, "AS vs_median"))["text/html"])
    assert [(row["week_start"], int(row["visits"])) for row in weeks] == expected
    lowest = min(weeks, key=lambda row: int(row["visits"]))
    assert lowest["week_start"] == "2024-02-12"  # the week after the Spring Festival, Saturday 10 February 2024
    vs_median = {row["week_start"]: float(row["vs_median"]) for row in weeks}
    assert vs_median["2024-02-05"] < 0.7 and vs_median["2024-02-12"] < 0.5

    days = table(result(cell(executed, "AS vs_mean"))["text/html"])
    assert [row["weekday"] for row in days] == ["周一", "周二", "周三", "周四", "周五", "周六", "周日"]
    means = [float(row["mean_visits"]) for row in days]
    assert means == sorted(means, reverse=True)  # Monday busiest, Sunday quietest
    [(monday,)] = duckdb.sql(f"SELECT avg(outpatient_visits) FROM {visits} WHERE isodow(date) = 1").fetchall()
    assert abs(means[0] - monday) <= 0.05
    assert all(float(row["vs_mean"]) < 0.8 for row in days[5:])


def test_plot_renders_offline_in_jupyterlab(executed, demo):
    bundle = result(cell(executed, "alt.Chart(weekly"))
    mimes = set(bundle) & JUPYTERLAB_VEGALITE
    assert mimes, f"no Vega-Lite output JupyterLab renders offline: {sorted(bundle)}"
    assert "text/html" not in bundle  # altair's HTML output loads vega from a CDN
    spec = bundle[mimes.pop()]
    assert spec["mark"]["type"] == "line"
    assert spec["encoding"]["y"]["title"] == "门诊人次 / Outpatient visits"
    assert "url" not in spec["data"]  # the data is in the spec, not fetched
    (points,) = spec["datasets"].values()
    [(weeks,)] = duckdb.sql(f"""
        SELECT count(*) FROM (SELECT date_trunc('week', date) AS w
        FROM {parquet(demo, "hospital_outpatient", "daily_visits")} GROUP BY w HAVING count(DISTINCT date) = 7)
        """).fetchall()
    assert len(points) == weeks > 80  # 2023-01 to 2024-09: the last quarter is the test set


def test_dask_reads_one_city(executed, demo):
    lazy = result(cell(executed, "beijing = sandbox.dask("))["text/plain"]
    assert "npartitions=1" in lazy and "entries" in lazy and "city" not in lazy
    expected = duckdb.sql(f"""
        SELECT line, avg(entries) FROM {parquet(demo, "metro_ridership", "daily_entries")}
        WHERE city = '北京' GROUP BY line ORDER BY 2 DESC LIMIT 5""").fetchall()
    text = result(cell(executed, 'beijing.groupby("line")'))["text/plain"]
    shown = [(m[1], float(m[2])) for m in re.finditer(r"^(\d+号线)\s+([\d.]+)$", text, re.M)]
    assert [line for line, _ in shown] == [line for line, _ in expected]
    for (_, got), (_, want) in zip(shown, expected, strict=True):
        assert abs(got - want) <= 0.5


def test_pinned_version_equals_version_1(executed, demo):
    [(rows, visits)] = duckdb.sql(
        f"SELECT count(*), sum(outpatient_visits) FROM {parquet(demo, 'hospital_outpatient', 'daily_visits', 1)}"
    ).fetchall()
    (shown,) = table(result(cell(executed, 'version={"hospital_outpatient": 1}'))["text/html"])
    assert (int(shown["n_rows"]), int(shown["visits"])) == (rows, visits)


# --- the challenges' starter notebooks -----------------------------------------------------

CHALLENGES = (
    "outpatient_forecast",
    "emergency_visit",
    "department_triage",
    "claims_forecast",
    "primary_entrants",
    "scenic_visitors_forecast",
    "mode_ranking",
)
# The starters validate on the last part of their training data: they fit on the rows up to the
# cutoff and score the rows after it. The forecast's days run to 30 September 2024, its cutoff is
# 4 August; visit dates are published to the quarter, so the visit challenges, whose training
# data ends with the second quarter of 2024, fit up to the first quarter and score the second.
CUTOFF = {  # table: (time column, cutoff as SQL, the validation period the notebook must print)
    "daily_visits": ("date", "DATE '2024-08-04'", ("2024-08-05", "2024-09-30")),
    "visit_records": ("visit_date", "'2024-Q1'", ("2024-Q2", "2024-Q2")),
    "monthly_employment": ("month", "DATE '2024-03-31'", ("2024-04-01", "2024-06-01")),
    "county_schools": ("school_year", "2022", ("2023", "2023")),
    "daily_visitors": ("date", "DATE '2024-08-04'", ("2024-08-05", "2024-09-30")),
    "alternatives": ("individual", "100", ("101", "150")),  # travellers, not days: fit on 1-100
}
SCORE_LINE = re.compile(r"validation (RMSE|ROC AUC|macro F1|MAP@3): (\S+)")
PERIOD_LINE = re.compile(r"validation period: (\S+) – (\S+), (\d+) ")


def starter_path(challenge_id: str):
    return NOTEBOOK.parent / f"{challenge_id}.ipynb"


def challenge_of(challenge_id: str) -> contest.Challenge:
    return contest.load(PROJECT_ROOT / "config" / "contest.toml").challenge(challenge_id)


def is_submit(c) -> bool:
    return "submit" in c.metadata.get("tags", [])


@pytest.fixture(scope="module", params=CHALLENGES)
def starter(request, demo, tmp_path_factory):
    """A challenge's starter notebook after running every cell but the ``submit`` one.

    ``sandbox.submit`` talks to the submission service, which the test does not have, so the
    cell tagged ``submit`` is taken out of the notebook before it runs.
    """
    challenge = challenge_of(request.param)
    home = tmp_path_factory.mktemp(f"home-{challenge.id}")
    nb = nbformat.read(starter_path(challenge.id), as_version=4)
    nb.cells = [c for c in nb.cells if not is_submit(c)]
    start = time.monotonic()
    run_notebook(nb, demo, home)
    return SimpleNamespace(challenge=challenge, nb=nb, home=home, seconds=time.monotonic() - start)


def printed(nb, snippet: str) -> str:
    """What the code cell containing ``snippet`` printed."""
    return "".join(o.text for o in cell(nb, snippet).outputs if o.output_type == "stream" and o.name == "stdout")


@pytest.mark.parametrize("challenge_id", CHALLENGES)
def test_stored_starter_is_clean_and_bilingual(challenge_id):
    challenge = challenge_of(challenge_id)
    nb = nbformat.read(starter_path(challenge_id), as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4 and nb.metadata.kernelspec.name == "python3"
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None, c.source
            assert "sklearn" not in c.source  # scikit-learn is not installed in a sandbox
        else:
            assert_bilingual(c.source)
    title = nb.cells[0].source.splitlines()[0]
    assert title.startswith("# ") and challenge.title["zh"] in title and challenge.title["en"] in title
    assert f"`{challenge.dataset}.{challenge.table}_test`" in nb.cells[0].source
    assert any(f'"submission_{challenge_id}.csv"' in c.source for c in nb.cells if c.cell_type == "code")
    # The last cell submits, the one before says what that costs; nothing else submits.
    explain, submit = nb.cells[-2:]
    assert submit.cell_type == "code" and is_submit(submit)
    assert submit.source == f'sandbox.submit("{challenge_id}", predictions)'
    assert explain.cell_type == "markdown"
    for words in ("提交服务", "今天", "次数", "submission service", "today's", "quota"):
        assert words in explain.source, words
    assert [c for c in nb.cells if "sandbox.submit" in c.source and c.cell_type == "code"] == [submit]


@pytest.mark.parametrize("challenge_id", CHALLENGES)
def test_starter_computes_the_challenges_metric(challenge_id):
    """The metric function the notebook defines agrees with the contest's scorer."""
    challenge = challenge_of(challenge_id)
    nb = nbformat.read(starter_path(challenge_id), as_version=4)
    name = {"rmse": "rmse", "roc_auc": "roc_auc", "f1_macro": "f1_macro", "map_at_k": "map_at_k"}[challenge.metric]
    defs = [
        node
        for c in nb.cells
        if c.cell_type == "code"
        for node in ast.parse(c.source).body
        if isinstance(node, ast.FunctionDef) and node.name == name
    ]
    assert len(defs) == 1, name
    namespace = {"np": np, "pd": pd}
    exec(compile(ast.Module(body=defs, type_ignores=[]), name, "exec"), namespace)
    rng = np.random.default_rng(7)
    if challenge.metric == "rmse":
        y, p = rng.normal(500, 100, 1000), rng.normal(500, 100, 1000)
    elif challenge.metric == "map_at_k":  # per traveller: the chosen modes, and the modes in ranked order
        y = [list(rng.choice([1, 2, 3, 4], rng.integers(0, 3), replace=False)) for _ in range(300)]
        p = [list(rng.permutation([1, 2, 3, 4])) for _ in range(300)]
        assert namespace[name](y, p, 3) == pytest.approx(challenge.scorer(y, p, **challenge.metric_params), rel=1e-9)
        return
    elif challenge.metric == "roc_auc":
        y, p = rng.integers(0, 2, 1000), rng.integers(0, 20, 1000) / 20  # with ties
    else:
        labels = np.array(["内科", "外科", "儿科", "急诊科"])
        y, p = labels[rng.integers(0, 4, 1000)], labels[rng.integers(0, 3, 1000)]  # one label never predicted
    assert namespace[name](y, p) == pytest.approx(challenge.scorer(y, p), rel=1e-9)


def test_starter_ran_cleanly_and_quickly(starter):
    for c in starter.nb.cells:
        if c.cell_type != "code":
            continue
        for o in c.outputs:
            assert o.output_type != "error", (c.source, o.get("ename"), o.get("evalue"))
            assert not (o.output_type == "stream" and o.name == "stderr"), (c.source, o.text)
            assert not (o.output_type == "stream" and "\x1b[31m" in o.text), (c.source, o.text)
    # About 5 s on two cores with the demo data, kernel start included; the aim is under 20 s.
    assert starter.seconds < 60


def test_starter_saves_a_valid_submission(starter, demo):
    challenge = starter.challenge
    path = starter.home / f"submission_{challenge.id}.csv"
    assert path.exists(), sorted(p.name for p in starter.home.iterdir())
    saved = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(saved.columns) == [*challenge.id_columns, challenge.prediction]
    assert (saved != "").all().all(), "empty cells"
    test = parquet(demo, challenge.dataset, f"{challenge.table}_test")
    [(n_test,)] = duckdb.sql(f"SELECT count(*) FROM {test}").fetchall()
    assert len(saved) == n_test
    ids = ", ".join(challenge.id_columns)
    [(missing, unknown)] = duckdb.sql(f"""
        SELECT count(*) FILTER (WHERE s.{challenge.id_columns[0]} IS NULL),
               count(*) FILTER (WHERE t.{challenge.id_columns[0]} IS NULL)
        FROM (SELECT DISTINCT {ids} FROM read_csv({str(path)!r}, all_varchar = true)) AS s
        FULL JOIN (SELECT {", ".join(f"CAST({c} AS VARCHAR) AS {c}" for c in challenge.id_columns)} FROM {test}) AS t
        USING ({ids})""").fetchall()
    assert (missing, unknown) == (0, 0)  # with len(saved) == n_test: every test row once
    predicted = saved[challenge.prediction]
    if challenge.scorer.input == "label":
        [(labels,)] = duckdb.sql(
            f"SELECT list(DISTINCT {challenge.target}) FROM {parquet(demo, challenge.dataset, challenge.table)}"
        ).fetchall()
        assert set(predicted) <= set(labels) and len(labels) == 10
        assert predicted.nunique() >= 2  # not just the most frequent department
    elif challenge.group is not None:  # a ranking: each traveller's scores all differ
        values = predicted.astype(float)
        assert np.isfinite(values).all()
        assert (saved.assign(v=values).groupby(challenge.group)["v"].nunique() == 4).all()
    else:
        values = predicted.astype(float)
        assert np.isfinite(values).all() and (values >= 0).all()
        if challenge.scorer.input == "probability":
            assert (values <= 1).all() and values.nunique() > 10
    # The submission service's own checks accept the file.
    scored = score_file(challenge, path, demo)
    assert scored.valid, scored.errors
    assert scored.rows == n_test and math.isfinite(scored.public_score)


def test_starter_validation_beats_a_trivial_baseline(starter, demo):
    challenge = starter.challenge
    text = printed(starter.nb, "validation period")
    rows = parquet(demo, challenge.dataset, challenge.table)
    day, cutoff, expected = CUTOFF[challenge.table]
    [(first, last, n_valid)] = duckdb.sql(
        f"SELECT CAST(min({day}) AS VARCHAR), CAST(max({day}) AS VARCHAR), count(*) FROM {rows} WHERE {day} > {cutoff}"
    ).fetchall()
    period = PERIOD_LINE.search(text)
    assert period, text
    assert period.groups() == (first, last, str(n_valid)) == (*expected, str(n_valid))
    found = SCORE_LINE.search(text)
    assert found, text
    score = float(found[2])
    assert math.isfinite(score), text
    if challenge.metric == "rmse":
        assert found[1] == "RMSE"
        # predicting the mean of the training rows for every validation row
        y = challenge.target
        [(trivial,)] = duckdb.sql(f"""
            SELECT sqrt(avg(power(v.{y} - m.mean, 2)))
            FROM {rows} AS v, (SELECT avg({y}) AS mean FROM {rows} WHERE {day} <= {cutoff}) AS m
            WHERE v.{day} > {cutoff}""").fetchall()
        assert 0 < score < trivial / 2, (score, trivial)
    elif challenge.metric == "map_at_k":
        assert found[1] == "MAP@3"
        # every traveller's modes in the order of their share of choices in training
        [(trivial,)] = duckdb.sql(f"""
            WITH share AS (SELECT mode, avg(choice) AS s FROM {rows} WHERE individual <= {cutoff} GROUP BY mode),
            ranked AS (
                SELECT v.individual, v.choice,
                       row_number() OVER (PARTITION BY v.individual ORDER BY s.s DESC, v.mode) AS r
                FROM {rows} AS v JOIN share AS s USING (mode) WHERE v.individual > {cutoff})
            SELECT avg(CASE WHEN r <= 3 THEN 1.0 / r ELSE 0 END) FROM ranked WHERE choice = 1""").fetchall()
        assert trivial + 0.1 < score <= 1, (score, trivial)
    elif challenge.metric == "roc_auc":
        assert found[1] == "ROC AUC"
        assert 0.6 < score <= 1, score  # one probability for every visit gives 0.5
    else:
        assert found[1] == "macro F1"
        # the most frequent training department for every validation visit: F1 of that class over the classes
        [(trivial,)] = duckdb.sql(f"""
            WITH top AS (
                SELECT department FROM {rows} WHERE visit_date <= {cutoff}
                GROUP BY department ORDER BY count(*) DESC LIMIT 1),
            valid AS (SELECT department FROM {rows} WHERE visit_date > {cutoff})
            SELECT 2 * count(*) FILTER (WHERE department = (SELECT department FROM top))
                   / (count(*) + count(*) FILTER (WHERE department = (SELECT department FROM top)))
                   / count(DISTINCT department)
            FROM valid""").fetchall()
        assert 1.5 * trivial < score <= 1, (score, trivial)


def test_starter_chart_renders_offline(starter):
    bundles = [
        o.data
        for c in starter.nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "execute_result" and set(o.data) & JUPYTERLAB_VEGALITE
    ]
    assert len(bundles) == 1  # one chart
    (bundle,) = bundles
    assert "text/html" not in bundle  # altair's HTML output loads vega from a CDN
    spec = bundle[(set(bundle) & JUPYTERLAB_VEGALITE).pop()]
    assert "url" not in spec["data"]  # the data is in the spec, not fetched
    (points,) = spec["datasets"].values()
    assert len(points) > 10
    title = spec["title"]["text"] if isinstance(spec["title"], dict) else spec["title"]
    assert CJK.search(title) and " / " in title
