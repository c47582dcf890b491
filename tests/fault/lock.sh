#!/usr/bin/env bash
# Two runs into one output directory: the second refuses at once naming the first's host and pid
# (every rank exits non-zero, the message once), the first finishes and its metrics.jsonl is whole;
# a lock left by a job killed with kill -9 is taken over with a message naming the dead pid.
set -u
: "${MS_BIN:?}" "${MS_MPIRUN:?}" "${MS_TEST_TMP:?}" "${MS_PYTHON:?}"
HERE=$(cd "$(dirname "$0")" && pwd)
T="$MS_TEST_TMP/fault_lock"
rm -rf "$T"; mkdir -p "$T"; cd "$T" || exit 1
read -r -a MPIFLAGS <<< "${MS_MPI_FLAGS:-}"
die() { echo "FAIL: $*"; exit 1; }
"$MS_PYTHON" "$HERE/../sae_train/make_synth.py" a.h5 --rows 60000 --d 64 --feats 128 --seed 4 || die synth
cat > job.yaml <<JOB
run: {name: lk, out_dir: $T/run, seed: 5}
sae: {activations: $T/a.h5, d_sae: 512, batch: 400, steps: 140, lr: 0.01, l1_coeff: 0.3, checkpoint_every: 20,
      log_every: 5, shuffle_buffer: 20000, median_samples: 2000, resample: {at: [], window: 2, inputs: 2000}}
JOB
LOCK="$T/run/sae/.monosem.lock"
# the first run is paced (50 ms a step: 7 s) so that it still holds the lock, however fast the
# machine, when the second one starts
MONOSEM_TEST_STEP_DELAY_MS=50 timeout 300 "$MS_MPIRUN" -n 2 "${MPIFLAGS[@]}" -x MONOSEM_TEST_STEP_DELAY_MS \
  "$MS_BIN/monosem" train job.yaml > a.log 2>&1 &
A=$!
for _ in $(seq 1 600); do [ -s "$LOCK" ] && break; sleep 0.05; done
[ -s "$LOCK" ] || die "first run never took the lock: $(cat a.log)"
read -r host pid stage _ < "$LOCK"
timeout 60 "$MS_MPIRUN" -n 2 "${MPIFLAGS[@]}" "$MS_BIN/monosem" train job.yaml > b.log 2>&1; rc=$?
wait $A; rca=$?
[ $rca -eq 0 ] || die "the first run failed ($rca): $(tail -3 a.log)"
n=$(grep -c "in use by \`monosem train\` on host $host, pid $pid" b.log)
[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ "$n" -eq 1 ] || die "second run: exit $rc, message seen $n times: $(cat b.log)"
echo "ok: second run refused (exit $rc): $(grep 'in use' b.log)"
"$MS_PYTHON" - run/sae/metrics.jsonl <<'PY' || die "metrics.jsonl is not whole"
import json, sys
steps = [json.loads(l)["step"] for l in open(sys.argv[1])]
assert steps == sorted(set(steps)) and steps[-1] == 140, steps
print(f"ok: metrics.jsonl has {len(steps)} lines, steps increasing to 140")
PY
[ -s "$LOCK" ] && die "lock file not emptied by a clean exit: $(cat "$LOCK")"
# a job killed with kill -9 leaves its record; the next run takes over and names it
rm -rf run
MONOSEM_TEST_STEP_DELAY_MS=50 timeout 300 "$MS_MPIRUN" -n 2 "${MPIFLAGS[@]}" -x MONOSEM_TEST_STEP_DELAY_MS \
  "$MS_BIN/monosem" train job.yaml > k.log 2>&1 &
K=$!
for _ in $(seq 1 600); do [ -f run/sae/checkpoint.safetensors ] && break; sleep 0.05; done
read -r host pid stage _ < "$LOCK"
kill -9 "$pid" 2>/dev/null || die "lock holder pid $pid not running"
wait $K && die "killed run exited 0"
timeout 300 "$MS_MPIRUN" -n 2 "${MPIFLAGS[@]}" "$MS_BIN/monosem" train job.yaml > r.log 2>&1 || die "rerun after kill: $(tail -3 r.log)"
grep -q "taking over the stale lock of \`monosem train\` (host $host, pid $pid, no longer running)" r.log \
  || die "no stale-lock message naming pid $pid: $(head -5 r.log)"
echo "ok: $(grep 'stale lock' r.log)"
