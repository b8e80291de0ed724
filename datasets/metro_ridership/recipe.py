"""Seeded generator of the synthetic daily metro ridership dataset.

Model (documented so contestants can reason about it, and so the forecasting challenge has
structure to learn). For line l of city c on day d (2023-01-01 ... 2024-12-31):

entries(l, d) ~ Poisson( base_l * day_c(d) * weather_c(d) * heat_c(d) * trend_c(d)
                         * extension_l(d) * exp(noise_l(d)) )

* base_l: average weekday entries of the line. A city's lines average 540,000 (北京),
  600,000 (上海) and 560,000 (广州) entries a day; a line's size is log-normal (sd 0.55)
  around that, and lower-numbered (older, central) lines are larger: × (1 + 0.6 / line number).
* day_c: the weekday commute profile (Mon 1.00, Tue-Thu 1.02, Fri 1.08, Sat 0.72, Sun 0.62);
  on holidays of ``synth.Calendar`` (``is_holiday``) the profile is replaced by the holiday
  level: Spring Festival 0.38 (the week before falls gradually from 0.95 to 0.55, the ten
  days after recover linearly), Labour Day 0.72, Golden Week 0.68. New Year's Day,
  Qingming, Dragon Boat and Mid-Autumn days are not holidays in this calendar.
* weather_c: one draw per city and day from month- and city-dependent probabilities
  (北京: dry, hazy winters and wet Julys; 上海: the June plum rains; 广州: wet April-September,
  never snow or frost). Rain × 0.95, snow × 0.90, haze × 0.98; 晴 and 多云 × 1.
* temperature_c: the city's daily mean temperature, a seasonal cosine (北京 -3 ... 27 °C,
  上海 5 ... 29 °C, 广州 14 ... 29 °C) plus an AR(1) anomaly (phi 0.75, sd 2.2 °C); rain or
  snow days are 2 °C cooler. Snow falls only at 1 °C or below. heat_c: × 0.97 above 32 °C.
* trend_c: recovery from the COVID-19 wave of early January 2023 (× 1 - 0.35 e^(-t/18), t in
  days from 2023-01-01) and steady growth, 2% (北京), 3% (上海), 4% (广州) a year.
* extension_l: each city's highest-numbered line gets an extension on 2024-06-29 (北京),
  2024-09-28 (上海) or 2024-11-30 (广州) and carries 20% more from that day on.
* noise: log-normal, 3% line-day plus 2% city-day (shared by the city's lines).

``scale`` multiplies the number of lines per city (12, 12 and 10 at scale 1; at least one),
which are numbered "1号线", "2号线", .... The raw file ``metro_ridership.ndjson`` holds one
JSON object per line of text, in (date, city, line) order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from sandbox import synth

START, END = "2023-01-01", "2024-12-31"
WEATHER = ["晴", "多云", "雨", "雪", "雾霾"]
# city: (lines at scale 1, mean entries per line, annual growth, Jan mean °C, Jul mean °C, extension date)
CITIES = {
    "北京": (12, 540_000, 0.02, -3.0, 27.0, "2024-06-29"),
    "上海": (12, 600_000, 0.03, 5.0, 29.0, "2024-09-28"),
    "广州": (10, 560_000, 0.04, 14.0, 29.0, "2024-11-30"),
}
# Monthly probabilities of precipitation and of haze per city (January ... December).
RAIN = {
    "北京": [0.05, 0.06, 0.08, 0.12, 0.15, 0.22, 0.40, 0.35, 0.18, 0.10, 0.07, 0.05],
    "上海": [0.30, 0.32, 0.36, 0.35, 0.35, 0.50, 0.38, 0.35, 0.30, 0.22, 0.25, 0.25],
    "广州": [0.15, 0.25, 0.35, 0.45, 0.55, 0.60, 0.55, 0.55, 0.45, 0.20, 0.12, 0.10],
}
HAZE = {
    "北京": [0.20, 0.18, 0.12, 0.06, 0.04, 0.03, 0.02, 0.02, 0.04, 0.08, 0.15, 0.22],
    "上海": [0.10, 0.08, 0.06, 0.03, 0.02, 0.01, 0.01, 0.01, 0.02, 0.03, 0.06, 0.10],
    "广州": [0.04, 0.03, 0.02, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.02, 0.03, 0.04],
}
WEATHER_EFFECT = np.array([1.0, 1.0, 0.95, 0.90, 0.98])
WEEKDAY = np.array([1.00, 1.02, 1.02, 1.02, 1.08, 0.72, 0.62])
ROWS_AT_SCALE_1 = sum(c[0] for c in CITIES.values()) * 731


def day_level(cal: synth.Calendar) -> np.ndarray:
    """The weekday profile, replaced by the holiday level on Calendar holidays."""
    sf = cal.spring_offset
    level = WEEKDAY[cal.dow].astype(float)
    before = (sf >= -8) & (sf <= -2)
    level = np.where(before, np.minimum(level, 0.95 - 0.4 * (sf + 8) / 6), level)
    after = (sf >= 7) & (sf <= 16)
    level = np.where(after, level * (0.38 + 0.62 * (sf - 6) / 10), level)
    level = np.where(cal.labour_day, 0.72, level)
    level = np.where(cal.golden_week, 0.68, level)
    return np.where((sf >= -1) & (sf <= 6), 0.38, level)


def _weather(rng: np.random.Generator, city: str, cal: synth.Calendar) -> tuple[np.ndarray, np.ndarray]:
    """Weather code (index into WEATHER) and daily mean temperature for one city."""
    n = len(cal.dates)
    _, _, _, t_jan, t_jul, _ = CITIES[city]
    month = cal.dates.astype("datetime64[M]").astype(int) % 12
    seasonal = (t_jan + t_jul) / 2 - (t_jul - t_jan) / 2 * np.cos(2 * np.pi * (cal.doy - 15) / 365.25)
    anomaly = np.empty(n)
    eps = rng.normal(0, 2.2 * np.sqrt(1 - 0.75**2), n)
    anomaly[0] = rng.normal(0, 2.2)
    for i in range(1, n):
        anomaly[i] = 0.75 * anomaly[i - 1] + eps[i]
    u = rng.random(n)
    p_rain, p_haze = np.array(RAIN[city])[month], np.array(HAZE[city])[month]
    code = np.where(u < p_rain, 2, np.where(u < p_rain + p_haze, 4, np.where(rng.random(n) < 0.45, 0, 1)))
    temp = seasonal + anomaly - 2.0 * (code == 2)
    code = np.where((code == 2) & (temp <= 1.0), 3, code)
    return code, np.round(temp, 1)


def generate(out: Path, *, seed: int, scale: float = 1.0) -> None:
    rng = np.random.default_rng(seed)
    cal = synth.Calendar.between(START, END)
    n_days = len(cal.dates)
    t = (cal.dates - cal.dates[0]).astype(int)
    level = day_level(cal)
    parts = []
    for city in sorted(CITIES):
        n_lines0, mean_entries, growth, *_, ext_date = CITIES[city]
        n_lines = max(1, round(n_lines0 * scale))
        number = np.arange(1, n_lines + 1)
        base = mean_entries * rng.lognormal(-(0.55**2) / 2, 0.55, n_lines) * (1 + 0.6 / number) / 1.15
        code, temp = _weather(rng, city, cal)
        heat = np.where(temp > 32, 0.97, 1.0)
        trend = (1 - 0.35 * np.exp(-t / 18)) * (1 + growth) ** (t / 365.25)
        city_day = level * WEATHER_EFFECT[code] * heat * trend * rng.lognormal(0, 0.02, n_days)
        extension = np.ones((n_lines, n_days))
        extension[-1, cal.dates >= np.datetime64(ext_date)] = 1.2
        lam = base[:, None] * city_day[None, :] * extension * rng.lognormal(0, 0.03, (n_lines, n_days))
        entries = rng.poisson(lam)
        lines = np.array([f"{k}号线" for k in number])
        order = np.argsort(lines)  # code-point order, as the published sort
        parts.append(
            {
                "entries": entries[order],
                "lines": lines[order],
                "code": code,
                "temp": temp,
                "city": city,
            }
        )
    # Rows in (date, city, line) order.
    dates, cities, lines, entries, weather, holiday, temps = [], [], [], [], [], [], []
    for p in parts:
        n_lines = len(p["lines"])
        dates.append(np.repeat(cal.dates, n_lines))
        cities.append(np.full(n_days * n_lines, p["city"]))
        lines.append(np.tile(p["lines"], n_days))
        entries.append(p["entries"].T.ravel())
        weather.append(np.repeat(np.array(WEATHER)[p["code"]], n_lines))
        holiday.append(np.repeat(cal.holiday, n_lines))
        temps.append(np.repeat(p["temp"], n_lines))
    table = pa.table(
        {
            "date": np.concatenate(dates),
            "city": np.concatenate(cities),
            "line": np.concatenate(lines),
            "entries": np.concatenate(entries),
            "weather": np.concatenate(weather),
            "is_holiday": np.concatenate(holiday),
            "temperature_c": np.concatenate(temps),
        }
    )
    table = table.sort_by([("date", "ascending"), ("city", "ascending"), ("line", "ascending")])
    synth.write_json(table, out / "metro_ridership.ndjson")
