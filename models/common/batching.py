"""How an epoch's examples are cut into steps."""

from __future__ import annotations

import math


def even_batches(n: int, max_batch: int) -> tuple[int, int]:
    """(batch, steps): the fewest steps of at most `max_batch` covering `n`, all of one size.

    One size means one compiled graph; n - batch * steps < steps examples are left for a later epoch
    (a reshuffle picks others), instead of up to a whole batch when the last partial batch is dropped.
    """
    if n < 1:
        raise ValueError("no examples to batch")
    steps = math.ceil(n / max(1, max_batch))
    return n // steps, steps
