#!/usr/bin/env bash
# Where the NCF trainer's start-up goes on the GPU machine: import times (python -X importtime) and a
# cProfile of a whole warm run (imports included), after one cold run has filled the kernel caches.
#   bash bench/ncf_startup.sh OUT_DIR        (after bench/compare_reference.sh's data stage, or alone)
set -u
OUT=${1:?out dir}; mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} PYTHONUNBUFFERED=1 PYTHONPYCACHEPREFIX=/tmp/pycache-startup
unset PYTHONDONTWRITEBYTECODE  # the GPU image sets it; a worker's pip install has bytecode
DATA=/tmp/ncflow-bench
[ -f $DATA/raw/synth-ml20m/ratings.csv ] || python3 -m ncflow.cli synth ml20m --out $DATA/raw/synth-ml20m > /dev/null 2>&1
NCF=$(python3 -m ncflow.cli data synth-ml20m --data-dir $DATA --device gpu 2>/dev/null | tail -1)
run() { rm -rf /tmp/ncf-startup; "$@" --data "$NCF" --out /tmp/ncf-startup --epochs 2 --target-hr 1.0; }
run python3 -m models.ncf.train > "$OUT/startup_cold.jsonl" 2>/dev/null
run python3 -m models.ncf.train > "$OUT/startup_warm.jsonl" 2>/dev/null
run python3 -X importtime -m models.ncf.train 2> "$OUT/importtime.txt" > /dev/null
sort -t'|' -k2 -n "$OUT/importtime.txt" | tail -40 > "$OUT/importtime_top.txt"
rm -rf /tmp/ncf-startup
python3 - "$NCF" "$OUT" <<'PY'
import cProfile, pstats, sys, time
t0 = time.perf_counter()
data, out = sys.argv[1:]
argv = ["--data", data, "--out", "/tmp/ncf-startup", "--epochs", "2", "--target-hr", "1.0"]
cProfile.run("import models.ncf.train as t; t.main(argv)", f"{out}/warm.prof")
with open(f"{out}/profile_cumulative.txt", "w") as f:
    pstats.Stats(f"{out}/warm.prof", stream=f).sort_stats("cumulative").print_stats(80)
with open(f"{out}/profile_tottime.txt", "w") as f:
    pstats.Stats(f"{out}/warm.prof", stream=f).sort_stats("tottime").print_stats(40)
PY
for m in torch cupy triton pyarrow; do
  python3 -c "import time; t=time.perf_counter(); import $m; print('$m', round(time.perf_counter()-t, 2), 's')"
done | tee "$OUT/imports.txt"
python3 -c "import time; t=time.perf_counter(); import torch; a=time.perf_counter(); torch.zeros(1, device='cuda'); print('cuda init', round(time.perf_counter()-a, 2), 's')" | tee -a "$OUT/imports.txt"
grep -h '"start"' "$OUT"/startup_*.jsonl | python3 -c "import sys, json; [print(json.loads(l)['phases'], json.loads(l)['process_s']) for l in sys.stdin]"
