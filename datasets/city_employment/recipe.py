"""Seeded generator of the synthetic monthly city employment dataset.

Model (documented so contestants can reason about it, and so forecasting challenges have
structure to learn). For city c, sector s and month m (2019-01 ... 2024-12):

employed(c, s, m) = base_c * share_cs * (1 + g_c + g_s)^(years since 2019-01) * season_s(m)
                    * shock_cs(m) * policy_s(m) * exp(AR(1) noise)

* base_c: total employment of the city in its covered urban units (thousand persons),
  北京 ≈ 7,800 ... 绵阳 ≈ 650; the eight sectors together hold about 85% of it.
* share_cs: national sector shares (制造业 30%, 批发和零售业 18%, 建筑业 12%, ...), tilted by
  city profile: manufacturing hubs (东莞, 佛山, 苏州, 无锡, 宁波, 温州, 烟台) ×1.6 manufacturing,
  tech hubs (北京, 深圳, 杭州, 上海, 成都) ×2 information technology, financial centres
  (北京, 上海, 深圳) ×1.8 finance, plus a log-normal city-sector effect (sd 0.15).
* growth: the bigger the city the faster it grows (g_c from 0.4% a year for the smallest to
  1.6% for the largest city) plus a sector drift (information technology +6%, finance +2%,
  manufacturing -0.5%, construction -1.5% and -4% from July 2021 on, the property slump).
* policy: 教育 loses 6% in August-December 2021 (the "double reduction" of after-school
  tutoring, 双减) and stays there.
* season: the month's share of Spring Festival days (from ``synth.Calendar``) lowers
  employment in construction (-15% of that share), manufacturing (-8%) and hospitality (-5%),
  as migrant workers go home; hospitality and transport gain 3% in July-August.
* shocks: COVID-19 in 2020-02 ... 2020-04 (employment -6%, -4%, -2%, recovering by July;
  hospitality three times as hard hit), and the Shanghai lockdown 2022-04 ... 2022-05
  (上海 only, -8% and -5%).
* noise: AR(1) in logs, phi 0.9, sd 0.6% a month.

new_hires(c, s, m) ~ Poisson(employed * 1000 * turnover_s * hiring(m) * shock_hires(m)):
turnover_s from 1.0% (finance, education) to 3.5% (hospitality) a month; hiring(m) is the
month's mean of a daily activity curve that falls by 80% from 3 days before to 7 days after
the Lunar New Year and rises 40% in the three weeks after (节后招工高峰), so February (or
January when the festival is early) dips and the following weeks surge; graduates lift July
by 20% (education: August +30%); Golden Week lowers October by 10%. COVID-19 cuts hires by
70%, 40% and 20% in 2020-02 ... 2020-04; the Shanghai lockdown by 60% and 35%.

average_monthly_wage_yuan = sector level (住宿和餐饮业 ≈ 4,600 ... 金融业 ≈ 15,000 yuan in 2019)
* city tier (一线 ×1.45, 二线 ×1.1, 三线 ×0.88) * nominal growth (5.5% a year to 2021, 4% after)
* year-end bonus (December: finance ×1.35, others ×1.12) * COVID-19 (2020-02 -8%, 2020-03 -4%)
* noise (log-normal, 2%).

unemployment_insurance_claims ~ Poisson(employed * 1000 * claim_s * season * shock):
claim_s 0.08% (finance, education) ... 0.35% (hospitality, construction) a month; January-
February +30% (contracts end before the festival); COVID-19 ×2.0, ×2.5, ×1.8, ×1.4 in
2020-02 ... 2020-05; Shanghai ×2.2 and ×1.6 in 2022-04 ... 2022-05; +10% a year from 2022.

``scale`` multiplies the number of cities: the 22 demo cities of ``synth.cities()`` come
first (scale < 1 keeps the largest ones); beyond them come simulated third-tier cities named
"<province>模拟市<nnn>". The raw file, ``city_employment.xlsx``, has one sheet "从业人员" with
Chinese headers and the month as text "YYYY-MM", like a statistics bureau's download.
XLSX files carry their save time, so the raw file differs between runs in its metadata
only; every cell, and so the published data, is the same for the same seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from openpyxl import Workbook

from sandbox import synth

START, END = "2019-01-01", "2024-12-31"
MONTHS = 72
SECTORS = ["制造业", "建筑业", "批发和零售业", "交通运输业", "住宿和餐饮业", "信息技术服务业", "金融业", "教育"]
# Per sector: share of employment, annual drift, monthly turnover, 2019 wage (yuan), monthly claim rate.
SECTOR_SHARE = np.array([0.30, 0.12, 0.18, 0.07, 0.07, 0.06, 0.05, 0.08])
SECTOR_DRIFT = np.array([-0.005, -0.015, 0.005, 0.010, 0.010, 0.060, 0.020, 0.015])
TURNOVER = np.array([0.022, 0.030, 0.025, 0.018, 0.035, 0.020, 0.010, 0.010])
WAGE_2019 = np.array([6500, 6800, 6000, 7500, 4600, 14500, 15000, 8800], dtype=float)
CLAIM_RATE = np.array([0.0020, 0.0035, 0.0025, 0.0015, 0.0035, 0.0012, 0.0008, 0.0008])
# Total covered urban employment, thousand persons.
CITY_BASE = {
    "北京": 7800,
    "上海": 7200,
    "深圳": 6500,
    "广州": 5600,
    "苏州": 4300,
    "成都": 4200,
    "杭州": 3900,
    "东莞": 3600,
    "武汉": 3300,
    "南京": 2800,
    "郑州": 2700,
    "佛山": 2700,
    "西安": 2600,
    "宁波": 2600,
    "青岛": 2300,
    "无锡": 2000,
    "济南": 1900,
    "温州": 1600,
    "烟台": 1300,
    "洛阳": 1000,
    "宜昌": 700,
    "绵阳": 650,
}
TIER1 = {"北京", "上海", "广州", "深圳"}
TIER3 = {"温州", "烟台", "洛阳", "宜昌", "绵阳"}
MANUFACTURING_HUBS = {"东莞", "佛山", "苏州", "无锡", "宁波", "温州", "烟台"}
TECH_HUBS = {"北京", "深圳", "杭州", "上海", "成都"}
FINANCE_CENTRES = {"北京", "上海", "深圳"}
HEADER = ["统计月份", "省份", "城市", "行业", "从业人员", "新招用人数", "月平均工资", "新增申领失业保险金人数"]
ROWS_AT_SCALE_1 = len(CITY_BASE) * len(SECTORS) * MONTHS


def _cities(rng: np.random.Generator, n: int) -> list[tuple[str, str, float]]:
    """(province, city, base employment) for ``n`` cities, largest demo cities first."""
    demo = sorted(((p, c, float(CITY_BASE[c])) for p, _, c, _, _ in synth.cities()), key=lambda x: -x[2])
    if n <= len(demo):
        return demo[:n]
    provinces = [p[0] for p in synth.PROVINCES]
    extra = [
        (
            provinces[k % len(provinces)],
            f"{provinces[k % len(provinces)]}模拟市{k + 1:03d}",
            float(np.clip(rng.lognormal(np.log(900), 0.4), 400, 2500)),
        )
        for k in range(n - len(demo))
    ]
    return demo + extra


def _month_features() -> dict[str, np.ndarray]:
    """Per-month calendar features from the day-level synth.Calendar."""
    cal = synth.Calendar.between(START, END)
    month_index = (cal.dates.astype("datetime64[M]") - np.datetime64("2019-01", "M")).astype(int)
    sf = cal.spring_offset
    festival = (sf >= -1) & (sf <= 6)
    activity = 1 - 0.8 * ((sf >= -3) & (sf <= 7)) + 0.4 * ((sf >= 8) & (sf <= 28)) - 0.1 * cal.golden_week
    days = np.bincount(month_index, minlength=MONTHS)
    return {
        "festival_share": np.bincount(month_index, weights=festival, minlength=MONTHS) / days,
        "hiring": np.bincount(month_index, weights=activity, minlength=MONTHS) / days,
        "month_of_year": np.arange(MONTHS) % 12 + 1,
        "years": np.arange(MONTHS) / 12.0,
    }


def _shock(values: dict[int, float]) -> np.ndarray:
    """A month-indexed multiplier that is 1 except in the months given as {index: factor}."""
    out = np.ones(MONTHS)
    for i, v in values.items():
        out[i] = v
    return out


def generate(out: Path, *, seed: int, scale: float = 1.0) -> None:
    rng = np.random.default_rng(seed)
    n_cities = max(1, round(len(CITY_BASE) * scale))
    places = _cities(rng, n_cities)
    base = np.array([b for _, _, b in places])
    names = [c for _, c, _ in places]
    mf = _month_features()
    moy, years = mf["month_of_year"], mf["years"]
    n_sec = len(SECTORS)
    idx = {s: i for i, s in enumerate(SECTORS)}

    # City x sector shares.
    tilt = np.ones((n_cities, n_sec))
    for ci, city in enumerate(names):
        if city in MANUFACTURING_HUBS:
            tilt[ci, idx["制造业"]] *= 1.6
        if city in TECH_HUBS:
            tilt[ci, idx["信息技术服务业"]] *= 2.0
        if city in FINANCE_CENTRES:
            tilt[ci, idx["金融业"]] *= 1.8
    share = SECTOR_SHARE * tilt * rng.lognormal(0, 0.15, (n_cities, n_sec))
    share = 0.85 * share / share.sum(axis=1, keepdims=True)

    # Growth: city size and sector drift; construction slump from July 2021.
    lo, hi = np.log(650), np.log(7800)
    g_city = 0.004 + 0.012 * np.clip((np.log(base) - lo) / (hi - lo), 0, 1)
    log_trend = np.log1p(g_city[:, None, None] + SECTOR_DRIFT[None, :, None]) * years[None, None, :]
    slump = np.maximum(years - 2.5, 0)  # years since 2021-07
    log_trend[:, idx["建筑业"], :] += np.log(0.96) * slump
    policy = np.ones((n_sec, MONTHS))
    policy[idx["教育"], 31:] = 0.94  # from 2021-08

    # Seasonality of employment.
    season = np.ones((n_sec, MONTHS))
    for s, k in (("建筑业", 0.15), ("制造业", 0.08), ("住宿和餐饮业", 0.05)):
        season[idx[s]] -= k * mf["festival_share"]
    summer = np.isin(moy, (7, 8))
    for s in ("住宿和餐饮业", "交通运输业"):
        season[idx[s]] *= np.where(summer, 1.03, 1.0)

    # Shocks: COVID-19 (months 13-15 = 2020-02..04, recovery to 2020-07) and Shanghai 2022-04..05.
    covid = _shock({13: 0.94, 14: 0.96, 15: 0.98, 16: 0.99, 17: 0.995})
    covid_cs = np.broadcast_to(covid, (n_cities, n_sec, MONTHS)).copy()
    covid_cs[:, idx["住宿和餐饮业"], :] = 1 - 3 * (1 - covid)
    is_sh = np.array([c == "上海" for c in names])
    covid_cs[is_sh] *= _shock({39: 0.92, 40: 0.95})

    noise = np.zeros((n_cities, n_sec, MONTHS))
    eps = rng.normal(0, 0.006, (n_cities, n_sec, MONTHS))
    noise[..., 0] = eps[..., 0] / np.sqrt(1 - 0.81)
    for m in range(1, MONTHS):
        noise[..., m] = 0.9 * noise[..., m - 1] + eps[..., m]

    employed = (
        base[:, None, None] * share[:, :, None] * np.exp(log_trend + noise) * season[None] * policy[None] * covid_cs
    )
    employed = np.round(employed, 1)

    # New hires.
    hiring = mf["hiring"] * np.where(moy == 7, 1.2, 1.0)
    hires_sector = np.ones((n_sec, MONTHS)) * hiring
    hires_sector[idx["教育"]] = mf["hiring"] * np.where(moy == 8, 1.3, 1.0)
    hire_shock = _shock({13: 0.30, 14: 0.60, 15: 0.80})[None, None, :] * np.ones((n_cities, 1, 1))
    hire_shock[is_sh] *= _shock({39: 0.40, 40: 0.65})
    new_hires = rng.poisson(employed * 1000 * TURNOVER[None, :, None] * hires_sector[None] * hire_shock)

    # Wages.
    tier = np.array([1.45 if c in TIER1 else 0.88 if (c in TIER3 or c not in CITY_BASE) else 1.10 for c in names])
    growth = np.where(years <= 3, 1.055**years, 1.055**3 * 1.04 ** (years - 3))
    bonus = np.where(moy == 12, 1.12, 1.0) * np.ones((n_sec, 1))
    bonus[idx["金融业"]] = np.where(moy == 12, 1.35, 1.0)
    wage_shock = _shock({13: 0.92, 14: 0.96})
    wage = (
        WAGE_2019[None, :, None]
        * tier[:, None, None]
        * rng.lognormal(0, 0.05, (n_cities, n_sec, 1))
        * growth
        * bonus[None]
        * wage_shock
        * rng.lognormal(0, 0.02, (n_cities, n_sec, MONTHS))
    )
    wage = np.round(wage, 2)

    # Unemployment insurance claims.
    claim_season = np.where(np.isin(moy, (1, 2)), 1.3, 1.0) * (1 + 0.10 * np.maximum(years - 3, 0))
    claim_shock = _shock({13: 2.0, 14: 2.5, 15: 1.8, 16: 1.4})[None, None, :] * np.ones((n_cities, 1, 1))
    claim_shock[is_sh] *= _shock({39: 2.2, 40: 1.6})
    claims = rng.poisson(employed * 1000 * CLAIM_RATE[None, :, None] * claim_season * claim_shock)

    _write_xlsx(out / "city_employment.xlsx", places, employed, new_hires, wage, claims)


def _write_xlsx(path: Path, places, employed, hires, wage, claims) -> None:
    """One sheet, rows in (month, city, sector) order, the month as text 'YYYY-MM'."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("从业人员")
    ws.append(HEADER)
    city_order = sorted(range(len(places)), key=lambda i: places[i][1])
    sector_order = sorted(range(len(SECTORS)), key=lambda i: SECTORS[i])
    months = [f"{2019 + m // 12}-{m % 12 + 1:02d}" for m in range(MONTHS)]
    e, h, w, u = employed.tolist(), hires.tolist(), wage.tolist(), claims.tolist()
    for m, label in enumerate(months):
        for ci in city_order:
            province, city, _ = places[ci]
            for si in sector_order:
                ws.append([label, province, city, SECTORS[si], e[ci][si][m], h[ci][si][m], w[ci][si][m], u[ci][si][m]])
    wb.save(path)
