"""Sorting and grouping building blocks shared by the splits; NumPy or CuPy through `xp`."""

from __future__ import annotations

from types import ModuleType


def bit_length(xp: ModuleType, values) -> int:
    return int(values.max()).bit_length() if len(values) else 0


def sort_order(xp: ModuleType, primary, secondary):
    """Indices sorting by (primary, secondary), both non-negative integers.

    One radix sort of a packed 64-bit key when both fit (the common case, fast on GPU);
    a lexsort otherwise.
    """
    shift = bit_length(xp, secondary)
    if bit_length(xp, primary) + shift <= 63:
        packed = (primary.astype(xp.int64) << shift) | secondary.astype(xp.int64)
        return xp.argsort(packed, kind="stable") if xp.__name__ == "numpy" else xp.argsort(packed)
    return xp.lexsort(xp.stack([secondary, primary]))


def run_ends(xp: ModuleType, sorted_keys):
    """Mask of the last element of each run of equal keys in a sorted array."""
    last = xp.ones(len(sorted_keys), dtype=bool)
    last[:-1] = sorted_keys[:-1] != sorted_keys[1:]
    return last


def renumber(xp: ModuleType, ids):
    """Dense 0-based indices in order of original id, and the original ids (index -> id)."""
    originals, index = xp.unique(ids, return_inverse=True)
    return index.astype(xp.int32).reshape(-1), originals


def dense_rank(xp: ModuleType, values):
    """Replace values by their rank among distinct values: shrinks wide timestamps to few bits."""
    return xp.unique(values, return_inverse=True)[1].astype(xp.int64).reshape(-1)


def member(xp: ModuleType, sorted_keys, keys):
    """Which `keys` occur in `sorted_keys` (binary search: no hash table, same on CPU and GPU)."""
    if len(sorted_keys) == 0:
        return xp.zeros(keys.shape, dtype=bool)
    pos = xp.searchsorted(sorted_keys, keys)
    pos = xp.minimum(pos, len(sorted_keys) - 1)
    return sorted_keys[pos] == keys
