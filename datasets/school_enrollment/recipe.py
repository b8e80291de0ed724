"""Seeded generator of the synthetic county school enrollment dataset.

Model (documented so contestants can reason about it, and so the forecasting challenge has
structure to learn). Each county c has a type (市辖区 urban district, 县 rural county,
县级市 county-level city) and school year Y runs from September Y (2015 ... 2024).

* births(c, y) = b_c * N(y) / N(2015) * (1 + d_c)^(y - 2015) * lognormal(0, 3%), where N(y) is
  the national birth count (16.55 million in 2015, the two-child peak of 17.86 million in
  2016, then a steep fall to 9.0 million in 2023); b_c is log-normal around 5,000 (市辖区),
  5,500 (县) and 5,200 (县级市) times the province effect of ``synth.PROVINCES``; d_c is +1%
  (市辖区), -1.5% (县), 0% (县级市) a year: young parents move to the cities.
* children move too: a cohort grows by m_c a year of age, m_c = 1.02 (市辖区), 0.975 (县),
  1.0 (县级市), each ±0.5% per county, so a rural cohort has lost 14% by school entry.
* primary entrants in year Y are the cohort born in Y - 6 (× 0.995); primary enrollment is
  grades 1-6 (cohorts born Y - 6 ... Y - 11, × 0.99). Junior secondary entrants are the cohort
  born Y - 12 times the transition rate (县 96% in 2015 rising to 99%, others 99.5%);
  enrollment is grades 7-9 (born Y - 12 ... Y - 14) times the same rate. Counts carry 1%
  log-normal noise. The post-2017 birth decline reaches primary entrants in 2024 (born 2018)
  and, through the ``births`` column, is visible years ahead: entrants in 2025-2030 follow
  births in 2019-2024.
* teachers move slowly toward enrollment / target ratio (60% of the gap a year, and never
  fall more than 3% a year). Target ratios: primary 19.5 (市辖区), 14.0 (县), 16.5 (县级市);
  junior secondary 13.5, 11.0, 12.5; all fall 1.2% a year (more teachers per pupil), ±8% per
  county. Rural counties with shrinking enrollment therefore keep their teachers and their
  student-teacher ratio falls fastest.
* student_teacher_ratio = enrollment / teachers.
* graduation rates (% of final-year pupils who graduate) in 2015: primary 99.2% (县) ...
  99.8% (市辖区), junior secondary 93% (县), 96.5% (县级市), 98% (市辖区); by 2024 each closes
  60% of its gap to 99.9% (primary) or 99.5% (junior secondary); ±0.3 points of noise, at
  most 100.

Deliberate corruption, to exercise ``on_error: quarantine`` (documented so the quality
report can be checked): about 0.2% of the rows (at least 4) are damaged in the raw file.
The first half of them get a negative teacher count (the sign flipped, as by a data-entry
slip) in primary_teachers or junior_secondary_teachers: a constraint-error (minimum 0), so
the build quarantines the row. The other half get the text "N/A" in primary_graduation_rate
or junior_secondary_graduation_rate: "N/A" is a declared missing value, so the row is
published with that rate empty (graduation rates are not required).

``scale`` multiplies the number of counties (150 at scale 1, at least one). County codes
are the city code of ``synth.cities()`` plus two digits (01-20 市辖区, 21-80 县, 81-99 县级市,
as in GB/T 2260; 北京 and 上海 have districts only), so a city holds at most 99 counties and
the number of counties is capped at 22 × 99 = 2,178 (scale 14.5). The raw file
``school_enrollment.csv`` is GBK-encoded with Chinese headers, like an Excel export from a
Chinese education bureau.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from sandbox import synth

YEARS = np.arange(2015, 2025)
COUNTIES = 150
# National births, million (National Bureau of Statistics, rounded).
BIRTHS = {
    2000: 17.71,
    2001: 17.02,
    2002: 16.47,
    2003: 15.99,
    2004: 15.93,
    2005: 16.17,
    2006: 15.85,
    2007: 15.94,
    2008: 16.08,
    2009: 15.91,
    2010: 15.92,
    2011: 16.04,
    2012: 16.35,
    2013: 16.40,
    2014: 16.87,
    2015: 16.55,
    2016: 17.86,
    2017: 17.23,
    2018: 15.23,
    2019: 14.65,
    2020: 12.02,
    2021: 10.62,
    2022: 9.56,
    2023: 9.02,
    2024: 9.54,
}
TYPES = ["市辖区", "县", "县级市"]
SUFFIX = ["区", "县", "市"]
SLOTS = {0: range(1, 21), 1: range(21, 81), 2: range(81, 100)}
TYPE_SHARE = np.array([0.40, 0.40, 0.20])
MUNICIPALITIES = {"北京", "上海"}
BIRTH_BASE = np.array([5000.0, 5500.0, 5200.0])
BIRTH_DRIFT = np.array([0.010, -0.015, 0.0])
CHILD_MIGRATION = np.array([1.020, 0.975, 1.000])
RATIO_PRIMARY = np.array([19.5, 14.0, 16.5])
RATIO_JUNIOR = np.array([13.5, 11.0, 12.5])
GRAD_PRIMARY = np.array([99.8, 99.2, 99.5])
GRAD_JUNIOR = np.array([98.0, 93.0, 96.5])
NAME_1 = list("东西南北新安永长平清龙金宝兴福康和丰泰宁盛华云青")
NAME_2 = list("城湖山阳江河水安丰宁源川溪林台桥州武昌德化")
CORRUPT_SHARE = 0.002
HEADER = {
    "school_year": "学年",
    "province": "省份",
    "city": "城市",
    "county_code": "区县代码",
    "county_name": "区县名称",
    "county_type": "区县类型",
    "births": "出生人口",
    "primary_entrants": "小学招生数",
    "primary_enrollment": "小学在校生数",
    "primary_teachers": "小学专任教师数",
    "primary_student_teacher_ratio": "小学生师比",
    "primary_graduation_rate": "小学毕业率",
    "junior_secondary_entrants": "初中招生数",
    "junior_secondary_enrollment": "初中在校生数",
    "junior_secondary_teachers": "初中专任教师数",
    "junior_secondary_student_teacher_ratio": "初中生师比",
    "junior_secondary_graduation_rate": "初中毕业率",
}
ROWS_AT_SCALE_1 = COUNTIES * len(YEARS)


def _allocate(rng: np.random.Generator, n: int, weights: np.ndarray) -> np.ndarray:
    """Counties per city: at least one each when there are enough, at most 99."""
    k = len(weights)
    counts = np.zeros(k, dtype=int)
    if n < k:
        counts[rng.choice(k, n, replace=False, p=weights / weights.sum())] = 1
        return counts
    counts[:] = 1
    for _ in range(n - k):
        open_ = counts < 99
        p = np.where(open_, weights, 0.0)
        counts[rng.choice(k, p=p / p.sum())] += 1
    return counts


def _counties(rng: np.random.Generator, n: int) -> list[tuple[str, str, str, str, int, float]]:
    """(province, city, county code, county name, type index, province effect) per county."""
    places = synth.cities()
    counts = _allocate(rng, n, np.array([p[4] for p in places]))
    out = []
    for (province, _, city, city_code, size), k in zip(places, counts, strict=True):
        if not k:
            continue
        if city in MUNICIPALITIES:
            slots = [(s, 0) for s in range(1, k + 1)]
        else:
            want = np.floor(TYPE_SHARE * k).astype(int)
            want[1] += k - want.sum()
            slots = []
            for t in (0, 1, 2):
                slots += [(s, t) for s in list(SLOTS[t])[: want[t]]]
            spare = [(s, t) for t in (1, 0, 2) for s in SLOTS[t] if (s, t) not in slots]
            slots = sorted(slots + spare[: k - len(slots)])
        stems = rng.permutation(len(NAME_1) * len(NAME_2))
        for j, (suffix, t) in enumerate(slots):
            a, b = divmod(int(stems[j]), len(NAME_2))
            out.append((province, city, f"{city_code}{suffix:02d}", f"{NAME_1[a]}{NAME_2[b]}{SUFFIX[t]}", t, size))
    return out


def _teachers(rng: np.random.Generator, enrollment: np.ndarray, target_ratio: np.ndarray) -> np.ndarray:
    """Teachers adjust 60% of the way to enrollment / target ratio a year, falling at most 3%."""
    target = enrollment / target_ratio
    out = np.empty_like(target)
    out[:, 0] = target[:, 0] * rng.lognormal(0, 0.05, len(target))
    for y in range(1, target.shape[1]):
        step = out[:, y - 1] + 0.6 * (target[:, y] - out[:, y - 1])
        out[:, y] = np.maximum(step, 0.97 * out[:, y - 1])
    return np.maximum(np.round(out * rng.lognormal(0, 0.01, target.shape)), 1).astype(np.int64)


def generate(out: Path, *, seed: int, scale: float = 1.0) -> None:
    rng = np.random.default_rng(seed)
    n = int(min(max(1, round(COUNTIES * scale)), 99 * len(synth.cities())))
    counties = _counties(rng, n)
    kind = np.array([c[4] for c in counties])
    size = np.array([c[5] for c in counties])
    n_years = len(YEARS)

    # Births 2000-2024 per county.
    birth_years = np.array(sorted(BIRTHS))
    national = np.array([BIRTHS[y] for y in birth_years]) / BIRTHS[2015]
    b = BIRTH_BASE[kind] * size * rng.lognormal(0, 0.4, n)
    births = (
        b[:, None]
        * national[None, :]
        * (1 + BIRTH_DRIFT[kind])[:, None] ** (birth_years - 2015)[None, :]
        * rng.lognormal(0, 0.03, (n, len(birth_years)))
    )
    migration = CHILD_MIGRATION[kind] + rng.uniform(-0.005, 0.005, n)

    def cohort(born: np.ndarray) -> np.ndarray:
        """Children born in year ``born`` (per county x school year) still in the county in that year."""
        idx = born - birth_years[0]
        return births[np.arange(n)[:, None], idx] * migration[:, None] ** (YEARS[None, :] - born)

    def noisy(x: np.ndarray) -> np.ndarray:
        return np.round(x * rng.lognormal(0, 0.01, x.shape)).astype(np.int64)

    years = np.broadcast_to(YEARS, (n, n_years))
    progress = (YEARS - 2015) / 9
    transition = np.where(kind == 1, 0.96, 0.995)[:, None] + np.where(kind == 1, 0.03, 0.0)[:, None] * progress
    primary_entrants = noisy(cohort(years - 6) * 0.995)
    primary = noisy(sum(cohort(years - 5 - g) for g in range(1, 7)) * 0.99)
    junior_entrants = noisy(cohort(years - 12) * transition)
    junior = noisy(sum(cohort(years - 11 - g) for g in range(1, 4)) * transition)

    ratio_trend = 0.988 ** (YEARS - 2015)
    county_ratio = rng.lognormal(0, 0.08, (n, 1))
    primary_teachers = _teachers(rng, primary, RATIO_PRIMARY[kind][:, None] * county_ratio * ratio_trend)
    junior_teachers = _teachers(rng, junior, RATIO_JUNIOR[kind][:, None] * county_ratio * ratio_trend)

    def grad(start: np.ndarray, goal: float) -> np.ndarray:
        rate = start[kind][:, None] + (goal - start[kind][:, None]) * 0.6 * progress
        return np.round(np.minimum(rate + rng.normal(0, 0.3, (n, n_years)), 100.0), 2)

    columns = {
        "births": births[:, YEARS[0] - birth_years[0] :].round().astype(np.int64),
        "primary_entrants": primary_entrants,
        "primary_enrollment": primary,
        "primary_teachers": primary_teachers,
        "primary_student_teacher_ratio": np.round(primary / primary_teachers, 2),
        "primary_graduation_rate": grad(GRAD_PRIMARY, 99.9),
        "junior_secondary_entrants": junior_entrants,
        "junior_secondary_enrollment": junior,
        "junior_secondary_teachers": junior_teachers,
        "junior_secondary_student_teacher_ratio": np.round(junior / junior_teachers, 2),
        "junior_secondary_graduation_rate": grad(GRAD_JUNIOR, 99.5),
    }
    # Rows in (school_year, county_code) order: year-major.
    order = np.argsort([c[2] for c in counties], kind="stable")
    flat = {k: v[order].T.ravel() for k, v in columns.items()}
    rows = n * n_years
    for k in ("primary_graduation_rate", "junior_secondary_graduation_rate"):
        flat[k] = np.array([f"{v:.2f}" for v in flat[k]], dtype=object)
    _corrupt(rng, flat, rows)

    def meta(i: int) -> np.ndarray:
        return np.tile(np.array([counties[j][i] for j in order]), n_years)

    table = pa.table(
        {
            HEADER["school_year"]: np.repeat(YEARS, n),
            HEADER["province"]: meta(0),
            HEADER["city"]: meta(1),
            HEADER["county_code"]: meta(2),
            HEADER["county_name"]: meta(3),
            HEADER["county_type"]: np.array(TYPES)[np.tile(kind[order], n_years)],
            **{HEADER[k]: pa.array(v) for k, v in flat.items()},
        }
    )
    synth.write_csv(table, out / "school_enrollment.csv", encoding="gbk")


def _corrupt(rng: np.random.Generator, flat: dict[str, np.ndarray], rows: int) -> None:
    """Damage about 0.2% of the rows (at least 4): negative teacher counts, then 'N/A' rates."""
    k = min(rows, max(4, round(CORRUPT_SHARE * rows)))
    picked = rng.choice(rows, k, replace=False)
    for j, r in enumerate(picked):
        if j < (k + 1) // 2:
            col = ("primary_teachers", "junior_secondary_teachers")[rng.integers(2)]
            flat[col][r] = -flat[col][r]
        else:
            col = ("primary_graduation_rate", "junior_secondary_graduation_rate")[rng.integers(2)]
            flat[col][r] = "N/A"
