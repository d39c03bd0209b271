"""A synthetic shop log shaped like the UCI Online Retail file, for trying ncflow on a real-looking log.

    ncflow synth retail --out shop        # shop/online_retail.csv (~540k rows) and shop/synth.json

A real log is not a MovieLens file, and what trips users up is its shape, so the shape is copied:
invoice lines (InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID,
Country); string stock codes such as 85123A; customers as 12-hex ids; times as M/D/YYYY H:MM over one
year (2010-12-01 .. 2011-12-09); a quarter of the lines without a customer (guest checkouts); returns
as negative quantities on invoices starting with C; items bought again and again.

Who buys what comes from synth.py's planted model (popularity times a low-rank preference), so a model
has something to learn beyond popularity. Everything is drawn from one seed: the file is reproducible.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ncflow.atomic import atomic_dir
from ncflow.data.synth import SynthPreset, _Model, _rng
from ncflow.errors import NcflowError

FILE = "online_retail.csv"
# The Online Retail file's shape: 4,372 customers, 3,684 stock codes, ~267k distinct (customer, item)
# pairs; customers with a single purchase exist, so the minimum is 2 (leave-one-out needs two).
RETAIL = SynthPreset(
    4372,
    3684,
    61.0,
    rank=16,
    temperature=0.5,
    zipf_a=0.9,
    zipf_k=20.0,
    user_sigma=1.3,
    cap_frac=0.3,
    min_per_user=2,
    description="a shop's year of invoice lines: 4,372 customers x 3,684 stock codes",
)
GUEST_SHARE = 0.25  # lines without a customer, as in the Online Retail file
RETURN_SHARE = 0.02  # lines that are returns (negative quantity, invoice C...)
_START = dt.datetime(2010, 12, 1, 8, 0)
_DAYS = 373  # .. 2011-12-09
_WORDS_A = ("WHITE", "RED", "PINK", "BLUE", "GREEN", "VINTAGE", "RETRO", "JUMBO", "SMALL", "REGENCY")
_WORDS_B = ("HANGING", "HEART", "PAISLEY", "SPOTTY", "FLORAL", "GLASS", "METAL", "WOODEN", "LACE", "STAR")
_WORDS_C = (
    "T-LIGHT HOLDER",
    "LANTERN",
    "BAG",
    "MUG",
    "TEACUP AND SAUCER",
    "CAKE STAND",
    "DOORSTOP",
    "NOTEBOOK",
    "CANDLE",
    "BUNTING",
    "PHOTO FRAME",
    "LUNCH BOX",
)
_WORDS_D = ("", "", " SET OF 3", " PACK OF 12", " LARGE", " MINI")
_COUNTRIES = ("United Kingdom", "Germany", "France", "EIRE", "Spain", "Netherlands", "Belgium")
_COUNTRY_P = (0.89, 0.03, 0.03, 0.02, 0.01, 0.01, 0.01)


def write_retail(out: Path, seed: int = 0, preset: SynthPreset = RETAIL) -> Path:
    """Write `online_retail.csv` and `synth.json` into the folder `out`, atomically; return the CSV."""
    if not isinstance(seed, int) or seed < 0:
        raise NcflowError(f"synthetic seed must be a non-negative integer, got {seed!r}")
    model = _Model(preset, seed)
    pairs = [
        model.sample(lo, min(lo + model.chunk, preset.n_users), i)
        for i, lo in enumerate(range(0, preset.n_users, model.chunk))
    ]
    table = pa.concat_tables(pairs)
    user = table["userId"].to_numpy() - 1
    item = np.searchsorted(model.movie_ids, table["movieId"].to_numpy())
    rng = _rng(seed, 7)
    lines = _invoice_lines(user, item, preset.n_users, preset.n_items, rng)
    out = Path(out)
    with atomic_dir(out) as tmp:
        with open(tmp / FILE, "wb") as fh:  # the header unquoted, as the Online Retail file has it
            fh.write((",".join(lines.column_names) + "\n").encode())
            pacsv.write_csv(lines, fh, pacsv.WriteOptions(include_header=False, quoting_style="none"))
        meta = {
            "preset": "retail",
            "seed": seed,
            "rows": lines.num_rows,
            "pairs": int(user.size),
            "description": RETAIL.description if preset == RETAIL else preset.description,
            "params": asdict(preset),
        }
        (tmp / "synth.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out / FILE


def _invoice_lines(
    user: np.ndarray, item: np.ndarray, n_users: int, n_items: int, rng: np.random.Generator
) -> pa.Table:
    """Purchases of each (customer, item) pair spread over the customer's visits, plus guests and returns."""
    # Repeat purchases: a pair is bought 1 + Geometric times; popular shop items are bought again more.
    repeats = rng.geometric(0.66, user.size)  # 1.5 lines per pair, as in the file
    u = np.repeat(user, repeats)
    i = np.repeat(item, repeats)
    # Visits: each customer shops on a few days of the year; a line lands on one of them.
    visits_per_user = 1 + rng.poisson(np.clip(np.bincount(u, minlength=n_users) / 8.0, 0, 60))
    first_visit = np.r_[0, np.cumsum(visits_per_user)[:-1]]
    visit = first_visit[u] + (rng.random(u.size) * visits_per_user[u]).astype(np.int64)
    visit_time = _shop_times(visits_per_user.sum(), rng)
    t = visit_time[visit]
    # Guests: lines without a customer, items by popularity (the customers' own mix).
    n_guest = int(round(u.size * GUEST_SHARE / (1 - GUEST_SHARE)))
    gi = i[rng.integers(0, i.size, n_guest)]
    guest_invoice = np.arange(n_guest) // 8  # about 8 lines per guest invoice, all at its time
    gt = _shop_times(n_guest, rng)[guest_invoice * 8]
    guest_visit = visits_per_user.sum() + guest_invoice
    # Returns: a share of the customers' lines come back, days later, with a negative quantity.
    ret = rng.random(u.size) < RETURN_SHARE
    rt = t[ret] + rng.integers(1, 30, ret.sum()) * 86400 + rng.integers(0, 3600, ret.sum())
    all_u = np.r_[u, np.full(n_guest, -1), u[ret]]
    all_i = np.r_[i, gi, i[ret]]
    all_t = np.r_[t, gt, rt]
    return_visit = visits_per_user.sum() + n_guest + np.arange(ret.sum())  # one return per invoice
    all_visit = np.r_[visit, guest_visit, return_visit]
    is_return = np.r_[np.zeros(u.size + n_guest, bool), np.ones(ret.sum(), bool)]
    qty = rng.choice(np.array([1, 2, 3, 4, 6, 12, 24]), all_u.size, p=[0.3, 0.2, 0.1, 0.1, 0.15, 0.1, 0.05])
    qty = np.where(is_return, -qty, qty)
    keep = all_t < _epoch(_START) + _DAYS * 86400  # the file ends on 2011-12-09
    order = np.lexsort((all_i, all_t))
    order = order[keep[order]]
    # Invoice numbers follow time: renumber the visits in order of their first line.
    visits, first = np.unique(all_visit[order], return_index=True)
    rank = np.empty(visits.size, np.int64)
    rank[np.argsort(first)] = np.arange(visits.size)
    invoice = 536365 + rank[np.searchsorted(visits, all_visit[order])]
    codes, titles, prices = _catalogue(n_items, rng)
    customers = _customer_ids(n_users, rng)
    countries = np.array(_COUNTRIES)[rng.choice(len(_COUNTRIES), n_users, p=_COUNTRY_P)]
    cu = all_u[order]
    return pa.table(
        {
            "InvoiceNo": pa.array(np.char.add(np.where(is_return[order], "C", ""), invoice.astype(str))),
            "StockCode": pa.array(codes[all_i[order]]),
            "Description": pa.array(titles[all_i[order]]),
            "Quantity": pa.array(qty[order], pa.int32()),
            "InvoiceDate": pa.array(_format_times(all_t[order])),
            "UnitPrice": pa.array(prices[all_i[order]]),
            "CustomerID": pa.array(np.where(cu >= 0, customers[np.maximum(cu, 0)], None), pa.string()),
            "Country": pa.array(np.where(cu >= 0, countries[np.maximum(cu, 0)], "United Kingdom")),
        }
    )


def _epoch(t: dt.datetime) -> int:
    return int(t.replace(tzinfo=dt.UTC).timestamp())


def _shop_times(n: int, rng: np.random.Generator) -> np.ndarray:
    """Seconds since the epoch: a day of the year (busier towards Christmas), 8:00 to 20:00."""
    day = np.floor(_DAYS * rng.random(n) ** 0.8)  # more days late in the year
    return _epoch(_START) + (day * 86400 + rng.integers(0, 12 * 3600, n)).astype(np.int64)


def _format_times(seconds: np.ndarray) -> list[str]:
    """M/D/YYYY H:MM, without leading zeros, as the Online Retail file writes them."""
    stamps = np.asarray(seconds, "datetime64[s]").astype(dt.datetime)
    return [f"{s.month}/{s.day}/{s.year} {s.hour}:{s.minute:02d}" for s in stamps]


def _catalogue(n_items: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stock codes (5 digits, some with a letter: 85123A), unique upper-case titles, unit prices."""
    numbers = rng.choice(np.arange(10000, 90000), n_items, replace=False)
    letters = np.array(["", "", "", "A", "B", "C"])[rng.integers(0, 6, n_items)]
    codes = np.char.add(numbers.astype(str), letters)
    a, b, c, d = (rng.integers(0, len(w), n_items) for w in (_WORDS_A, _WORDS_B, _WORDS_C, _WORDS_D))
    titles = np.array(
        [f"{_WORDS_A[w]} {_WORDS_B[x]} {_WORDS_C[y]}{_WORDS_D[z]}" for w, x, y, z in zip(a, b, c, d)]
    )
    _, first = np.unique(titles, return_index=True)
    repeat = np.ones(n_items, bool)
    repeat[first] = False
    titles[repeat] = np.char.add(titles[repeat], np.char.add(" ", codes[repeat]))  # keep titles unique
    prices = np.round(rng.lognormal(np.log(2.5), 0.8, n_items), 2)
    return codes, titles, prices


def _customer_ids(n_users: int, rng: np.random.Generator) -> np.ndarray:
    ids = np.unique(rng.integers(0, 1 << 48, 2 * n_users + 16))  # collisions are rare; drop them
    return np.array([f"{x:012x}" for x in rng.permutation(ids)[:n_users]])


def smaller(n_users: int, n_items: int) -> SynthPreset:
    """RETAIL's shape scaled down, for tests."""
    return replace(RETAIL, n_users=n_users, n_items=n_items, description=f"{n_users} x {n_items} shop")
