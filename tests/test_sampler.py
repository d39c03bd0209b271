import numpy as np
import pytest

from models.ncf import sampler
from models.ncf.sampler import augment, permutation, uniform_ints
from ncflow.xp import cupy_or_none

pytestmark = pytest.mark.filterwarnings("error")  # no uint64 overflow (or any) warnings from NumPy

KW = {"seed": 1, "epoch": 2, "rank": 3}


def small_dataset(n_users=30, n_items=25, seed=0):
    """Positives with some heavy users (up to 80% of the items) so verification has work to do."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        k = rng.integers(1, int(0.8 * n_items) + 1)
        for i in rng.choice(n_items, size=k, replace=False):
            users.append(u)
            items.append(i)
    users, items = np.array(users, dtype=np.int32), np.array(items, dtype=np.int32)
    keys = np.unique(users.astype(np.int64) * n_items + items)  # sorted, distinct
    return users, items, keys


def test_uniform_ints_range_and_determinism():
    x = uniform_ints(np, 10_000, 37, **KW)
    assert x.dtype == np.int32 and x.shape == (10_000,) and x.flags.c_contiguous
    assert x.min() == 0 and x.max() == 36
    assert np.array_equal(x, uniform_ints(np, 10_000, 37, **KW))
    assert np.array_equal(x[:100], uniform_ints(np, 100, 37, **KW))  # value i depends on i, not on n
    for change in ({"seed": 9}, {"epoch": 9}, {"rank": 9}, {"stream": 9}):
        other = uniform_ints(np, 10_000, 37, **{**KW, **change})
        assert (other != x).mean() > 0.9, change
    assert uniform_ints(np, 0, 5, **KW).shape == (0,)
    assert uniform_ints(np, 5, 2**31, **KW).max() < 2**31
    for bad in (0, 2**31 + 1):
        with pytest.raises(ValueError):
            uniform_ints(np, 5, bad, **KW)


def test_uniform_ints_pinned_values():
    # The stream is part of reproducibility across versions: changing the hash must be deliberate.
    got = uniform_ints(np, 8, 1000, seed=0, epoch=0, rank=0).tolist()
    assert got == [166, 471, 724, 303, 309, 933, 5, 448]


def test_uniform_ints_roughly_uniform():
    high, n = 50, 200_000
    counts = np.bincount(uniform_ints(np, n, high, **KW), minlength=high)
    expected = n / high
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 49 + 6 * np.sqrt(2 * 49)  # 49 degrees of freedom: mean 49, sd ~10


def test_same_numbers_as_ncflow_rng():
    rng = pytest.importorskip("ncflow.rng")
    key = rng.stream_key(1, 2, 3, 0)
    want = rng.uniform_ints(np, np.arange(1000), 26_744, key)
    assert np.array_equal(uniform_ints(np, 1000, 26_744, **KW), want)


def test_augment_layout():
    users = np.array([4, 0, 7], dtype=np.int32)
    items = np.array([1, 2, 3], dtype=np.int64)
    u, i, y = augment(np, users, items, 10, negatives=4, **KW)
    assert u.shape == i.shape == y.shape == (15,)
    assert u.dtype == np.int32 and i.dtype == np.int64 and y.dtype == np.float32
    assert all(a.flags.c_contiguous for a in (u, i, y))
    assert np.array_equal(u, np.tile(users, 5))  # negative j of positive p sits at 3 + 3j + p
    assert np.array_equal(i[:3], items) and np.all((i[3:] >= 0) & (i[3:] < 10))
    assert np.array_equal(y, np.r_[np.ones(3), np.zeros(12)].astype(np.float32))
    _, i0, y0 = augment(np, users, items, 10, negatives=0, **KW)
    assert np.array_equal(i0, items) and np.all(y0 == 1)


def test_augment_deterministic_and_varies():
    users, items, _ = small_dataset()
    _, i, _ = augment(np, users, items, 25, **KW)
    assert np.array_equal(i, augment(np, users, items, 25, **KW)[1])
    for change in ({"seed": 9}, {"epoch": 9}, {"rank": 9}):
        other = augment(np, users, items, 25, **{**KW, **change})[1]
        assert (other[users.size :] != i[users.size :]).mean() > 0.8, change


def test_augment_verified_never_returns_a_positive():
    n_items = 25
    users, items, keys = small_dataset(n_items=n_items)
    positives = set(zip(users.tolist(), items.tolist()))
    p = users.size
    for epoch in range(3):
        raw = augment(np, users, items, n_items, seed=0, epoch=epoch, rank=0)[1]
        u, i, _ = augment(np, users, items, n_items, seed=0, epoch=epoch, rank=0, verify_keys=keys)
        neg = list(zip(u[p:].tolist(), i[p:].tolist()))
        raw_neg = list(zip(u[p:].tolist(), raw[p:].tolist()))
        assert sum(pair in positives for pair in raw_neg) > 0.2 * len(neg)  # the shortcut does hit
        assert not any(pair in positives for pair in neg)
        # samples that did not hit keep their first draw: verification only touches the hits
        kept = [a == b for a, b in zip(neg, raw_neg) if b not in positives]
        assert all(kept) and len(kept) > 0
        assert np.array_equal(i[:p], items) and np.all((i >= 0) & (i < n_items))


def test_augment_verified_impossible():
    users = np.array([0, 0, 0, 1], dtype=np.int32)
    items = np.array([0, 1, 2, 0], dtype=np.int32)
    keys = np.unique(users.astype(np.int64) * 3 + items)
    with pytest.raises(ValueError, match="user 0 has all 3 items"):
        augment(np, users, items, 3, verify_keys=keys, **KW)
    # user 0 has 999 of 1000 items: rejection rarely finds the one negative within 2 rounds
    users = np.zeros(999, dtype=np.int32)
    items = np.arange(999, dtype=np.int32)
    with pytest.raises(ValueError, match="after 2 redraw rounds"):
        augment(np, users, items, 1000, verify_keys=items.astype(np.int64), max_rounds=2, **KW)


def test_permutation():
    perm = permutation(np, 10_000, **KW)
    assert perm.dtype == np.int64 and perm.flags.c_contiguous
    assert np.array_equal(np.sort(perm), np.arange(10_000))
    assert np.array_equal(perm, permutation(np, 10_000, **KW))
    for change in ({"seed": 9}, {"epoch": 9}, {"rank": 9}):
        assert (permutation(np, 10_000, **{**KW, **change}) != perm).mean() > 0.99, change
    assert permutation(np, 0, **KW).shape == (0,)


def test_stream_key_words_matter():
    keys = {
        sampler.stream_key(s, e, r, t) for s in range(3) for e in range(3) for r in range(3) for t in range(3)
    }
    assert len(keys) == 81


@pytest.mark.skipif(cupy_or_none() is None, reason="needs CuPy and a CUDA GPU")
def test_numpy_and_cupy_agree():
    import cupy as cp

    users, items, keys = small_dataset(n_users=300, n_items=200)
    assert np.array_equal(
        uniform_ints(np, 100_000, 26_744, **KW), uniform_ints(cp, 100_000, 26_744, **KW).get()
    )
    assert np.array_equal(permutation(np, 100_000, **KW), permutation(cp, 100_000, **KW).get())
    for verify in (False, True):
        got_np = augment(np, users, items, 200, verify_keys=keys if verify else None, **KW)
        got_cp = augment(
            cp,
            cp.asarray(users),
            cp.asarray(items),
            200,
            verify_keys=cp.asarray(keys) if verify else None,
            **KW,
        )
        for a, b in zip(got_np, got_cp):
            assert a.dtype == b.dtype and np.array_equal(a, b.get())
