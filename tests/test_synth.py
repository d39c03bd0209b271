"""Synthetic data: MovieLens format, exact shape, determinism, long tails, and a learnable signal."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest

from ncflow.data.synth import PRESETS, write_synthetic
from ncflow.errors import NcflowError


def _read(d: Path) -> dict[str, np.ndarray]:
    """Read ratings.csv independently of the writer: ratings kept as text to check their spelling."""
    opts = pacsv.ConvertOptions(column_types={"rating": "string"})
    t = pacsv.read_csv(d / "ratings.csv", convert_options=opts)
    return {c: t[c].to_numpy(zero_copy_only=False) for c in t.column_names}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic("tiny", tmp_path_factory.mktemp("synth") / "tiny", seed=0)


def _check_shape(d: Path, preset: str) -> dict[str, np.ndarray]:
    p, r = PRESETS[preset], _read(d)
    users, movies = r["userId"], r["movieId"]
    assert users.min() == 1 and users.max() == p.n_users
    assert np.unique(users).size == p.n_users
    assert np.unique(movies).size == p.n_items
    assert movies.max() > p.n_items  # ids are a sparse sample: the reader's renumbering is exercised
    pairs = users.astype(np.int64) * (movies.max() + 1) + movies
    assert np.unique(pairs).size == pairs.size  # no duplicate (user, movie)
    assert np.bincount(users)[1:].min() >= 20
    meta = json.loads((d / "synth.json").read_text())
    assert (meta["n_users"], meta["n_items"], meta["n_ratings"]) == (p.n_users, p.n_items, users.size)
    return r


def test_tiny_counts_and_pairs(tiny: Path) -> None:
    r = _check_shape(tiny, "tiny")
    assert 15_000 < r["userId"].size < 25_000


def test_formats(tiny: Path) -> None:
    lines = (tiny / "ratings.csv").read_text().splitlines()
    assert lines[0] == "userId,movieId,rating,timestamp"
    for line in lines[1:50]:
        u, m, rating, ts = line.split(",")
        assert u.isdigit() and m.isdigit() and ts.isdigit()
        assert rating in {f"{x / 2:.1f}" for x in range(1, 11)}
    r = _read(tiny)
    assert set(r["rating"].tolist()) <= {f"{x / 2:.1f}" for x in range(1, 11)}
    assert len(set(r["rating"].tolist())) == 10
    ts = r["timestamp"]
    assert ts.dtype == np.int64 and 789_000_000 < ts.min() and ts.max() < 1_430_000_000  # 1995..2015
    order = np.lexsort((r["movieId"], r["userId"]))
    assert (order == np.arange(order.size)).all()  # sorted by (userId, movieId), as in MovieLens
    with open(tiny / "movies.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["movieId", "title", "genres"]
    assert {int(x[0]) for x in rows[1:]} == set(np.unique(r["movieId"]).tolist())
    assert all(x[1].startswith("Synthetic Movie ") and x[1].endswith(")") for x in rows[1:])
    assert any("," in x[1] for x in rows[1:])  # some need quoting, and survive it


def test_deterministic(tiny: Path, tmp_path: Path) -> None:
    again = write_synthetic("tiny", tmp_path / "again", seed=0)
    other = write_synthetic("tiny", tmp_path / "other", seed=1)
    for name in ("ratings.csv", "movies.csv", "synth.json"):
        assert (again / name).read_bytes() == (tiny / name).read_bytes()
    assert (other / "ratings.csv").read_bytes() != (tiny / "ratings.csv").read_bytes()


def test_long_tails(tiny: Path) -> None:
    r = _read(tiny)
    item_counts = np.sort(np.unique(r["movieId"], return_counts=True)[1])[::-1]
    top = item_counts[: item_counts.size // 10].sum() / item_counts.sum()
    user_counts = np.bincount(r["userId"])[1:]
    assert top > 0.30, top
    assert user_counts.max() / np.median(user_counts) > 3
    positives = np.bincount(r["userId"][r["rating"].astype(float) >= 4], minlength=user_counts.size + 1)
    assert (positives[1:] >= 5).mean() > 0.9  # the VAE-CF filter keeps most users


def test_unknown_preset(tmp_path: Path) -> None:
    with pytest.raises(NcflowError, match="tiny"):
        write_synthetic("ml100k", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []


def test_learnable(tiny: Path) -> None:
    """Leave-one-out as in NCF: a rank-r SVD must rank the latest item far better than popularity."""
    r = _read(tiny)
    users = r["userId"] - 1
    _, items = np.unique(r["movieId"], return_inverse=True)
    n, m = users.max() + 1, items.max() + 1
    order = np.lexsort((-r["timestamp"], users))
    latest = order[np.r_[True, users[order][1:] != users[order][:-1]]]
    held = np.empty(n, dtype=np.int64)
    held[users[latest]] = items[latest]
    train = np.ones(users.size, dtype=bool)
    train[latest] = False
    x = np.zeros((n, m))
    x[users[train], items[train]] = 1.0
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    k = PRESETS["tiny"].rank
    svd = (u[:, :k] * s[:k]) @ vt[:k]
    pop = np.broadcast_to(x.sum(axis=0), (n, m))
    rated = x > 0
    rated[np.arange(n), held] = True
    rng = np.random.default_rng(0)
    negatives = np.stack([rng.choice(np.flatnonzero(~rated[a]), 100, replace=False) for a in range(n)])

    def hr10(score: np.ndarray) -> float:
        pos = score[np.arange(n), held][:, None]
        return float(((np.take_along_axis(score, negatives, axis=1) > pos).sum(axis=1) < 10).mean())

    hr_svd, hr_pop = hr10(svd), hr10(pop)
    print(f"tiny leave-one-out HR@10: svd {hr_svd:.3f}, popularity {hr_pop:.3f}")
    assert hr_svd > hr_pop + 0.1


def test_ml1m_shape(tmp_path: Path) -> None:
    d = write_synthetic("ml1m", tmp_path / "ml1m")
    r = _check_shape(d, "ml1m")
    assert 950_000 < r["userId"].size < 1_050_000
