"""Seeded generator of the synthetic daily scenic spot visitors dataset.

Model (documented so contestants can reason about it, and so the forecasting challenge has
structure to learn). For spot s on day d (2023-01-01 ... 2024-12-31):

visitors(s, d) = min( capacity_s, Poisson( base_s * week(d) * season_k(d) * holiday_k(d)
                                             * trend(d) * exp(noise_s(d)) ) )

* base_s: visitors on an ordinary weekday outside the season; 5A spots log-normal around
  9,000 (sd 0.5), 4A spots around 2,500 (sd 0.5), times the province effect of
  ``synth.PROVINCES`` (0.9 ... 1.3).
* capacity_s: the spot's approved daily maximum (最大承载量), 4.5-6 times base_s; holiday
  peaks of the largest spots hit it, so the top of the distribution is flat.
* week: Monday-Thursday 0.80, Friday 0.95, Saturday 1.75, Sunday 1.45.
* category k (景区类型) shapes the seasons:
  - 山岳: summer (July-August) ×1.6, autumn colours (mid-October) ×1.3; in the northern
    provinces (北京, 山东, 河南, 陕西) winter (December-February) ×0.45;
  - 古镇古村 and 主题乐园: summer ×1.5; Spring Festival (Lunar New Year's Eve to the 6th day)
    ×2.5 for temple fairs and lantern shows (庙会、灯会), the Lantern Festival (15th day) ×2;
  - 博物馆: summer holidays ×1.4, Spring Festival ×1.8;
  - 湖泊湿地: spring (April-May) ×1.3, summer ×1.3, winter ×0.6.
  Mountains and lakes fall to ×0.8 on the Spring Festival days.
* holidays (``synth.Calendar``): Golden Week days 1-3 ×4.8, days 4-5 ×3.8, days 6-7 ×2.6;
  Labour Day days 1-3 ×3.8, days 4-5 ×2.4 (they replace the weekday effect, so they are
  3-5 times an ordinary day). The day before a holiday ×1.2.
* trend: the 2023 tourism rebound, ×(0.75 + 0.25 × min(t / 120, 1)) over the first four
  months of 2023, and +12% a year.
* noise: log-normal, 8% per spot and day.

ticket_revenue_yuan = visitors * price_s * paying share * (1 + N(0, 2%)), where price_s is 0
for free spots (most 博物馆 and 湖泊湿地, one in four 古镇古村), 60-260 yuan for 5A and 20-90
yuan for 4A spots (主题乐园 × 1.8, 博物馆 × 0.3), rounded to 5 yuan, and the paying share
(full-price adults; children, the elderly and annual pass holders pay nothing) is 0.70-0.90
per spot, 5% lower on Golden Week and Labour Day when families with children come.

``scale`` multiplies the number of spots (25 at scale 1, at least one). spot_id is S001 ...
(four digits beyond 999 spots). Spot names are invented, not real attractions. The raw file
``scenic_visitors.json`` is one JSON array of objects, in (date, spot_id) order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from sandbox import synth

START, END = "2023-01-01", "2024-12-31"
SPOTS = 25
CATEGORIES = ["山岳", "古镇古村", "主题乐园", "博物馆", "湖泊湿地"]
CATEGORY_WEIGHTS = np.array([0.30, 0.22, 0.14, 0.16, 0.18])
KIND_NAMES = {
    "山岳": ["山风景区", "峰景区", "岭森林公园"],
    "古镇古村": ["古镇", "古村", "老街"],
    "主题乐园": ["欢乐谷", "乐园", "海洋王国"],
    "博物馆": ["博物馆", "民俗博物馆", "科技馆"],
    "湖泊湿地": ["湖景区", "湿地公园", "溪风景区"],
}
STEMS_1 = list("青翠碧云龙凤金玉紫仙灵白丹银锦明清")
STEMS_2 = list("霞岩溪屏泉峡湾源川台林石")
NORTH = {"北京", "山东", "河南", "陕西"}
WEEK = np.array([0.80, 0.80, 0.80, 0.80, 0.95, 1.75, 1.45])
ROWS_AT_SCALE_1 = SPOTS * 731


def _spots(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    places = synth.cities()
    sizes = np.array([p[4] for p in places])
    pick = rng.choice(len(places), n, p=sizes / sizes.sum())
    grade_5a = rng.random(n) < 0.4
    category = rng.choice(len(CATEGORIES), n, p=CATEGORY_WEIGHTS)
    names, seen = [], set()
    for i in range(n):
        city, cat = places[pick[i]][2], CATEGORIES[category[i]]
        for _ in range(100):
            name = (
                f"{city}{STEMS_1[rng.integers(len(STEMS_1))]}{STEMS_2[rng.integers(len(STEMS_2))]}"
                f"{KIND_NAMES[cat][rng.integers(3)]}"
            )
            if name not in seen:
                break
        else:
            name = f"{city}第{i + 1}{KIND_NAMES[cat][0]}"
        seen.add(name)
        names.append(name)
    province_effect = np.array([places[p][4] for p in pick])
    base = (
        np.where(grade_5a, rng.lognormal(np.log(9000), 0.5, n), rng.lognormal(np.log(2500), 0.5, n)) * province_effect
    )
    price = np.where(grade_5a, rng.uniform(60, 260, n), rng.uniform(20, 90, n))
    price = np.where(category == CATEGORIES.index("主题乐园"), price * 1.8, price)
    price = np.where(category == CATEGORIES.index("博物馆"), price * 0.3, price)
    free = (np.isin(category, [CATEGORIES.index("博物馆"), CATEGORIES.index("湖泊湿地")]) & (rng.random(n) < 0.75)) | (
        (category == CATEGORIES.index("古镇古村")) & (rng.random(n) < 0.25)
    )
    price = np.where(free, 0.0, np.round(price / 5) * 5)
    return {
        "id": np.array([f"S{i + 1:03d}" for i in range(n)]),
        "name": np.array(names),
        "province": np.array([places[p][0] for p in pick]),
        "city": np.array([places[p][2] for p in pick]),
        "grade": np.where(grade_5a, "5A", "4A"),
        "category": category,
        "base": base,
        "capacity": base * rng.uniform(4.5, 6.0, n),
        "price": price,
        "paying": rng.uniform(0.70, 0.90, n),
    }


def _holiday_level(cal: synth.Calendar) -> np.ndarray:
    """Holiday multiplier replacing the weekday effect; NaN on ordinary days."""
    day = cal.dates.astype("datetime64[D]") - cal.dates.astype("datetime64[M]")
    dom = day.astype(int) + 1
    gw = np.select([dom <= 3, dom <= 5], [4.8, 3.8], 2.6)
    ld = np.where(dom <= 3, 3.8, 2.4)
    level = np.full(len(cal.dates), np.nan)
    level = np.where(cal.golden_week, gw, level)
    return np.where(cal.labour_day, ld, level)


def _season(cal: synth.Calendar, category: np.ndarray, north: np.ndarray) -> np.ndarray:
    """Spot x day seasonal and festival multiplier."""
    month = cal.dates.astype("datetime64[M]").astype(int) % 12 + 1
    summer = np.isin(month, (7, 8))
    winter = np.isin(month, (12, 1, 2))
    spring = np.isin(month, (4, 5))
    autumn = np.exp(-(((cal.doy - 290) / 12) ** 2))
    sf = cal.spring_offset
    festival = (sf >= -1) & (sf <= 6)
    lantern = sf == 14
    rows = {
        0: (1 + 0.6 * summer + 0.3 * autumn) * np.where(festival, 0.8, 1.0),
        1: (1 + 0.5 * summer) * np.where(festival, 2.5, np.where(lantern, 2.0, 1.0)),
        2: (1 + 0.5 * summer) * np.where(festival, 2.5, np.where(lantern, 2.0, 1.0)),
        3: (1 + 0.4 * summer) * np.where(festival, 1.8, 1.0),
        4: (1 + 0.3 * spring + 0.3 * summer) * np.where(winter, 0.6, 1.0) * np.where(festival, 0.8, 1.0),
    }
    out = np.stack([rows[int(k)] for k in category])
    mountain_north = (category == 0) & north
    out[mountain_north] *= np.where(winter, 0.45, 1.0)
    return out


def generate(out: Path, *, seed: int, scale: float = 1.0) -> None:
    rng = np.random.default_rng(seed)
    cal = synth.Calendar.between(START, END)
    n = max(1, round(SPOTS * scale))
    spots = _spots(rng, n)
    n_days = len(cal.dates)
    t = (cal.dates - cal.dates[0]).astype(int)

    hol = _holiday_level(cal)
    eve = np.zeros(n_days, dtype=bool)
    eve[:-1] = (cal.golden_week | cal.labour_day)[1:] & ~(cal.golden_week | cal.labour_day)[:-1]
    day = np.where(np.isnan(hol), WEEK[cal.dow] * np.where(eve, 1.2, 1.0), hol)
    trend = (0.75 + 0.25 * np.minimum(t / 120, 1)) * 1.12 ** (t / 365.25)
    north = np.isin(spots["province"], list(NORTH))
    season = _season(cal, spots["category"], north)
    lam = (
        spots["base"][:, None]
        * day[None, :]
        * trend[None, :]
        * season
        * rng.lognormal(-(0.08**2) / 2, 0.08, (n, n_days))
    )
    visitors = np.minimum(rng.poisson(lam), np.floor(spots["capacity"])[:, None]).astype(np.int64)
    paying = spots["paying"][:, None] * np.where(cal.golden_week | cal.labour_day, 0.95, 1.0)[None, :]
    revenue = visitors * spots["price"][:, None] * paying * (1 + rng.normal(0, 0.02, (n, n_days)))
    revenue = np.round(np.maximum(revenue, 0), 2)

    # Rows in (date, spot_id) order: day-major.
    table = pa.table(
        {
            "date": np.repeat(cal.dates, n),
            "spot_id": np.tile(spots["id"], n_days),
            "spot_name": np.tile(spots["name"], n_days),
            "province": np.tile(spots["province"], n_days),
            "city": np.tile(spots["city"], n_days),
            "grade": np.tile(spots["grade"], n_days),
            "category": np.tile(np.array(CATEGORIES)[spots["category"]], n_days),
            "visitors": visitors.T.ravel(),
            "ticket_revenue_yuan": revenue.T.ravel(),
        }
    )
    synth.write_json(table, out / "scenic_visitors.json", array=True)
