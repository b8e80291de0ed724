"""Seeded generator of the synthetic hospital outpatient dataset.

Model (documented so contestants can reason about it, and so the regression challenge has
structure to learn):

visits(hospital h, day d) ~ Poisson( base_h * province_h * weekday(d) * season(d)
                                     * holiday(d) * (1 + 4% per year) * noise )

* base_h by hospital grade (三级甲等 ≈ 2,400 a day ... 二级乙等 ≈ 450);
* weekday: Monday busiest, Sunday about half of Monday;
* season: a winter respiratory peak (+18% in mid-January), a small summer dip;
* holidays: the Spring Festival week falls to about 35% and recovers over ten days;
  Golden Week (1-7 October) about 55%, Labour Day (1-5 May) about 70%;
* noise: log-normal day-to-day variation, 6%.

``visit_records`` is a person-level sample of those visits with personal data columns
(name, resident ID number, phone, age, residence area) that the descriptor de-identifies.
Like real hospital exports, about 1 row in 5,000 is broken (a negative cost, a missing
diagnosis code): the descriptor quarantines them. About 0.3% of patients live far from the
simulated cities (Lhasa, Xining, Yinchuan, Haikou); their combinations of gender, age band
and city are rarer than k = 11, so the privacy gate suppresses them on every build.

Raw files mimic a Chinese portal: ``hospitals.csv`` is GBK with Chinese headers,
``daily_visits.csv`` UTF-8 with a BOM (Excel's "CSV UTF-8"), ``visit_records.csv`` UTF-8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from sandbox import synth

START, END = "2023-01-01", "2024-12-31"
GRADES = [("三级甲等", 2400, 1500), ("三级乙等", 1500, 900), ("二级甲等", 800, 500), ("二级乙等", 450, 300)]
DEPARTMENTS = ["内科", "外科", "儿科", "妇产科", "眼科", "口腔科", "中医科", "皮肤科", "耳鼻喉科", "急诊科"]
DEPT_WEIGHTS = np.array([28, 14, 13, 9, 6, 7, 8, 5, 6, 4], dtype=float)
INSURANCE = ["城镇职工医保", "城乡居民医保", "自费", "商业保险"]
INSURANCE_WEIGHTS = np.array([45, 40, 10, 5], dtype=float)
# ICD-10 chapters seen in outpatient care, with rough shares.
DIAGNOSES = [
    "J06.9",
    "J20.9",
    "I10",
    "E11.9",
    "K29.7",
    "M54.5",
    "H52.1",
    "K02.9",
    "N39.0",
    "L20.9",
    "O80",
    "J45.9",
    "R50.9",
    "S93.4",
    "F41.1",
]
REMOTE_CITIES = ["5401", "6301", "6401", "4601"]
BROKEN_ROW_RATE = 1 / 5000
ROWS_AT_SCALE_1 = 200_000
HOSPITALS = 60


def _hospitals(rng: np.random.Generator) -> pa.Table:
    places = synth.cities()
    sizes = np.array([p[4] for p in places])
    pick = rng.choice(len(places), HOSPITALS, p=sizes / sizes.sum())
    grade = rng.choice(len(GRADES), HOSPITALS, p=[0.3, 0.2, 0.3, 0.2])
    kinds = ["第一人民医院", "第二人民医院", "中医院", "妇幼保健院", "中心医院", "人民医院", "第三人民医院"]
    names, seen = [], set()
    for i in range(HOSPITALS):
        city = places[pick[i]][2]
        for k in rng.permutation(len(kinds)):
            name = f"{city}市{kinds[k]}"
            if name not in seen:
                break
        else:
            name = f"{city}市第{i + 4}人民医院"
        seen.add(name)
        names.append(name)
    return pa.table(
        {
            "医院编码": [f"H{i + 1:04d}" for i in range(HOSPITALS)],
            "医院名称": names,
            "省份": [places[p][0] for p in pick],
            "城市": [places[p][2] for p in pick],
            "医院等级": [GRADES[g][0] for g in grade],
            "床位数": [int(GRADES[g][2] * rng.uniform(0.7, 1.5)) for g in grade],
        }
    )


def expected_visits(cal: synth.Calendar) -> np.ndarray:
    """The day-level multiplier shared by all hospitals (weekday x season x holidays x trend)."""
    weekday = np.array([1.18, 1.10, 1.05, 1.02, 0.98, 0.68, 0.58])[cal.dow]
    season = 1 + 0.18 * np.cos(2 * np.pi * (cal.doy - 15) / 365.25) - 0.04 * np.exp(-(((cal.doy - 210) / 25) ** 2))
    sf = cal.spring_offset
    spring = np.where((sf >= -2) & (sf <= 6), 0.35, 1.0)
    spring = np.where((sf > 6) & (sf <= 16), 0.35 + 0.65 * (sf - 6) / 10, spring)
    spring = np.where((sf >= -7) & (sf < -2), 0.85, spring)
    holiday = spring * np.where(cal.golden_week, 0.55, 1.0) * np.where(cal.labour_day, 0.70, 1.0)
    trend = 1 + 0.04 * (cal.year - 2023) + 0.04 * cal.doy / 365.25
    return weekday * season * holiday * trend


def _daily_visits(rng: np.random.Generator, hospitals: pa.Table, cal: synth.Calendar) -> tuple[pa.Table, np.ndarray]:
    grade_base = {g: b for g, b, _ in GRADES}
    province_effect = {p[0]: p[3] for p in synth.PROVINCES}
    base = np.array(
        [
            grade_base[g] * province_effect[p] * rng.uniform(0.8, 1.2)
            for g, p in zip(hospitals["医院等级"].to_pylist(), hospitals["省份"].to_pylist(), strict=True)
        ]
    )
    day = expected_visits(cal)
    lam = base[:, None] * day[None, :] * rng.lognormal(0, 0.06, (len(base), len(day)))
    visits = rng.poisson(lam)
    emergency = rng.poisson(lam * 0.07 * np.where(cal.holiday, 1.6, 1.0)[None, :])
    n_days = len(cal.dates)
    table = pa.table(
        {
            "date": np.tile(cal.dates, len(base)),
            "hospital_id": np.repeat(hospitals["医院编码"].to_numpy(zero_copy_only=False), n_days),
            "outpatient_visits": visits.ravel(),
            "emergency_visits": emergency.ravel(),
        }
    )
    return table.sort_by([("date", "ascending"), ("hospital_id", "ascending")]), visits


def _patients(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """A population of patients with the personal data a hospital system holds."""
    places = synth.cities()
    home = rng.integers(0, len(places), n)
    district = np.array([places[h][3] for h in home]).astype("U4")
    remote = rng.random(n) < 0.003
    district = np.where(remote, np.array(REMOTE_CITIES)[rng.integers(0, len(REMOTE_CITIES), n)], district)
    district = np.char.add(district, np.char.zfill(rng.integers(1, 13, n).astype("U2"), 2))
    # Age on 1 January 2023, the first day of the data, so nobody is born after a visit.
    age_years = np.clip(rng.gamma(2.2, 19, n), 0, 103).astype(int)
    birth = (
        np.datetime64("2023-01-01")
        - (age_years * 365.25).astype("timedelta64[D]")
        - rng.integers(0, 365, n).astype("timedelta64[D]")
    )
    return {
        "district": district,
        "birth": birth,
        "gender": np.where(rng.random(n) < 0.52, "女", "男"),
        "id_card": synth.resident_ids(rng, district, birth),
        "name": synth.names(rng, n),
        "phone": synth.phones(rng, n),
    }


def _visit_records(
    rng: np.random.Generator,
    hospitals: pa.Table,
    cal: synth.Calendar,
    n_hospitals: int,
    cells: np.ndarray,
    people: dict[str, np.ndarray],
    first_id: int,
) -> pa.Table:
    """Visits for the given (day-major, sorted) day x hospital cells."""
    n = len(cells)
    day_idx, hosp_idx = np.divmod(cells, n_hospitals)
    dates = cal.dates[day_idx]
    n_people = len(people["birth"])
    # Frequent visitors come back: a heavy-tailed choice of patient.
    patient = (np.minimum(rng.zipf(1.6, n) - 1, n_people - 1) * 7919 + rng.integers(0, n_people, n)) % n_people
    age_at_visit = ((dates - people["birth"][patient]).astype(int) // 365.25).astype(int)
    dept = rng.choice(len(DEPARTMENTS), n, p=DEPT_WEIGHTS / DEPT_WEIGHTS.sum())
    dept = np.where((age_at_visit < 14) & (rng.random(n) < 0.7), DEPARTMENTS.index("儿科"), dept)
    diag = rng.integers(0, len(DIAGNOSES), n)
    fee = np.round(rng.lognormal(5.3, 0.8, n) * np.where(dept == DEPARTMENTS.index("急诊科"), 1.8, 1.0), 2)
    broken = rng.random(n) < BROKEN_ROW_RATE
    fee = np.where(broken & (rng.random(n) < 0.5), -fee, fee)
    diagnosis = np.where(broken & (fee > 0), None, np.array(DIAGNOSES)[diag])
    return pa.table(
        {
            "visit_id": np.arange(first_id, first_id + n, dtype=np.int64),
            "visit_date": dates,
            "hospital_id": hospitals["医院编码"].to_numpy(zero_copy_only=False)[hosp_idx],
            "department": np.array(DEPARTMENTS)[dept],
            "patient_id": np.char.add("P", np.char.zfill(patient.astype("U8"), 8)),
            "patient_name": people["name"][patient],
            "id_card": people["id_card"][patient],
            "phone": people["phone"][patient],
            "gender": people["gender"][patient],
            "age": age_at_visit,
            "residence_area": people["district"][patient],
            "diagnosis_code": pa.array(diagnosis, type=pa.string()),
            "fee_yuan": fee,
            "insurance_type": np.array(INSURANCE)[rng.choice(4, n, p=INSURANCE_WEIGHTS / INSURANCE_WEIGHTS.sum())],
        }
    )


def generate(out: Path, *, seed: int, scale: float = 1.0) -> None:
    rng = np.random.default_rng(seed)
    cal = synth.Calendar.between(START, END)
    hospitals = _hospitals(rng)
    synth.write_csv(hospitals, out / "hospitals.csv", encoding="gbk")
    daily, visits = _daily_visits(rng, hospitals, cal)
    synth.write_csv(daily, out / "daily_visits.csv", encoding="utf-8-sig")
    n = int(ROWS_AT_SCALE_1 * scale)
    flat = visits.T.ravel().astype(float)  # day-major cells
    cells = np.sort(rng.choice(len(flat), n, p=flat / flat.sum()))
    people = _patients(rng, max(n // 4, 1000))
    # Large scales are generated in slices of consecutive days to bound memory.
    step = 2_000_000
    parts = [
        _visit_records(np.random.default_rng([seed, i]), hospitals, cal, HOSPITALS, cells[s : s + step], people, s + 1)
        for i, s in enumerate(range(0, n, step))
    ]
    synth.write_csv(pa.concat_tables(parts), out / "visit_records.csv")
