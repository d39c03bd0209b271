#!/usr/bin/env bash
# GPU-only code paths checked on the GPU machine (their CPU twins run in CI):
#   1. preprocessing on CuPy writes the same split as on NumPy (counter-based random draws);
#   2. the test suite's CuPy-vs-NumPy sampler test, which CI skips;
#   3. the real trainer CLI on the ml20m preset with its YAML defaults, then an independent evaluation.
# Usage: bash bench/gpu_checks.sh OUT_DIR   (after `bash bench/run_gpu.sh OUT_DIR synth`)
set -u
OUT=${1:?out dir}
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
DATA=/tmp/ncflow-bench
GPU=$(python3 -m ncflow.cli data synth-ml20m --data-dir $DATA/gpu-run --device gpu | tail -1)
CPU=$(python3 -m ncflow.cli data synth-ml20m --data-dir $DATA/cpu-run --device cpu | tail -1)
python3 - "$GPU" "$CPU" <<'PY'
import sys, pyarrow.parquet as pq
gpu, cpu = sys.argv[1:]
for name in ("train", "test", "users", "items"):
    same = pq.read_table(f"{gpu}/{name}.parquet").equals(pq.read_table(f"{cpu}/{name}.parquet"))
    print(f"{name}.parquet identical on CuPy and NumPy: {same}")
PY
python3 -m pytest -q tests/test_sampler.py tests/test_metrics.py tests/test_ncf_model.py -p no:cacheprovider 2>&1 | tail -3
python3 -m models.ncf.train --data "$GPU" --out /tmp/ncf-run --target-hr 0.85 2>"$OUT/train.err" | tee "$OUT/train.jsonl" | tail -1
python3 -m models.ncf.evaluate --bundle /tmp/ncf-run/bundle --data "$GPU" --device cuda
