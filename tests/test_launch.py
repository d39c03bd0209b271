"""The trainer's environment: a repeat run on the same worker finds its bytecode and kernel caches."""

from __future__ import annotations

import sys
from pathlib import Path

from ncflow.launch import run_trainer

PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import probe_module
print(json.dumps({"event": "done", "dont_write_bytecode": sys.dont_write_bytecode,
                  "pycache_prefix": sys.pycache_prefix, "cached": probe_module.__cached__}))
"""


def test_trainers_write_bytecode_under_the_ncflow_cache_even_where_it_is_switched_off(
    tmp_path: Path, monkeypatch
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "probe_module.py").write_text("VALUE = 1\n")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # as the GPU image sets it
    monkeypatch.delenv("PYTHONPYCACHEPREFIX", raising=False)
    monkeypatch.setenv("NCFLOW_CACHE_DIR", str(tmp_path / "cache"))

    done = run_trainer([sys.executable, "-c", PROBE, str(source)]).done

    assert done["dont_write_bytecode"] is False
    assert Path(done["pycache_prefix"]) == tmp_path / "cache" / "pycache"
    assert Path(done["cached"]).is_file()  # written under the prefix, not beside the source
    assert Path(done["cached"]).is_relative_to(tmp_path / "cache")
    assert not (source / "__pycache__").exists()


def test_a_cache_location_the_user_set_wins(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(tmp_path / "mine"))
    probe = "import json, sys; print(json.dumps({'event': 'done', 'prefix': sys.pycache_prefix}))"
    assert run_trainer([sys.executable, "-c", probe]).done["prefix"] == str(tmp_path / "mine")
