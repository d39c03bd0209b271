"""Where compiled GPU kernels persist, so a scheduled retraining run on the same worker starts warm.

Triton caches each kernel binary by its source and target, CuPy each NVRTC build; both default to
folders under the home directory. One ncflow folder holds both: kernels/ under NCFLOW_CACHE_DIR
(default ~/.cache/ncflow), which can be kept on a worker's persistent disk, or pre-warmed in an image.
Variables the user already set win.
"""

from __future__ import annotations

import os
from pathlib import Path


def kernel_cache_dir() -> Path:
    base = os.environ.get("NCFLOW_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ncflow"
    )
    return Path(base) / "kernels"


def use_kernel_cache() -> Path:
    """Point Triton's and CuPy's caches into the ncflow cache (before their first compile)."""
    root = kernel_cache_dir()
    os.environ.setdefault("TRITON_CACHE_DIR", str(root / "triton"))
    os.environ.setdefault("CUPY_CACHE_DIR", str(root / "cupy"))
    return root
