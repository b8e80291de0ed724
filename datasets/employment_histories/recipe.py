"""Seeded generator of the synthetic individual employment histories (a conditional dataset).

Model (documented so the data can be judged). 3,000 workers at scale 1, each with a sex
(half and half), a birth date between 1960 and 2003, a resident ID number and a phone shaped
like real ones (``synth``), and a home city of ``synth.cities()`` (weighted by city size).
Each worker has 1 to 4 job spells one after another from January 2019 to December 2024:

* the first spell starts in a uniformly random month of 2019-2022; a spell lasts a
  geometric number of months with mean 20 (at least 1), ending by the end of 2024 at the
  latest (``end_reason`` 在职 still employed); between spells 0-5 months pass;
* the sector (the 8 sectors of ``city_employment``) is kept with probability 0.6 from one spell
  to the next, otherwise drawn afresh;
* the monthly wage (yuan) is log-normal around the sector's level (制造业 6,500, 建筑业 6,800,
  批发零售 5,600, 住宿餐饮 4,600, 信息技术 13,500, 金融业 12,800, 教育 8,200, 卫生 9,000)
  times 1 + 1.5 % a year of age above 22 (up to 25 years), sd 25 %;
* a spell ends by 辞职 (resignation, 55 %), 合同到期 (contract end, 30 %) or 裁员 (lay-off,
  15 %); lay-offs are three times as likely for spells that end in February-April 2020.

``scale`` multiplies the number of workers. The raw file ``job_spells.csv`` is UTF-8.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa

from sandbox import synth

WORKERS_AT_SCALE_1 = 3000
SECTORS = {
    "制造业": 6500,
    "建筑业": 6800,
    "批发零售": 5600,
    "住宿餐饮": 4600,
    "信息技术": 13500,
    "金融业": 12800,
    "教育": 8200,
    "卫生": 9000,
}
LAST_MONTH = 2024 * 12 + 11  # December 2024, as months since year 0


def _month(m: int) -> dt.date:
    return dt.date(m // 12, m % 12 + 1, 1)


def generate(out: Path, *, seed: int, scale: float = 1.0) -> None:
    rng = np.random.default_rng(seed)
    n = max(int(WORKERS_AT_SCALE_1 * scale), 100)
    places = synth.cities()
    weights = np.array([p[4] for p in places])
    home = rng.choice(len(places), n, p=weights / weights.sum())
    birth = np.datetime64("1960-01-01") + rng.integers(0, 365 * 44, n).astype("timedelta64[D]")
    area = np.array([places[i][3] + "01" for i in home])
    names, ids, phones = synth.names(rng, n), synth.resident_ids(rng, area, birth), synth.phones(rng, n)
    sex = np.where(rng.random(n) < 0.5, "男", "女")
    sectors = list(SECTORS)
    cols: dict[str, list] = {k: [] for k in ("工号", "姓名", "身份证号", "联系电话", "性别", "年龄", "行业")}
    cols.update({"开始月份": [], "在岗月数": [], "月工资": [], "离职原因": []})
    for i in range(n):
        start = 2019 * 12 + int(rng.integers(0, 48))
        sector = sectors[int(rng.integers(0, len(sectors)))]
        for _ in range(int(rng.integers(1, 5))):
            if start > LAST_MONTH:
                break
            months = int(rng.geometric(1 / 20))
            end = start + months - 1
            if end >= LAST_MONTH:
                end, reason = LAST_MONTH, "在职"
            else:
                shock = 3.0 if (2020 * 12 + 1) <= end <= (2020 * 12 + 3) else 1.0
                p = np.array([0.55, 0.30, 0.15 * shock])
                reason = ["辞职", "合同到期", "裁员"][int(rng.choice(3, p=p / p.sum()))]
            age = int((np.datetime64(_month(start)) - birth[i]).astype(int) // 365)
            wage = SECTORS[sector] * (1 + 0.015 * min(max(age - 22, 0), 25)) * rng.lognormal(0, 0.25)
            for k, v in (
                ("工号", f"W{i + 1:07d}"),
                ("姓名", str(names[i])),
                ("身份证号", str(ids[i])),
                ("联系电话", str(phones[i])),
                ("性别", str(sex[i])),
                ("年龄", age),
                ("行业", sector),
                ("开始月份", _month(start)),
                ("在岗月数", end - start + 1),
                ("月工资", round(float(wage), -1)),
                ("离职原因", reason),
            ):
                cols[k].append(v)
            start = end + 1 + int(rng.integers(0, 6))
            if rng.random() > 0.6:
                sector = sectors[int(rng.integers(0, len(sectors)))]
    synth.write_csv(pa.table(cols), out / "job_spells.csv")
