"""Building blocks for the seeded demo-data generators in ``datasets/*/recipe.py``.

The synthetic datasets must have structure a model can learn (weekly cycles, seasons, the
Spring Festival dip, Golden Week peaks, province effects) and personal-data columns shaped
like the real thing (names, resident ID numbers with a valid check digit, phone numbers),
so that de-identification and the k-anonymity gate are exercised on every build. All
randomness comes from one ``numpy.random.Generator`` seeded by the descriptor, so a build
is reproducible byte for byte.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

# Lunar New Year's Day (正月初一) per year.
SPRING_FESTIVAL = {
    2018: dt.date(2018, 2, 16),
    2019: dt.date(2019, 2, 5),
    2020: dt.date(2020, 1, 25),
    2021: dt.date(2021, 2, 12),
    2022: dt.date(2022, 2, 1),
    2023: dt.date(2023, 1, 22),
    2024: dt.date(2024, 2, 10),
    2025: dt.date(2025, 1, 29),
}

# (province, province code, [(city, city code), ...], relative size)
PROVINCES = [
    ("北京", "11", [("北京", "1101")], 1.3),
    ("上海", "31", [("上海", "3101")], 1.3),
    ("广东", "44", [("广州", "4401"), ("深圳", "4403"), ("佛山", "4406"), ("东莞", "4419")], 1.2),
    ("浙江", "33", [("杭州", "3301"), ("宁波", "3302"), ("温州", "3303")], 1.1),
    ("江苏", "32", [("南京", "3201"), ("苏州", "3205"), ("无锡", "3202")], 1.1),
    ("山东", "37", [("济南", "3701"), ("青岛", "3702"), ("烟台", "3706")], 1.0),
    ("河南", "41", [("郑州", "4101"), ("洛阳", "4103")], 0.9),
    ("湖北", "42", [("武汉", "4201"), ("宜昌", "4205")], 0.95),
    ("四川", "51", [("成都", "5101"), ("绵阳", "5107")], 0.95),
    ("陕西", "61", [("西安", "6101")], 0.9),
]
SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈")
GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉建国文斌宇浩凯婷雪琳晨欣怡子涵梓")


@dataclass(frozen=True)
class Calendar:
    """Day-level calendar features for a date range (arrays aligned by day)."""

    dates: np.ndarray  # datetime64[D]
    dow: np.ndarray  # 0 = Monday
    doy: np.ndarray
    year: np.ndarray
    spring_offset: np.ndarray  # days from the nearest Lunar New Year
    golden_week: np.ndarray  # bool, 1-7 October
    labour_day: np.ndarray  # bool, 1-5 May

    @classmethod
    def between(cls, start: str, end: str) -> Calendar:
        dates = np.arange(np.datetime64(start), np.datetime64(end) + 1)
        py = dates.astype("datetime64[D]").astype(object)
        sf = np.array([min(((d - s).days for s in SPRING_FESTIVAL.values()), key=abs) for d in py])
        month = np.array([d.month for d in py])
        day = np.array([d.day for d in py])
        return cls(
            dates=dates,
            dow=np.array([d.weekday() for d in py]),
            doy=np.array([d.timetuple().tm_yday for d in py]),
            year=np.array([d.year for d in py]),
            spring_offset=sf,
            golden_week=(month == 10) & (day <= 7),
            labour_day=(month == 5) & (day <= 5),
        )

    @property
    def holiday(self) -> np.ndarray:
        return self.golden_week | self.labour_day | ((self.spring_offset >= -1) & (self.spring_offset <= 6))


def cities() -> list[tuple[str, str, str, str, float]]:
    """(province, province code, city, city code, size) for every demo city."""
    return [(p, pc, c, cc, size) for p, pc, cs, size in PROVINCES for c, cc in cs]


def names(rng: np.random.Generator, n: int) -> np.ndarray:
    s = np.array(SURNAMES)[rng.integers(0, len(SURNAMES), n)]
    g1 = np.array(GIVEN)[rng.integers(0, len(GIVEN), n)]
    g2 = np.where(rng.random(n) < 0.6, np.array(GIVEN)[rng.integers(0, len(GIVEN), n)], "")
    return np.char.add(np.char.add(s, g1), g2)


_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
_ID_CHECK = np.array(list("10X98765432"))


def resident_ids(rng: np.random.Generator, area: np.ndarray, birth: np.ndarray) -> np.ndarray:
    """18-character resident ID numbers (GB 11643) with a valid ISO 7064 check character.

    ``area`` holds 6-digit area codes as strings, ``birth`` datetime64[D] birth dates.
    """
    n = len(area)
    seq = rng.integers(0, 1000, n)
    body = np.char.add(np.char.add(area.astype("U6"), np.datetime_as_string(birth).astype("U10")), "")
    body = np.char.replace(body, "-", "")
    body = np.char.add(body, np.char.zfill(seq.astype("U3"), 3))
    digits = np.frombuffer(body.astype("S17").tobytes(), dtype=np.uint8).reshape(n, 17) - ord("0")
    check = _ID_CHECK[(digits * _ID_WEIGHTS).sum(axis=1) % 11]
    return np.char.add(body, check)


def phones(rng: np.random.Generator, n: int) -> np.ndarray:
    prefix = np.array(["138", "139", "150", "158", "186", "188", "135", "177"])[rng.integers(0, 8, n)]
    return np.char.add(prefix, np.char.zfill(rng.integers(0, 10**8, n).astype("U8"), 8))


def write_csv(table: pa.Table, path: Path, encoding: str = "utf-8", delimiter: str = ",") -> Path:
    """Write ``table`` as CSV; 'utf-8-sig' and 'gbk' mimic Excel exports from Chinese portals."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false").fetchall()  # generators report through the build's Reporter
    con.register("t", table)
    if encoding == "utf-8":
        con.execute(f"COPY t TO '{path}' (HEADER, DELIMITER '{delimiter}')").fetchall()
        return path
    tmp = path.with_suffix(".utf8.tmp")
    con.execute(f"COPY t TO '{tmp}' (HEADER, DELIMITER '{delimiter}')").fetchall()
    text = tmp.read_text("utf-8")
    tmp.unlink()
    path.write_bytes(text.encode("utf-8-sig" if encoding == "utf-8-sig" else "gbk"))
    return path


def write_json(table: pa.Table, path: Path, *, array: bool = False) -> Path:
    """Write ``table`` as newline-delimited JSON, or as one JSON array when ``array``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false").fetchall()  # generators report through the build's Reporter
    con.register("t", table)
    con.execute(f"COPY t TO '{path}' (FORMAT json{', ARRAY true' if array else ''})").fetchall()
    con.close()
    return path
