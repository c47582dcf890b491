#!/usr/bin/env bash
# kill -9 of a seeded rank at a seeded point (a step, a shard, a file being saved), then the
# same command again: the result is bitwise identical to an uninterrupted run, for train-model,
# generate, train and analyze. The rank stops itself at the point (MONOSEM_TEST_HOOK) before the
# kill, so no timer decides where it lands.
#   kill.sh [SEEDS...]   (default 1 2 3)
set -u
. "$(dirname "$0")/common.sh"
. "$TESTS_DIR/hook.sh"
T="$MS_TEST_TMP/fault_kill"
rm -rf "$T"; mkdir -p "$T"; cd "$T" || exit 1
SEEDS=("$@"); [ ${#SEEDS[@]} -gt 0 ] || SEEDS=(1 2 3)
GENREF="$MS_PYTHON $TESTS_DIR/generate/ref_generate.py"

# killrun SEED SPEC LOG STAGE JOB ARGS...: starts the stage on 2 ranks with a stop hook at SPEC
# (POINT:N:RANK, see io.h "test hooks"), waits (bounded) until that rank reports the point and
# stops there, kill -9s it, and waits (bounded) for mpirun to take the other rank down. Never a
# kill during MPI_Init (docs/clusters.md: Open MPI's launcher may never reap such a rank).
killrun() {
  local seed=$1 spec=$2 log=$3 stage=$4 job=$5; shift 5
  local rep="$T/hook.$stage.$seed" mp pid rc
  rm -f "$rep"
  MONOSEM_TEST_HOOK="$spec:stop:$rep" "$MS_MPIRUN" -n 2 "${MPIFLAGS[@]}" -x MONOSEM_TEST_HOOK \
    "$MS_BIN/monosem" "$stage" "$job" "$@" > "$log" 2>&1 &
  mp=$!
  pid=$(hook_wait "$rep" $mp "$stage at $spec") || { wait_bounded $mp 60 "$stage"; die "$stage seed $seed: $(tail -3 "$log")"; }
  kill -9 "$pid"
  echo "  seed $seed: killed rank $(cut -d' ' -f2 "$rep") (pid $pid) stopped at $spec"
  wait_bounded $mp 60 "mpirun after the kill at $spec"; rc=$?
  [ $rc -ne 124 ] || die "$stage: mpirun still running 60 s after the kill at $spec"
  [ $rc -ne 0 ] || die "$stage: mpirun exited 0 after a rank was killed at $spec"
}
# pick SEED: seeds bash's RANDOM, so each seed makes the same draws on every machine
pick() { RANDOM=$1; }

# ---- train-model
model_fixture "$T/m"
mon 2 mref.log train-model m/job.yaml --run.out_dir="$T/mref" --model.dir="$T/mref/model" || die "train-model ref: $(tail -3 mref.log)"
for s in "${SEEDS[@]}"; do
  o="$T/mk$s"
  # 60 steps, checkpoints every 10 (rank 0 saves them): a step boundary on either rank (the
  # victim alternates with the seed), or a
  # checkpoint save (data synced, not yet renamed) on rank 0
  pick "$s"; if [ $((RANDOM % 3)) = 0 ]; then spec="save:$((1 + RANDOM % 5)):0"; else spec="step:$((1 + RANDOM % 59)):$((s % 2))"; fi
  killrun "$s" "$spec" mk$s.log train-model m/job.yaml --run.out_dir="$o" --model.dir="$o/model"
  mon 2 mk$s.re.log train-model m/job.yaml --run.out_dir="$o" --model.dir="$o/model" || die "train-model rerun (seed $s): $(tail -3 mk$s.re.log)"
  same_st mref/model/model.safetensors "$o/model/model.safetensors" || die "train-model seed $s: model differs"
  same_st mref/train_model/checkpoint.safetensors "$o/train_model/checkpoint.safetensors" || die "train-model seed $s: final state differs"
  ok "train-model: kill -9 (seed $s) + rerun == uninterrupted"
done

# ---- generate (the reference run's model)
gj=(m/job.yaml --model.dir="$T/mref/model")
mon 2 gref.log generate "${gj[@]}" --generate.out="$T/gref.h5" || die "generate ref: $(tail -3 gref.log)"
nsh=$(sed -n 's/.* in \([0-9]*\) shard(s), .*/\1/p' gref.log | head -1)
[ "${nsh:-0}" -ge 10 ] || die "generate fixture: want >= 10 shards, got '${nsh}': $(head -3 gref.log)"
for s in "${SEEDS[@]}"; do
  # rank 0 (the coordinator) always does a first shard; of N <= 5 the first rank to reach its
  # Nth does (shards >= 10): after the shard is recorded, or between its rows and the record
  pick "$s"; pt=$([ $((RANDOM % 2)) = 0 ] && echo shard || echo shard-rows)
  if [ $((RANDOM % 3)) = 0 ]; then spec="$pt:1:0"; else spec="$pt:$((1 + RANDOM % 5)):any"; fi
  killrun "$s" "$spec" gk$s.log generate "${gj[@]}" --generate.out="$T/gk$s.h5"
  [ -e "$T/gk$s.h5" ] && [ -e "$T/gk$s.h5.partial" ] && die "generate seed $s: both a final and a partial file"
  mon 2 gk$s.re.log generate "${gj[@]}" --generate.out="$T/gk$s.h5" || die "generate rerun (seed $s): $(tail -3 gk$s.re.log)"
  $GENREF same "$T/gref.h5" "$T/gk$s.h5" > /dev/null || die "generate seed $s: file differs"
  ok "generate: kill -9 (seed $s) + rerun == uninterrupted"
done

# ---- train (SAE)
sae_fixture "$T/s"
mon 2 sref.log train s/job.yaml --run.out_dir="$T/sref" --sae.out_dir="$T/sref/sae" || die "train ref: $(tail -3 sref.log)"
for s in "${SEEDS[@]}"; do
  o="$T/sk$s"
  # 120 steps, checkpoints every 10 (rank 0), a resample at 60: a step or a checkpoint save
  pick "$s"; if [ $((RANDOM % 3)) = 0 ]; then spec="save:$((1 + RANDOM % 11)):0"; else spec="step:$((1 + RANDOM % 119)):$(((s + 1) % 2))"; fi
  killrun "$s" "$spec" sk$s.log train s/job.yaml --run.out_dir="$o" --sae.out_dir="$o/sae"
  mon 2 sk$s.re.log train s/job.yaml --run.out_dir="$o" --sae.out_dir="$o/sae" || die "train rerun (seed $s): $(tail -3 sk$s.re.log)"
  same_st sref/sae/saelens/sae_weights.safetensors "$o/sae/saelens/sae_weights.safetensors" || die "train seed $s: weights differ"
  same_st sref/sae/checkpoint.safetensors "$o/sae/checkpoint.safetensors" || die "train seed $s: final state differs"
  ok "train: kill -9 (seed $s) + rerun == uninterrupted"
done

same_h5() { # same_h5 A B: every dataset and attribute equal
  "$MS_PYTHON" - "$1" "$2" <<'PY'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], 'r'), h5py.File(sys.argv[2], 'r')
assert sorted(a) == sorted(b) and sorted(a.attrs) == sorted(b.attrs)
for k in a:
    assert np.array_equal(a[k][...], b[k][...]), k
PY
}
# ---- analyze (no checkpoint: a rerun starts over; its files appear whole or not at all)
aj=(m/job.yaml --model.dir="$T/mref/model" --sae.activations="$T/gref.h5" --sae.out_dir="$T/asae")
mon 2 asae.log train "${aj[@]}" --sae.d_sae=64 --sae.steps=20 --sae.batch=128 --sae.median_samples=500 \
  --sae.shuffle_buffer=2000 || die "train for analyze: $(tail -3 asae.log)"
mon 2 aref.log analyze "${aj[@]}" --analyze.out_dir="$T/aref" --analyze.batch=2 || die "analyze ref: $(tail -3 aref.log)"
for s in "${SEEDS[@]}"; do
  # a block round of either pass (the fixture has >= 8 per pass) on either rank
  pick "$s"; spec="step:$((1 + RANDOM % 16)):$((RANDOM % 2))"
  killrun "$s" "$spec" ak$s.log analyze "${aj[@]}" --analyze.out_dir="$T/ak$s" --analyze.batch=2
  # killed: each file it left under its final name is whole (written to a temporary name, then
  # renamed), i.e. equal to the uninterrupted run's
  for f in $(cd "$T/ak$s" 2>/dev/null && find . -name analysis.h5); do
    same_h5 "$T/aref/$f" "$T/ak$s/$f" || die "analyze seed $s: the killed run left a $f that is not whole"
  done
  mon 2 ak$s.re.log analyze "${aj[@]}" --analyze.out_dir="$T/ak$s" --analyze.batch=2 || die "analyze rerun (seed $s): $(tail -3 ak$s.re.log)"
  for f in sae/analysis.h5 neurons/analysis.h5; do
    same_h5 "$T/aref/$f" "$T/ak$s/$f" || die "analyze seed $s: $f differs from the uninterrupted run"
  done
  ok "analyze: kill -9 (seed $s) + rerun == uninterrupted"
done
