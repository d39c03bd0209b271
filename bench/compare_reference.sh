#!/usr/bin/env bash
# ncflow beside NVIDIA's PyTorch NCF (the reference), in ONE call on the GPU machine, same data:
# training samples/s on 1 and N GPUs, and wall time of the whole process to HR@10 TARGET, cold (empty
# kernel caches, as on a new worker) and warm (a repeat run on the same worker); plus VAE-CF users/s.
#
#   bash bench/compare_reference.sh [OUT_DIR [N_GPUS]]        # on the GPU machine, from the repo root
#     (OUT_DIR default: bench/results/<date>-<gpu>[x<N>], e.g. bench/results/2026-12-02-h200)
#   STAGES="env data check thr bare wall eager thrN wallN profile vae" TARGET=0.85 bash bench/compare_reference.sh ...
#
# Needs: the reference copied to .carry/reference (cp -r ../shared/reference/nvidia-ncf-pytorch
# .carry/reference), pydantic wheels in .whl/ (the GPU image lacks it; `ncflow data` uses it). Writes
# OUT_DIR/compare.json (bench/compare_summary.py: absolute figures and a `ratios` object) and logs.
set -u
N=${2:-$(nvidia-smi -L | wc -l)}
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | awk '{print tolower($NF)}')
OUT=${1:-bench/results/$(date +%F)-$gpu$([ "$N" -gt 1 ] && echo "x$N")}
STAGES=${STAGES:-"env data check thr bare wall eager thrN wallN profile vae"}; TARGET=${TARGET:-0.85}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
DATA=/tmp/ncflow-bench; REF=.carry/reference; export REF_DATA=/tmp/ncf-reference-data
# Python bytecode: this image's site-packages holds none, so every import compiles torch's sources,
# while a pip-installed worker has it. Both programs share one folder, filled by the throughput stage
# (it runs first, untimed for wall time). "Cold" is then a new worker: ncflow's Triton and CuPy kernel
# caches empty. "bare" also empties the bytecode (an image without any: reported, not a ratio).
export PYTHONPYCACHEPREFIX=/tmp/pycache-shared
# The image sets PYTHONDONTWRITEBYTECODE: without this every run of either program recompiles torch's
# sources (4-5 s). A worker with a normal pip install has bytecode; ncflow's launcher lifts it too.
unset PYTHONDONTWRITEBYTECODE
stage() { case " $STAGES " in *" $1 "*) return 0;; *) return 1;; esac; }
log() { echo "== $(date +%T) $*"; }
now() { date +%s.%N; }
# wall SECONDS_FILE -- command...: the whole process, from exec to exit, as a user waits for it
wall() { local f=$1; shift; shift; local t0; t0=$(now); "$@"; local rc=$?; python3 -c "print(round($(now) - $t0, 3))" > "$f"; return $rc; }

if stage env; then
  log env
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  python3 -c "import torch, cupy, triton; print('torch', torch.__version__, 'cupy', cupy.__version__, 'triton', triton.__version__, 'gpus', torch.cuda.device_count())" | tee "$OUT/versions.txt"
  echo "${NCFLOW_COMMIT:-$(git log -1 --format=%H 2>/dev/null)}" > "$OUT/commit.txt"  # the copy on the GPU machine may carry a stale .git
fi
if stage data; then
  log data: synthetic ml-20m-sized preset, ncflow preprocessing, reference format
  [ -f $DATA/raw/synth-ml20m/ratings.csv ] || python3 -m ncflow.cli synth ml20m --out $DATA/raw/synth-ml20m > /dev/null
fi
NCF=$(python3 -m ncflow.cli data synth-ml20m --data-dir $DATA --device gpu 2>"$OUT/data.err" | tail -1)
echo "ncf data: $NCF"
[ -f "$REF_DATA/feature_spec.yaml" ] || python3 $REF/to_reference_format.py "$NCF" "$REF_DATA" > /dev/null

if stage check; then
  log GPU kernels against their twins
  python3 bench/ncf_kernel_check.py 2>&1 | tee "$OUT/kernel_check.txt" | tail -3
fi
if stage thr; then
  log ncflow 1 GPU throughput
  CUDA_VISIBLE_DEVICES=0 python3 bench/ncf_train.py --data "$NCF" --precisions bf16 --epochs 4 --json "$OUT/thr_ncflow_1.json" 2>&1 | grep -v Warn | tail -4
  log reference 1 GPU throughput
  [ -z "${SKIP_REF:-}" ] && CUDA_VISIBLE_DEVICES=0 bash $REF/run.sh "$NCF" 1 -e 4 > "$OUT/thr_reference_1.log"; grep -c train_throughput "$OUT/thr_reference_1.log"
fi
if stage wall; then
  runs="cold warm"; stage bare && runs="bare $runs"; stage eager && runs="$runs eager"
  for run in $runs; do
    log "ncflow 1 GPU, wall time to HR@10 $TARGET ($run)"
    rm -rf /tmp/ncf-run-$run; case $run in bare|cold) rm -rf /tmp/ncflow-cache;; esac
    pycache=/tmp/pycache-shared; [ $run = bare ] && { pycache=/tmp/pycache-bare; rm -rf $pycache; }
    flags=""; [ $run = eager ] && flags="--no-cuda-graphs"  # warm caches, no CUDA graph: not a ratio
    PYTHONPYCACHEPREFIX=$pycache NCFLOW_CACHE_DIR=/tmp/ncflow-cache CUDA_VISIBLE_DEVICES=0 wall "$OUT/wall_ncflow_1_$run.s" -- \
      python3 -m models.ncf.train --data "$NCF" --out /tmp/ncf-run-$run --target-hr "$TARGET" $flags \
      > "$OUT/wall_ncflow_1_$run.jsonl" 2> "$OUT/wall_ncflow_1_$run.err"
    echo "  $(cat "$OUT/wall_ncflow_1_$run.s") s; $(tail -1 "$OUT/wall_ncflow_1_$run.err")"
  done
  log "reference 1 GPU, wall time to HR@10 $TARGET"
  [ -z "${SKIP_REF:-}" ] && CUDA_VISIBLE_DEVICES=0 wall "$OUT/wall_reference_1.s" -- bash $REF/run.sh "$NCF" 1 -e 30 --threshold "$TARGET" > "$OUT/wall_reference_1.log"
  echo "  $(cat "$OUT/wall_reference_1.s") s"
fi
if stage thrN; then
  for g in $(seq 2 "$N"); do
    case " 2 4 8 $N " in *" $g "*) ;; *) continue;; esac
    log "ncflow and reference, $g GPUs, throughput"
    torchrun --standalone --nproc-per-node "$g" bench/ncf_train.py --data "$NCF" --precisions bf16 --epochs 4 \
      --json "$OUT/thr_ncflow_$g.json" 2>&1 | grep -v Warn | tail -3
    bash $REF/run.sh "$NCF" "$g" -e 4 > "$OUT/thr_reference_$g.log"
  done
fi
if stage wallN; then
  log "ncflow $N GPUs, wall time to HR@10 $TARGET (warm caches)"
  NCFLOW_CACHE_DIR=/tmp/ncflow-cache wall "$OUT/wall_ncflow_${N}_warm.s" -- torchrun --standalone --nproc-per-node "$N" \
    -m models.ncf.train --data "$NCF" --out /tmp/ncf-run-n --target-hr "$TARGET" > "$OUT/wall_ncflow_${N}_warm.jsonl" 2> "$OUT/wall_ncflow_${N}_warm.err"
  echo "  $(cat "$OUT/wall_ncflow_${N}_warm.s") s"
  log "reference $N GPUs, wall time to HR@10 $TARGET"
  wall "$OUT/wall_reference_$N.s" -- bash $REF/run.sh "$NCF" "$N" -e 30 --threshold "$TARGET" > "$OUT/wall_reference_$N.log"
fi
if stage profile; then
  log "per-rank step profile, 1 and $N GPUs"
  CUDA_VISIBLE_DEVICES=0 python3 bench/ncf_step_profile.py --data "$NCF" > "$OUT/profile_1.txt" 2>&1; grep "===" "$OUT/profile_1.txt"
  [ "$N" -gt 1 ] && torchrun --standalone --nproc-per-node "$N" bench/ncf_step_profile.py --data "$NCF" > "$OUT/profile_$N.txt" 2>&1; grep "===" "$OUT/profile_$N.txt"
fi
if stage vae; then
  log VAE-CF 1 and $N GPUs
  CUDA_VISIBLE_DEVICES=0 python3 bench/vaecf_train.py --precisions bf16 --json "$OUT/vae_1.json" > "$OUT/vae_1.log" 2>&1; tail -3 "$OUT/vae_1.log"
  [ "$N" -gt 1 ] && torchrun --standalone --nproc-per-node "$N" bench/vaecf_train.py --precisions bf16 --json "$OUT/vae_$N.json" > "$OUT/vae_$N.log" 2>&1; tail -3 "$OUT/vae_$N.log"
fi
python3 bench/compare_summary.py "$OUT" "$N" --target "$TARGET" | tee "$OUT/summary.txt"
log done
