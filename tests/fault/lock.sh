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
. "$HERE/../hook.sh"
"$MS_PYTHON" "$HERE/../sae_train/make_synth.py" a.h5 --rows 60000 --d 64 --feats 128 --seed 4 || die synth
cat > job.yaml <<JOB
run: {name: lk, out_dir: $T/run, seed: 5}
sae: {activations: $T/a.h5, d_sae: 512, batch: 400, steps: 140, lr: 0.01, l1_coeff: 0.3, checkpoint_every: 20,
      log_every: 5, shuffle_buffer: 20000, median_samples: 2000, resample: {at: [], window: 2, inputs: 2000}}
JOB
LOCK="$T/run/sae/.monosem.lock"
# the first run stops itself at step 5 (MONOSEM_TEST_HOOK), holding the lock, while the second
# one starts; then it goes on and finishes
MONOSEM_TEST_HOOK="step:5:0:stop:$T/a.hook" timeout 300 "$MS_MPIRUN" -n 2 "${MPIFLAGS[@]}" -x MONOSEM_TEST_HOOK \
  "$MS_BIN/monosem" train job.yaml > a.log 2>&1 &
A=$!
apid=$(hook_wait "$T/a.hook" $A "the first run's step 5") || die "first run: $(tail -3 a.log)"
[ -s "$LOCK" ] || die "first run at step 5 holds no lock: $(cat a.log)"
read -r host pid stage _ < "$LOCK"
timeout 60 "$MS_MPIRUN" -n 2 "${MPIFLAGS[@]}" "$MS_BIN/monosem" train job.yaml > b.log 2>&1; rc=$?
hook_release "$T/a.hook"
wait_bounded $A 240 "the first run after the second was refused"; rca=$?
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
MONOSEM_TEST_HOOK="checkpoint:20:0:stop:$T/k.hook" timeout 300 "$MS_MPIRUN" -n 2 "${MPIFLAGS[@]}" -x MONOSEM_TEST_HOOK \
  "$MS_BIN/monosem" train job.yaml > k.log 2>&1 &
K=$!
kpid=$(hook_wait "$T/k.hook" $K "the run's checkpoint at step 20") || die "run to kill: $(tail -3 k.log)"
read -r host pid stage _ < "$LOCK"
[ "$pid" = "$kpid" ] || die "lock holder pid $pid is not rank 0 ($kpid)"
kill -9 "$pid" 2>/dev/null || die "lock holder pid $pid not running"
wait_bounded $K 60 "mpirun after the lock holder was killed"; rck=$?
[ $rck -ne 0 ] && [ $rck -ne 124 ] || die "killed run: exit $rck (0: it finished; 124: mpirun hung)"
timeout 300 "$MS_MPIRUN" -n 2 "${MPIFLAGS[@]}" "$MS_BIN/monosem" train job.yaml > r.log 2>&1 || die "rerun after kill: $(tail -3 r.log)"
grep -q "taking over the stale lock of \`monosem train\` (host $host, pid $pid, no longer running)" r.log \
  || die "no stale-lock message naming pid $pid: $(head -5 r.log)"
echo "ok: $(grep 'stale lock' r.log)"
