#!/usr/bin/env bash
# NCF training throughput of several code trees in one call on the GPU machine, same data: an A/B of a
# change against the code before it (steady-state samples/s, bench/ncf_train.py) and a step profile.
#   git archive BASE_COMMIT | tar -x -C .carry/v-base      # here, before the call (.carry is ignored)
#   bash bench/ab_train.sh OUT_DIR . .carry/v-base           # on the GPU machine, from the repo root
set -u
OUT=${1:?out dir}; shift; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
unset PYTHONDONTWRITEBYTECODE
if [ -d .whl ]; then python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl; fi
ROOT=$PWD; DATA=/tmp/ncflow-bench
export PYTHONPATH=/tmp/site:$ROOT
[ -f $DATA/raw/synth-ml20m/ratings.csv ] || python3 -m ncflow.cli synth ml20m --out $DATA/raw/synth-ml20m > /dev/null
NCF=$(python3 -m ncflow.cli data synth-ml20m --data-dir $DATA --device gpu 2>/dev/null | tail -1)
for tree in "$@"; do
  name=$(basename "$(cd "$tree" && pwd)"); [ "$tree" = . ] && name=head
  echo "== $name ($tree)"
  (cd "$tree" && PYTHONPATH=/tmp/site:$PWD python3 bench/ncf_kernel_check.py > "$OUT/check_$name.txt" 2>&1; tail -1 "$OUT/check_$name.txt")
  (cd "$tree" && PYTHONPATH=/tmp/site:$PWD CUDA_VISIBLE_DEVICES=0 python3 bench/ncf_train.py --data "$NCF" --precisions bf16 \
    --epochs 4 --json "$OUT/thr_$name.json" 2>&1 | grep -v Warn | tail -2)
  (cd "$tree" && PYTHONPATH=/tmp/site:$PWD CUDA_VISIBLE_DEVICES=0 python3 bench/ncf_step_profile.py --data "$NCF" \
    > "$OUT/profile_$name.txt" 2>&1; grep "===" "$OUT/profile_$name.txt")
done
