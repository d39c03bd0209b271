"""What a trainer tells the world: one JSON object per line on stdout for the orchestrator,
human-readable progress on stderr. Only the main rank speaks."""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any


class Events:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.start = time.perf_counter()

    def emit(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        record = {"event": event, "elapsed_s": round(time.perf_counter() - self.start, 3), **fields}
        print(json.dumps(record, default=clean), flush=True)

    def say(self, message: str) -> None:
        if self.enabled:
            print(message, file=sys.stderr, flush=True)


def clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return str(value)
