#!/usr/bin/env bash
# Every GPU benchmark of ncflow in one call on the GPU machine (GPU time is scarce: batch it).
#
#   bash bench/run_gpu.sh OUT_DIR "env synth pre ncf acc"            # one GPU
#   bash bench/run_gpu.sh OUT_DIR "env synth profile ncf"            # plus a per-kernel step profile
#   bash bench/run_gpu.sh OUT_DIR "ncf2 vae vae2"                      # on a 2-GPU machine
#
# ncflow beside the reference (ratios for the README) is bench/compare_reference.sh.
#
# The machine has torch, CuPy, numpy, pyarrow but not pydantic: wheels carried in .whl/ go to /tmp/site.
# ml-100k travels in .carry/ml-100k (a copy of ../shared/data/ml-100k, which does not travel).
set -u
OUT=${1:?out dir}; STAGES=${2:-"env synth pre ncf acc"}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
DATA=/tmp/ncflow-bench
stage() { case " $STAGES " in *" $1 "*) return 0;; *) return 1;; esac; }
log() { echo "== $(date +%T) $*"; }

if stage env; then
  log env
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, cupy, pyarrow, numpy; print('torch', torch.__version__, 'cupy', cupy.__version__, 'pyarrow', pyarrow.__version__, 'numpy', numpy.__version__, 'gpus', torch.cuda.device_count())"
  git log -1 --format='commit %H' 2>/dev/null || true
fi
if stage synth; then
  log synth ml20m
  /usr/bin/time -f "synth ml20m: %e s, %M KB" python3 -m ncflow.cli synth ml20m --out $DATA/raw/synth-ml20m
fi
if stage pre; then
  log preprocess bench
  python3 bench/preprocess.py --raw $DATA/raw/synth-ml20m --devices gpu --repeats 2 --json "$OUT/preprocess_gpu.json"
  python3 bench/preprocess.py --raw $DATA/raw/synth-ml20m --devices cpu --repeats 1 --json "$OUT/preprocess_cpu.json"
fi
NCF=$(python3 -m ncflow.cli data synth-ml20m --data-dir $DATA --device gpu 2>"$OUT/data.err" | tail -1)
echo "ncf data: $NCF"
if stage profile; then
  log ncf step profile
  python3 bench/ncf_step_profile.py --data "$NCF" --json "$OUT/ncf_step_profile.json" 2>&1 | tee "$OUT/ncf_step_profile.log" | tail -25
fi
if stage ncf; then
  log ncf train bench, 1 GPU
  python3 bench/ncf_train.py --data "$NCF" --json "$OUT/ncf_train_1gpu.json" --eager-reference \
    --time-to-target --target-hr "${TARGET_HR:-1.0}" --max-epochs "${MAX_EPOCHS:-20}" 2>&1 | tee "$OUT/ncf_train_1gpu.log" | grep -v Warning
fi
if stage ncf2; then
  log ncf train bench, 2 GPUs
  CUDA_VISIBLE_DEVICES=0 python3 bench/ncf_train.py --data "$NCF" --precisions "${PRECISIONS:-bf16}" \
    --json "$OUT/ncf_train_1of2.json" 2>&1 | tee "$OUT/ncf_train_1of2.log" | grep -v Warning
  torchrun --standalone --nproc-per-node 2 bench/ncf_train.py --data "$NCF" --precisions "${PRECISIONS:-bf16}" \
    --json "$OUT/ncf_train_2gpu.json" 2>&1 | tee "$OUT/ncf_train_2gpu.log" | grep -v Warning
fi
if stage acc; then
  log ml-100k accuracy
  ML100K=$(python3 -m ncflow.cli data ml-100k --source .carry/ml-100k --data-dir $DATA | tail -1)
  python3 bench/ncf_accuracy.py --data "$ML100K" --json "$OUT/ncf_accuracy_ml100k.json" 2>&1 | tail -12
fi
if stage vae; then
  log vae-cf bench, 1 GPU
  python3 bench/vaecf_train.py --json "$OUT/vaecf_1gpu.json" 2>&1 | tee "$OUT/vaecf_1gpu.log" | tail -15
fi
if stage vae2; then
  log vae-cf bench, 2 GPUs
  torchrun --standalone --nproc-per-node 2 bench/vaecf_train.py --json "$OUT/vaecf_2gpu.json" 2>&1 | tee "$OUT/vaecf_2gpu.log" | tail -15
fi
log done
