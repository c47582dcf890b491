#!/usr/bin/env bash
# kill -9 of a random rank at a random moment (seeded), then the same command again: the result
# is bitwise identical to an uninterrupted run, for train-model, generate, train and analyze.
#   kill.sh [SEEDS...]   (default 1 2 3)
set -u
. "$(dirname "$0")/common.sh"
T="$MS_TEST_TMP/fault_kill"
rm -rf "$T"; mkdir -p "$T"; cd "$T" || exit 1
SEEDS=("$@"); [ ${#SEEDS[@]} -gt 0 ] || SEEDS=(1 2 3)
GENREF="$MS_PYTHON $TESTS_DIR/generate/ref_generate.py"

# killrun SEED DURATION LOG STAGE JOB ARGS...: starts the stage on 2 ranks, kills one rank
# (chosen by the seed) after a seeded delay in [0, DURATION), waits; prints what it did
killrun() {
  local seed=$1 dur=$2 log=$3 stage=$4 job=$5; shift 5
  RANDOM=$seed
  local delay_ms=$(( RANDOM % (dur > 0 ? dur : 1) )) victim=$(( RANDOM % 2 ))
  "$MS_MPIRUN" -n 2 "${MPIFLAGS[@]}" "$MS_BIN/monosem" "$stage" "$job" "$@" > "$log" 2>&1 &
  local mp=$! pids=() t=0
  for _ in $(seq 1 200); do # the ranks exist (mpirun's children), then the seeded delay
    mapfile -t pids < <(pgrep -P $mp -f "monosem $stage" | sort -n)
    [ ${#pids[@]} -ge 2 ] && break
    sleep 0.05
  done
  sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
  if [ ${#pids[@]} -gt $victim ] && kill -9 "${pids[$victim]}" 2>/dev/null; then
    echo "  seed $seed: killed rank $victim's pid ${pids[$victim]} ${delay_ms} ms after start"
  else echo "  seed $seed: run over before the kill at ${delay_ms} ms"; fi
  while kill -0 $mp 2>/dev/null; do # bounded: mpirun must take the other rank down
    sleep 0.1; t=$((t + 1)); [ $t -lt 600 ] || { kill -9 $mp; die "$stage: mpirun still running 60 s after the kill"; }
  done
  wait $mp
  return 0
}
ms_now() { date +%s%3N; }

# ---- train-model
model_fixture "$T/m"
t0=$(ms_now); mon 2 mref.log train-model m/job.yaml --run.out_dir="$T/mref" --model.dir="$T/mref/model" || die "train-model ref: $(tail -3 mref.log)"
dur=$(( $(ms_now) - t0 ))
for s in "${SEEDS[@]}"; do
  o="$T/mk$s"
  killrun "$s" "$dur" mk$s.log train-model m/job.yaml --run.out_dir="$o" --model.dir="$o/model"
  mon 2 mk$s.re.log train-model m/job.yaml --run.out_dir="$o" --model.dir="$o/model" || die "train-model rerun (seed $s): $(tail -3 mk$s.re.log)"
  same_st mref/model/model.safetensors "$o/model/model.safetensors" || die "train-model seed $s: model differs"
  same_st mref/train_model/checkpoint.safetensors "$o/train_model/checkpoint.safetensors" || die "train-model seed $s: final state differs"
  ok "train-model: kill -9 (seed $s) + rerun == uninterrupted"
done

# ---- generate (the reference run's model)
gj=(m/job.yaml --model.dir="$T/mref/model")
t0=$(ms_now); mon 2 gref.log generate "${gj[@]}" --generate.out="$T/gref.h5" || die "generate ref: $(tail -3 gref.log)"
dur=$(( $(ms_now) - t0 ))
for s in "${SEEDS[@]}"; do
  killrun "$s" "$dur" gk$s.log generate "${gj[@]}" --generate.out="$T/gk$s.h5"
  [ -e "$T/gk$s.h5" ] && [ -e "$T/gk$s.h5.partial" ] && die "generate seed $s: both a final and a partial file"
  mon 2 gk$s.re.log generate "${gj[@]}" --generate.out="$T/gk$s.h5" || die "generate rerun (seed $s): $(tail -3 gk$s.re.log)"
  $GENREF same "$T/gref.h5" "$T/gk$s.h5" > /dev/null || die "generate seed $s: file differs"
  ok "generate: kill -9 (seed $s) + rerun == uninterrupted"
done

# ---- train (SAE)
sae_fixture "$T/s"
t0=$(ms_now); mon 2 sref.log train s/job.yaml --run.out_dir="$T/sref" --sae.out_dir="$T/sref/sae" || die "train ref: $(tail -3 sref.log)"
dur=$(( $(ms_now) - t0 ))
for s in "${SEEDS[@]}"; do
  o="$T/sk$s"
  killrun "$s" "$dur" sk$s.log train s/job.yaml --run.out_dir="$o" --sae.out_dir="$o/sae"
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
t0=$(ms_now); mon 2 aref.log analyze "${aj[@]}" --analyze.out_dir="$T/aref" --analyze.batch=2 || die "analyze ref: $(tail -3 aref.log)"
dur=$(( $(ms_now) - t0 ))
for s in "${SEEDS[@]}"; do
  killrun "$s" "$dur" ak$s.log analyze "${aj[@]}" --analyze.out_dir="$T/ak$s" --analyze.batch=2
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
