"""What a trainer tells the world: one JSON object per line on stdout for the orchestrator,
human-readable progress on stderr. Only the main rank speaks."""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from typing import Any


class Events:
    """Thread-safe: the checkpoint writer thread reports too, and a line must never be split."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.start = time.perf_counter()
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        record = {"event": event, "elapsed_s": round(time.perf_counter() - self.start, 3), **fields}
        self._write(sys.stdout, json.dumps(record, default=clean))

    def say(self, message: str) -> None:
        if self.enabled:
            self._write(sys.stderr, message)

    def _write(self, stream, line: str) -> None:
        with self._lock:  # one write per line: print() writes the text and its newline separately
            stream.write(line + "\n")
            stream.flush()


def rate(per_second: float, unit: str) -> str:
    """'179.8M samples/s' on a GPU, '20.4k samples/s' on a CPU: readable at either scale."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if per_second >= scale:
            return f"{per_second / scale:.1f}{suffix} {unit}/s"
    return f"{per_second:.0f} {unit}/s"


def process_age() -> float | None:
    """Seconds since this process started (Linux), so start-up costs before main() are counted too."""
    try:
        ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return round(uptime - ticks / os.sysconf("SC_CLK_TCK"), 3)


def clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return str(value)
