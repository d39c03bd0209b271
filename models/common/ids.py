"""Original ids as a person types them: a model's ids are integers (MovieLens) or strings (SKUs, UUIDs),
while a command line gives text. `as_id` finds the id a text means in a model's id index."""

from __future__ import annotations

import warnings
from collections.abc import Mapping


def as_id(value: int | str, index: Mapping[int | str, int]) -> int | str:
    """`value` as a key of `index`: itself if present, else the integer it spells (`"42"` -> 42); an
    unknown id comes back unchanged, for the caller's "not known" message."""
    if value in index:
        return value
    if isinstance(value, str):
        try:
            number = int(value)
        except ValueError:
            return value
        if number in index:
            return number
    return value


def known_indices(item_ids: list, index: Mapping[int | str, int], stacklevel: int = 2) -> list[int]:
    """The sorted, distinct indices of the ids `index` knows, for a fold-in: ValueError when it knows
    none, a warning (counting the rest, at the caller's `stacklevel`) when it misses some."""
    known = sorted({index[i] for i in item_ids if i in index})
    unknown = sum(1 for i in item_ids if i not in index)
    if not known:
        raise ValueError(f"none of the {len(item_ids)} item ids is known to this model: nothing to fold in")
    if unknown:
        warnings.warn(
            f"{unknown} of {len(item_ids)} item ids are unknown to this model and were ignored",
            stacklevel=stacklevel + 1,
        )
    return known
