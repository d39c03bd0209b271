#!/usr/bin/env bash
# The Prefect UI, looked at with a real browser: headless screenshots of a synth-tiny ncf-train run.
#
#   bash bench/ui_check.sh                  # -> bench/results/$(date +%F)-ui/*.png
#   bash bench/ui_check.sh OUT_DIR
#
# What it does, all on 127.0.0.1 and in a temporary folder (data, checkpoints, registry, PREFECT_HOME):
#   1. installs Debian's chromium if it is missing (apt-get, so it needs root or sudo);
#   2. starts `prefect server` on a free port, creates the ncflow-gpu process pool, `deploy --all`,
#      and starts a worker (the production path: README "Running it for real");
#   3. runs ncf-train/synth-tiny three times through the worker, so the registry has a history:
#        run 1: 2 epochs   -> v1, the first champion
#        run 2: 8 epochs   -> v2, beats v1: promoted
#        run 3: 1 epoch    -> v3, does not beat v2: not promoted
#   4. screenshots (bench/ui_screens.py, headless chromium over the DevTools protocol): the deployments
#      list, run 2's flow run (task graph, logs, artifacts tab), its train task's logs, each of its
#      artifacts, its model card in the opt-in V2 UI; run 3's model card and metrics.
# The README's "UI guide" says what each picture shows. Not part of CI (it needs chromium and a few
# minutes); tests/test_learning_curve.py covers the renderer, tests/test_ui_render.py (marked `ui`,
# skipped without chromium) that the UI shows its picture.
set -euo pipefail
trap 'echo "ui_check: error: line $LINENO failed: $BASH_COMMAND" >&2' ERR
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(realpath -m "${1:-$REPO/bench/results/$(date +%F)-ui}")
cd "$REPO"

if ! command -v chromium >/dev/null; then
  echo "== installing chromium (Debian package)"
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
command -v prefect >/dev/null || { echo "ui_check: error: prefect not on PATH: activate the venv" >&2; exit 2; }

TMP=$(mktemp -d -t ncflow-ui.XXXXXX)
PIDS=()
alive() { for pid in "$@"; do kill -0 "$pid" 2>/dev/null && return 0; done; return 1; }
cleanup() {  # the worker first (it talks to the server on its way out), then the server; KILL after 20 s
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM -- "-${PIDS[i]}" 2>/dev/null || true  # each leads its own process group (setsid)
    for _ in $(seq 40); do alive "${PIDS[i]}" || break; sleep 0.5; done
    kill -KILL -- "-${PIDS[i]}" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
PORT=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export PYTHONPATH=$REPO PREFECT_HOME=$TMP/home PREFECT_API_URL=http://127.0.0.1:$PORT/api
export PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_WORKER_QUERY_SECONDS=1 PREFECT_RUNNER_POLL_FREQUENCY=1
unset PREFECT_PROFILE

echo "== prefect server on port $PORT (logs in $TMP)"
setsid prefect server start --host 127.0.0.1 --port "$PORT" >"$TMP/server.log" 2>&1 &
PIDS+=($!) && disown  # cleanup() stops it; disowned, bash does not report its end
for _ in $(seq 240); do
  curl -sf "http://127.0.0.1:$PORT/api/health" >/dev/null && break
  kill -0 "${PIDS[0]}" 2>/dev/null || { tail -30 "$TMP/server.log" >&2; exit 1; }
  sleep 0.5
done
curl -sf "http://127.0.0.1:$PORT/api/health" >/dev/null || { echo "ui_check: error: server did not start" >&2; exit 1; }

prefect work-pool create ncflow-gpu --type process >/dev/null
prefect work-pool set-concurrency-limit ncflow-gpu 1 >/dev/null
prefect --no-prompt deploy --all >/dev/null
setsid prefect worker start --pool ncflow-gpu >"$TMP/worker.log" 2>&1 &
PIDS+=($!) && disown

# One deployment run; prints its flow-run id. Data, checkpoints and registry stay in $TMP.
run_synth() {
  local out id
  out=$(prefect deployment run ncf-train/synth-tiny --watch --param "epochs=$1" \
    --param "data_dir=$TMP/data" --param "runs_dir=$TMP/runs" --param "registry_dir=$TMP/registry" 2>&1) || {
    echo "$out" >&2
    echo "ui_check: error: the epochs=$1 run did not complete (worker log: $TMP/worker.log)" >&2
    tail -40 "$TMP/worker.log" >&2
    exit 1
  }
  id=$(echo "$out" | grep -oE 'UUID: [0-9a-f-]{36}' | head -1 | cut -d' ' -f2)
  [ -n "$id" ] || { echo "$out" >&2; echo "ui_check: error: no flow-run id in the output above" >&2; exit 1; }
  echo "$id"
}
echo "== run 1 (2 epochs)"; run_synth 2 >/dev/null
echo "== run 2 (8 epochs)"; SHOWN=$(run_synth 8)
echo "== run 3 (1 epoch)"; WEAK=$(run_synth 1)

echo "== screenshots -> $OUT"
python bench/ui_screens.py --ui "http://127.0.0.1:$PORT" --flow-run "$SHOWN" --out "$OUT"
python bench/ui_screens.py --ui "http://127.0.0.1:$PORT" --flow-run "$WEAK" --out "$OUT" \
  --only model-card,metrics --number-from 12 --suffix=-not-promoted
if grep -q "Traceback" "$TMP/server.log" "$TMP/worker.log"; then
  echo "ui_check: warning: a traceback in the server's or the worker's log:" >&2
  grep -n -A3 "Traceback" "$TMP/server.log" "$TMP/worker.log" | head -40 >&2
fi
ls -la "$OUT"
