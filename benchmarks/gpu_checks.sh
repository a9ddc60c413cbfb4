#!/usr/bin/env bash
# What the test suite cannot check without a GPU, in one script for a machine that has one:
# the goldens on CUDA, the demo trained on CUDA (same seed twice -> the same bytes; killed with
# kill -9 during stage 1 and resumed -> the same bytes), three seeds stacked against the same
# seeds one by one, and the two benchmarks on CUDA (with a 5-seed stack's epoch).
# Figures are printed, never asserted; each step's log goes to $OUT (default: a new folder).
#   bash benchmarks/gpu_checks.sh            # PYTHON=... to choose the interpreter
# DEVICE=cpu runs the same steps on the CPU (slower; how the script itself is checked without a GPU).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEV=${DEVICE:-cuda}
WORK=$(mktemp -d -t clipclap-gpu-XXXX)
OUT=${OUT:-$WORK/logs}; mkdir -p "$OUT"
CC="$PY -m clipclap_cli"
step() {  # step NAME SECONDS CMD...: run CMD with a time limit, log it to $OUT/NAME.log, show its end
  local name=$1 limit=$2; shift 2
  echo "=== $name"; local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  echo "exit $rc after $((SECONDS - t0)) s"; tail -n "${TAILN:-12}" "$OUT/$name.log"
}
run_results() { echo "$1/demo/clipclap/seed42/results.json"; }
step goldens 120 $PY benchmarks/goldens_on_device.py --device "$DEV"
step demo 300 $CC demo --store "$WORK/s.zarr" --device "$DEV"
# the demo trains clipclap's three seeds as one stack: the same stack again, and killed and resumed
step same_seed 300 $CC train demo --store "$WORK/s.zarr" --device "$DEV" --runs-dir "$WORK/again" --seeds 3
cmp "$(run_results "$WORK/runs")" "$(run_results "$WORK/again")" && echo "same seed on $DEV: byte-identical results.json"
$CC train demo --store "$WORK/s.zarr" --device "$DEV" --runs-dir "$WORK/killed" --seeds 3 > "$OUT/killed.log" 2>&1 &
pid=$!; stage1="$WORK/killed/demo/clipclap/seed42/stage1"
for _ in $(seq 1200); do [ -e "$stage1/checkpoint-last.safetensors" ] && break; sleep 0.1; done
sleep 1.5; kill -9 $pid; wait $pid 2>/dev/null
echo "killed after $(wc -l < "$stage1/metrics.jsonl") stage-1 epoch(s)"
step resumed 300 $CC train demo --store "$WORK/s.zarr" --device "$DEV" --runs-dir "$WORK/killed" --seeds 3
cmp "$(run_results "$WORK/runs")" "$(run_results "$WORK/killed")" && echo "killed and resumed on $DEV: byte-identical results.json"
# three seeds stacked and one by one, compared run by run (on CUDA a run alone draws its dropout
# masks with torch's kernel and a stacked one from its own generator: expect other draws there)
step stacked 600 $CC train demo --store "$WORK/s.zarr" --device "$DEV" --runs-dir "$WORK/stacked" --seeds 3 --epochs 4
step separate 600 $CC train demo --store "$WORK/s.zarr" --device "$DEV" --runs-dir "$WORK/separate" --seeds 3 --epochs 4 --no-stack
step compare 60 $PY benchmarks/compare_runs.py "$WORK/separate" "$WORK/stacked"
TAILN=30 step bench_protocol 300 $PY benchmarks/bench_protocol.py --device "$DEV" --quick --json "$OUT/bench_protocol_$DEV.json"
TAILN=30 step bench_extract 300 $PY benchmarks/bench_extract.py --device "$DEV" --full --workers 12 --videos 64 --json "$OUT/bench_extract_$DEV.json"
echo "=== done in $SECONDS s; logs in $OUT"
