"""Original ids as a person types them: a model's ids are integers (MovieLens) or strings (SKUs, UUIDs),
while a command line gives text. `as_id` finds the id a text means in a model's id index."""

from __future__ import annotations

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
