"""Per-epoch negative sampling and shuffling for NCF, one code path for NumPy and CuPy (`xp`).

Every random number is a pure function of (seed, epoch, rank, stream, element index): a counter-based
hash (splitmix64's finaliser over uint64, which wraps the same way on both backends). So a GPU epoch
and its CPU twin in CI draw identical negatives and orders, a resumed epoch redraws exactly what it
drew before, and there is no generator state to save or to keep in step across ranks.
The hash lives in ncflow/rng.py (shared with the test-negative draw of preprocessing).
Imports only numpy/cupy and small ncflow modules: it runs on the GPU machine without extras.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ncflow import rng
from ncflow.data.arrays import member
from ncflow.rng import random_bits as _bits
from ncflow.rng import stream_key

PERM_STREAM = 0x7065726D  # "perm": the shuffle's stream, apart from the negatives' streams 0, 1, 2, ...


def uniform_ints(xp: ModuleType, n: int, high: int, *, seed: int, epoch: int, rank: int, stream: int = 0):
    """n int32 values uniform in [0, high); value i depends only on (seed, epoch, rank, stream, i)."""
    if not 1 <= high <= 1 << 31:
        raise ValueError(f"high must be in [1, 2^31] for int32 output, got {high}")
    key = stream_key(seed, epoch, rank, stream)
    return rng.uniform_ints(xp, xp.arange(n, dtype=xp.uint64), high, key)  # (n,)


def permutation(xp: ModuleType, n: int, *, seed: int, epoch: int, rank: int):
    """A shuffling order of range(n) (int64), identical on NumPy and CuPy.

    argsort of hashed indices: the hashes are distinct (see _bits), so the order does not depend on the
    sort algorithm or its stability.
    """
    key = stream_key(seed, epoch, rank, PERM_STREAM)
    return xp.argsort(_bits(xp, xp.arange(n, dtype=xp.uint64), key)).astype(xp.int64, copy=False)  # (n,)


def augment(
    xp: ModuleType,
    users: Any,
    items: Any,
    n_items: int,
    *,
    negatives: int = 4,
    seed: int,
    epoch: int,
    rank: int,
    verify_keys: Any = None,
    max_rounds: int = 64,
) -> tuple[Any, Any, Any]:
    """One epoch's training samples: the P positives, then `negatives` uniform random items for each.

    users, items: (P,) integer arrays (their dtypes are kept). Returns users, items (P*(1+negatives),)
    and labels float32 (1.0 for the first P, 0.0 after; float32 so BCE-with-logits takes them as they
    are). Sample P + j*P + p is negative j of positive p, with that positive's user.

    verify_keys=None: the "shortcut" of NVIDIA's NCF, negatives are not checked and about 0.5% of them
    are training positives on ml-20m. verify_keys: the sorted, distinct int64 keys user*n_items+item of
    the training positives; negatives that hit one are redrawn (stream 1, 2, ... at the same index)
    until none does. ValueError if a user has every item, or if hits remain after max_rounds.
    """
    if users.ndim != 1 or users.shape != items.shape:
        raise ValueError(f"users and items must be 1-D of one length, got {users.shape} and {items.shape}")
    if negatives < 0:
        raise ValueError(f"negatives must be >= 0, got {negatives}")
    p = users.size
    neg_items = draw_negatives(
        xp, users, n_items, negatives=negatives, seed=seed, epoch=epoch, rank=rank,
        verify_keys=verify_keys, max_rounds=max_rounds,
    ).reshape(-1)  # (P*neg,)  # fmt: skip
    out_users = xp.tile(users, 1 + negatives)  # (P*(1+neg),), each block a copy of users
    out_items = xp.concatenate([items, neg_items.astype(items.dtype)])  # (P*(1+neg),)
    labels = xp.zeros(p * (1 + negatives), dtype=xp.float32)
    labels[:p] = 1.0
    return out_users, out_items, labels


def draw_negatives(
    xp: ModuleType,
    users: Any,
    n_items: int,
    *,
    negatives: int = 4,
    seed: int,
    epoch: int,
    rank: int,
    verify_keys: Any = None,
    max_rounds: int = 64,
) -> Any:
    """(negatives, P) int32 items: row j holds negative j of every positive (the layout `augment` uses).

    The trainer calls this directly: it pairs each positive with its negatives in one batch and never
    materialises the tiled users.
    """
    p = users.size
    neg_items = uniform_ints(xp, p * negatives, n_items, seed=seed, epoch=epoch, rank=rank)  # (P*neg,)
    if verify_keys is not None:
        neg_users = xp.tile(users, negatives)
        _redraw_hits(xp, neg_users, neg_items, n_items, verify_keys, seed, epoch, rank, max_rounds)
    return neg_items.reshape(negatives, p)


def _redraw_hits(xp, neg_users, neg_items, n_items, verify_keys, seed, epoch, rank, max_rounds) -> None:
    """Rejection sampling in place: redraw the negatives that are the user's positives, round by round.

    Round r redraws from stream r at the sample's own index, so the result does not depend on how many
    other samples hit. Vectorised over the hits; one host sync per round (hits shrink ~100x per round).
    """
    nu = neg_users.astype(xp.int64)
    todo = xp.nonzero(member(xp, verify_keys, nu * n_items + neg_items))[0]  # (H,) int64
    for r in range(1, max_rounds + 1):
        if todo.size == 0:
            return
        draw = rng.uniform_ints(xp, todo, n_items, stream_key(seed, epoch, rank, r))  # (H,)
        neg_items[todo] = draw
        todo = todo[member(xp, verify_keys, nu[todo] * n_items + draw)]
    if todo.size == 0:
        return
    left = xp.unique(nu[todo])
    counts = xp.searchsorted(verify_keys, (left + 1) * n_items) - xp.searchsorted(verify_keys, left * n_items)
    full = left[counts >= n_items]
    if full.size:
        raise ValueError(f"user {int(full[0])} has all {n_items} items as positives: no negative exists")
    raise ValueError(
        f"{todo.size} negatives still hit a positive after {max_rounds} redraw rounds: "
        f"some users have nearly every item; raise max_rounds or drop those users"
    )
