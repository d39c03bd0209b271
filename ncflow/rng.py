"""A counter-based random generator that gives the same numbers on NumPy and CuPy.

Value i of a stream is a pure function of (key, i): splitmix64's finaliser over uint64 arithmetic,
which wraps identically on both backends. So a GPU run and its CPU twin in CI draw the very same
negatives, a retried epoch sees exactly the same samples, and no generator state needs saving.
"""

from __future__ import annotations

from types import ModuleType

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15  # 2^64 / golden ratio: splitmix64's increment


def mix64_int(x: int) -> int:
    """splitmix64's finaliser on a Python int, for deriving stream keys."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & MASK64
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & MASK64
    return x ^ (x >> 31)


def stream_key(*words: int) -> int:
    """One 64-bit key from several integers (seed, epoch, rank, purpose, round...)."""
    key = 0
    for word in words:
        key = mix64_int((key + GOLDEN + (word & MASK64)) & MASK64)
    return key


def mix64(xp: ModuleType, x):
    x = x ^ (x >> xp.uint64(30))
    x = x * xp.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> xp.uint64(27))
    x = x * xp.uint64(0x94D049BB133111EB)
    return x ^ (x >> xp.uint64(31))


def random_bits(xp: ModuleType, positions, key: int):
    """64 random bits for each position (an integer array of counters) of stream `key`."""
    return mix64(xp, positions.astype(xp.uint64) * xp.uint64(GOLDEN) + xp.uint64(key))


def uniform_ints(xp: ModuleType, positions, high: int, key: int):
    """Integers in [0, high) for each position; Lemire's multiply-shift on the top 32 bits (high < 2^32)."""
    top = random_bits(xp, positions, key) >> xp.uint64(32)
    return ((top * xp.uint64(high)) >> xp.uint64(32)).astype(xp.int32)
