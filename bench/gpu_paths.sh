#!/usr/bin/env bash
# The GPU code paths issues 16-18 added, run on the GPU machine beside their CPU twins and the NumPy
# reference, then issue 18's sweeps on the GPU. One call (GPU time is scarce); each stage time-boxed.
#   ease   EASE's torch Cholesky on CUDA against the CPU path and ../shared/tools/ease_reference.py
#          (ml-100k, both splits; synth-ml1m), then ml-20m-shaped data (synth-ml20m) on the GPU alone
#   own    a string-id log (customer hashes, SKU-n items) preprocessed with CuPy, NCF trained on the GPU,
#          the bundle answering in SKUs
#   vaencf Mult-VAE on the NCF split on the GPU (full-ranking metrics)
#   vsweep Mult-VAE, ml-100k: configs/vaecf/sweeps/ml-100k-gpu.yaml (bench/sweep_gpu.py)
#   nsweep NeuMF and MF, synth-ml1m: configs/ncf/sweeps/synth-ml1m.yaml
# Usage: bash bench/gpu_paths.sh OUT_DIR "ease own vaencf vsweep nsweep"
#   carried: .carry/ml-100k (a copy of ../shared/data/ml-100k), .carry/ease_reference.py, .whl/ (pydantic, yaml)
set -u
OUT=${1:?out dir}; STAGES=${2:-"ease own vaencf vsweep nsweep"}
L=/tmp/ncflow-paths-logs  # every log; at the end one tarball in OUT (8 files come back at most)
mkdir -p "$OUT" "$L"
exec > >(tee "$L/stdout.txt") 2>&1
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>&1 | tail -1
export PYTHONPATH=/tmp/site:$PWD
D=/tmp/ncflow-paths
stage() { case " $STAGES " in *" $1 "*) return 0;; *) return 1;; esac; }
log() { echo "== $(date +%T) $*"; }
data() { python3 -m ncflow.cli data "$@" --data-dir $D --device gpu 2>>"$L/data.err" | tail -1; }
# A trainer's flags: a model's dataset recipe (configs/) with key=value overrides, on one GPU
#   flags ncf ml-100k epochs=8 target_hr=1.0
flags() { python3 - "$@" <<'PY'
import sys, yaml
from ncflow.launch import config_flags
from ncflow.specs import spec
model, dataset, *pairs = sys.argv[1:]
overrides = {key: yaml.safe_load(value) for key, value in (pair.split("=", 1) for pair in pairs)}
print(" ".join(config_flags(spec(model).params.for_dataset(dataset, **{"gpus": 1, **overrides}).train_config())))
PY
}

log env
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, cupy; print('torch', torch.__version__, 'cupy', cupy.__version__)"
git log -1 --format='commit %H' 2>/dev/null || true

if stage ease; then
  log ease: ml-100k and synth-ml1m, GPU against CPU and the NumPy reference
  python3 -m ncflow.cli synth ml1m --out $D/raw/synth-ml1m >/dev/null
  for spec in "ml-100k --source .carry/ml-100k" "ml-100k --source .carry/ml-100k --validation" \
              "ml-100k --source .carry/ml-100k --protocol vaecf" "synth-ml1m" "synth-ml1m --protocol vaecf"; do
    DIR=$(data $spec); name=$(basename "$DIR"); echo "-- $spec: $name"
    for dev in cuda cpu; do
      /usr/bin/time -f "$dev wall %e s" timeout 120 python3 -m models.ease.train --data "$DIR" --out $D/ease-$name-$dev \
        --device $dev 2>"$L/ease-$name-$dev.err" | tail -1 | tee "$L/ease-$name-$dev.json" | cut -c1-600
      tail -1 "$L/ease-$name-$dev.err"
    done
    timeout 120 python3 .carry/ease_reference.py "$DIR" 2>&1 | tee "$L/ease-$name-reference.txt"
  done
  log ease: synth-ml20m on the GPU
  python3 -m ncflow.cli synth ml20m --out $D/raw/synth-ml20m >/dev/null
  DIR=$(data synth-ml20m --validation)
  /usr/bin/time -f "cuda wall %e s, %M KB" timeout 240 python3 -m models.ease.train --data "$DIR" --out $D/ease-ml20m \
    --device cuda 2>"$L/ease-synth-ml20m.err" | tee "$L/ease-synth-ml20m.jsonl" | tail -1 | cut -c1-900
  tail -2 "$L/ease-synth-ml20m.err"
fi

if stage own; then
  log own: a string-id log through CuPy preprocessing and the GPU trainer
  mkdir -p $D/own
  python3 - $D/own/events.csv <<'PY'
import csv, hashlib, sys
with open(".carry/ml-100k/u.data") as src, open(sys.argv[1], "w", newline="") as out:
    w = csv.writer(out); w.writerow(["customer", "sku", "rating", "ts"])
    for line in src:
        u, i, r, t = line.split()
        w.writerow([hashlib.sha1(u.encode()).hexdigest()[:12], f"SKU-{int(i):04d}", r, t])
PY
  DIR=$(data $D/own/events.csv --user-col customer --item-col sku --rating-col rating --timestamp-col ts)
  echo "processed: $DIR"; tail -3 "$L/data.err"
  FLAGS=$(flags ncf ml-100k epochs=8 target_hr=1.0)
  timeout 120 python3 -m models.ncf.train --data "$DIR" --out $D/own/run $FLAGS 2>"$L/own-train.err" | tail -1 | cut -c1-500
  python3 - "$DIR" $D/own/run/bundle <<'PY'
import sys, pyarrow.parquet as pq
from models.ncf.bundle import load_bundle, recommend
users = pq.read_table(f"{sys.argv[1]}/users.parquet").column("id").to_pylist()
bundle = load_bundle(sys.argv[2], "cuda")
print("user ids like", users[:3], "->", [r for r in recommend(bundle, users[0], 5)])
PY
fi

if stage vaencf; then
  log vaencf: Mult-VAE on the NCF split, GPU
  DIR=$(data ml-100k --source .carry/ml-100k --validation)
  FLAGS=$(flags vae-cf ml-100k protocol=ncf)
  timeout 150 python3 -m models.vaecf.train --data "$DIR" --out $D/vaencf $FLAGS 2>"$L/vaencf.err" | tail -1 | cut -c1-700
  tail -2 "$L/vaencf.err"
fi

if stage vsweep; then
  log vsweep: Mult-VAE on ml-100k, 40 draws, 8 at a time
  DIR=$(data ml-100k --source .carry/ml-100k --protocol vaecf)
  timeout "${VSWEEP_S:-240}" python3 bench/sweep_gpu.py vae-cf --dataset ml-100k --data "$DIR" \
    --space configs/vaecf/sweeps/ml-100k-gpu.yaml --trials "${VTRIALS:-40}" --parallel 8 --out $D/vsweep 2>&1 | tail -48
  cp $D/vsweep/sweep.json "$L/vsweep.json" 2>/dev/null
fi

if stage nsweep; then
  log nsweep: NeuMF and MF on synth-ml1m, 32 draws, 4 at a time
  [ -d $D/raw/synth-ml1m ] || python3 -m ncflow.cli synth ml1m --out $D/raw/synth-ml1m >/dev/null
  DIR=$(data synth-ml1m --validation)
  timeout "${NSWEEP_S:-240}" python3 bench/sweep_gpu.py ncf --dataset synth-ml1m --data "$DIR" \
    --space configs/ncf/sweeps/synth-ml1m.yaml --trials "${NTRIALS:-32}" --parallel "${NPAR:-4}" --out $D/nsweep 2>&1 | tail -40
  cp $D/nsweep/sweep.json "$L/nsweep.json" 2>/dev/null
  BEST=$(python3 -c "import json; print(json.load(open('$D/nsweep/sweep.json'))['best_trial'])")
  log nsweep: trial $BEST, chosen on validation, ranked against every item on test, baselines beside
  python3 -m models.ncf.evaluate --bundle $D/nsweep/trial-$BEST/bundle --data "$DIR" --device cuda 2>&1 | tail -40
fi

if stage vseeds; then
  log vseeds: the Mult-VAE recipe, ml-100k, seeds 0-2, against the first sweep winner
  DIR=$(data ml-100k --source .carry/ml-100k --protocol vaecf)
  OLD="epochs=100 batch_size=128 lr=0.0012209275143809694 anneal=paper hidden=600 latent=64 dropout=0.5"
  for seed in 0 1 2; do
    for recipe in new old; do
      FLAGS=$(flags vae-cf ml-100k seed=$seed compile=false $([ $recipe = old ] && echo "$OLD"))
      (timeout 150 python3 -m models.vaecf.train --data "$DIR" --out $D/vseeds-$recipe-$seed $FLAGS 2>/dev/null | tail -1 \
        | python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print('$recipe seed $seed', {k: round(d[k], 4) for k in ('best_ndcg100', 'test_ndcg@100', 'test_recall@20', 'test_recall@50')})") &
    done
  done
  wait
fi
log end
tar czf "$OUT/logs.tgz" -C "$L" . 2>/dev/null; cp $L/*sweep.json "$OUT/" 2>/dev/null; true
