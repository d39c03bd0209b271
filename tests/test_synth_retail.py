"""The synthetic shop log: the Online Retail file's shape (what trips real users), reproducible."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from ncflow.data.synth_retail import FILE, GUEST_SHARE, smaller, write_retail

COLUMNS = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_retail(tmp_path_factory.mktemp("retail") / "shop", seed=3, preset=smaller(300, 200))


def _read(path: Path):
    # Every column as text, empty cells as nulls: how a reader that guesses nothing sees the file.
    opts = pacsv.ConvertOptions(column_types={c: "string" for c in COLUMNS}, strings_can_be_null=True)
    return pacsv.read_csv(path, convert_options=opts)


def test_shape_of_a_real_shop_log(shop: Path) -> None:
    assert shop.name == FILE
    t = _read(shop)
    assert t.column_names == COLUMNS
    guests = t["CustomerID"].null_count / t.num_rows
    assert abs(guests - GUEST_SHARE) < 0.03
    customers = pc.drop_null(t["CustomerID"]).to_pylist()
    assert all(re.fullmatch(r"[0-9a-f]{12}", c) for c in customers)
    assert 250 < len(set(customers)) <= 300  # every customer buys; a few may fall after the year's end
    dates = t["InvoiceDate"].to_pylist()
    assert all(re.fullmatch(r"\d{1,2}/\d{1,2}/20(10|11) \d{1,2}:\d\d", d) for d in dates)
    assert any(re.match(r"\d/\d/", d) for d in dates)  # no leading zeros
    codes = set(t["StockCode"].to_pylist())
    assert any(c[-1].isalpha() for c in codes) and any(c.isdigit() for c in codes)
    assert len(set(t["Description"].to_pylist())) == len(codes)  # one title per stock code


def test_returns_are_negative_lines_on_c_invoices(shop: Path) -> None:
    t = _read(shop)
    qty = np.array(t["Quantity"].to_pylist(), dtype=np.int64)
    is_c = np.array([x.startswith("C") for x in t["InvoiceNo"].to_pylist()])
    assert 0.005 < is_c.mean() < 0.05
    assert (qty[is_c] < 0).all() and (qty[~is_c] > 0).all()


def test_reproducible(shop: Path, tmp_path: Path) -> None:
    again = write_retail(tmp_path / "again", seed=3, preset=smaller(300, 200))
    assert again.read_bytes() == shop.read_bytes()
    other = write_retail(tmp_path / "other", seed=4, preset=smaller(300, 200))
    assert other.read_bytes() != shop.read_bytes()


def test_command_writes_the_full_size_log(tmp_path: Path) -> None:
    from ncflow.cli import main

    main(["synth", "retail", "--out", str(tmp_path / "shop")])
    t = _read(tmp_path / "shop" / FILE)
    assert 500_000 < t.num_rows < 600_000  # the Online Retail file has 541,909 lines
    assert 3_600 < len(set(t["StockCode"].to_pylist())) <= 3_684


def test_an_invoice_is_one_visit(shop: Path) -> None:
    t = _read(shop)
    seen: dict[str, tuple[str, str | None]] = {}
    for invoice, date, customer in zip(
        t["InvoiceNo"].to_pylist(), t["InvoiceDate"].to_pylist(), t["CustomerID"].to_pylist(), strict=True
    ):
        assert seen.setdefault(invoice, (date, customer)) == (date, customer), invoice
