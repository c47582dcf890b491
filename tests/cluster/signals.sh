#!/usr/bin/env bash
# Wall-clock signals (issue 15): SIGTERM/SIGUSR1 sent to ONE rank of a 2-rank run mid-way ->
# every rank stops at the same step boundary, a checkpoint is written, exit code 75; rerunning
# the same command resumes and ends bitwise identical to an uninterrupted run. A storm of
# SIGTERMs (signals arriving while the checkpoint is written) leaves a valid checkpoint.
# eval and compare keep no checkpoint: they stop at an agreed batch, write nothing, and a rerun
# starts over; `run` stops with its stage and a rerun of it resumes that unit.
#   signals.sh train-model | train | generate | analyze | eval | compare | run
set -u
case_=${1:?usage: signals.sh train-model|train|generate|analyze|eval|compare|run}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/fixture.sh"
. "$here/../hook.sh"
py=${MS_PYTHON:-/usr/bin/python3}
tmp="${MS_TEST_TMP:?}/signals_$case_"
rm -rf "$tmp"; mkdir -p "$tmp"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
mon() { # mon NP LOG STAGE ARGS...: monosem under mpirun, foreground
  local np=$1 log=$2 stage=$3; shift 3
  timeout 300 "$MS_MPIRUN" -n "$np" $MS_MPI_FLAGS "$MS_BIN/monosem" "$stage" "$tmp/job/job.yaml" "$@" >"$log" 2>&1
}
# interrupt LOG SPEC SIGNAL STORM STAGE ARGS...: runs the stage on 2 ranks with a stop hook at SPEC
# (POINT:N:RANK, MONOSEM_TEST_HOOK); once that rank has stopped there, sends it SIGNAL and lets
# it go on (STORM=1: SIGNAL again every 20 ms until it exits, i.e. during the checkpoint). The
# signal is pending when the rank resumes, so the stage stops exactly at that point. Sets $rc.
interrupt() {
  local log=$1 spec=$2 sig=$3 storm=$4 stage=$5; shift 5
  local rep="$tmp/hook.$stage.$$" mp pid i
  rm -f "$rep"
  MONOSEM_TEST_HOOK="$spec:stop:$rep" timeout 300 "$MS_MPIRUN" -n 2 $MS_MPI_FLAGS -x MONOSEM_TEST_HOOK \
    "$MS_BIN/monosem" "$stage" "$tmp/job/job.yaml" "$@" >"$log" 2>&1 &
  mp=$!
  if ! pid=$(hook_wait "$rep" "$mp" "$stage at $spec"); then
    fail "$stage never stopped at $spec"; wait_bounded "$mp" 60 "$stage"; rc=$?; return
  fi
  echo "sending $sig to rank $(cut -d' ' -f2 "$rep") (pid $pid), stopped at $spec$([ "$storm" = 1 ] && echo ', repeatedly')"
  kill -s "$sig" "$pid"
  hook_release_signalled "$rep"
  if [ "$storm" = 1 ]; then
    for ((i = 0; i < 3000; i++)); do kill -s "$sig" "$pid" 2>/dev/null || break; sleep 0.02; done
  fi
  wait_bounded "$mp" 240 "$stage after $sig"; rc=$?
}
same_file() { cmp -s "$1" "$2" || fail "$3: $(basename "$1") differs from the uninterrupted run"; }
strip() { sed 's/,"tokens_per_s":[0-9.]*//; s/"tokens_per_s": [0-9.]*, //' "$1"; }

make_tiny_job "$tmp/job" || { echo "FAIL: fixture"; exit 1; }
mon 1 "$tmp/tokenize.log" tokenize || { cat "$tmp/tokenize.log"; echo "FAIL: tokenize"; exit 1; }

case $case_ in
train-model)
  ref=(--run.out_dir="$tmp/ref" --model.dir="$tmp/ref/model")
  mon 2 "$tmp/ref.log" train-model "${ref[@]}" || { cat "$tmp/ref.log"; fail "uninterrupted train-model"; }
  for kind in once storm; do
    o=(--run.out_dir="$tmp/$kind" --model.dir="$tmp/$kind/model")
    storm=0; [ $kind = storm ] && storm=1
    interrupt "$tmp/$kind.log" step:12:1 TERM $storm train-model "${o[@]}"
    cat "$tmp/$kind.log"
    [ "$rc" = 75 ] || fail "$kind: exit code $rc, expected 75"
    grep -q "train-model: SIGTERM: stopped at step 12 of 60 after writing" "$tmp/$kind.log" ||
      fail "$kind: no one-line explanation of the stop"
    grep -q "status: interrupted" "$tmp/$kind/run-train-model.yaml" || fail "$kind: run record does not say interrupted"
    [ -f "$tmp/$kind/model/model.safetensors" ] && fail "$kind: an interrupted run wrote the final model"
    [ -f "$tmp/$kind/train_model/checkpoint.safetensors" ] || fail "$kind: no checkpoint"
    ls "$tmp/$kind/train_model/" | grep -q tmp && fail "$kind: a temporary checkpoint file was left behind"
    at=$(sed -n 's/.*stopped at step \([0-9]*\) .*/\1/p' "$tmp/$kind.log")
    mon 2 "$tmp/$kind.resume.log" train-model "${o[@]}" || { cat "$tmp/$kind.resume.log"; fail "$kind: resume"; }
    grep -q "resuming from .* at step $at\$" "$tmp/$kind.resume.log" || fail "$kind: did not resume at step $at"
    same_file "$tmp/ref/model/model.safetensors" "$tmp/$kind/model/model.safetensors" "$kind"
    same_file "$tmp/ref/train_model/checkpoint.safetensors" "$tmp/$kind/train_model/checkpoint.safetensors" "$kind"
    [ "$(strip "$tmp/ref/train_model/log.jsonl")" = "$(strip "$tmp/$kind/train_model/log.jsonl")" ] ||
      fail "$kind: loss log differs from the uninterrupted run"
  done ;;
train)
  mon 2 "$tmp/model.log" train-model || { cat "$tmp/model.log"; echo "FAIL: train-model"; exit 1; }
  mon 2 "$tmp/gen.log" generate || { cat "$tmp/gen.log"; echo "FAIL: generate"; exit 1; }
  # every run writes the job's own sae.out_dir (the checkpoint records the config hash), moved aside after
  sae="$tmp/job/sae"
  mon 2 "$tmp/ref.log" train || { cat "$tmp/ref.log"; fail "uninterrupted train"; }
  mv "$sae" "$tmp/ref"
  for kind in once storm; do
    storm=0; [ $kind = storm ] && storm=1
    interrupt "$tmp/$kind.log" step:12:0 TERM $storm train
    cat "$tmp/$kind.log"
    [ "$rc" = 75 ] || fail "$kind: exit code $rc, expected 75"
    grep -q "train: SIGTERM: stopped at step 12 of 60 after writing" "$tmp/$kind.log" || fail "$kind: no stop line"
    [ -f "$sae/checkpoint.safetensors" ] || fail "$kind: no checkpoint"
    [ -f "$sae/sae.h5" ] && fail "$kind: an interrupted run wrote the final SAE"
    ls "$sae" | grep -q tmp && fail "$kind: a temporary checkpoint file was left behind"
    at=$(sed -n 's/.*stopped at step \([0-9]*\) .*/\1/p' "$tmp/$kind.log")
    mon 2 "$tmp/$kind.resume.log" train || { cat "$tmp/$kind.resume.log"; fail "$kind: resume"; }
    grep -q "resuming from .* at step $at of 60" "$tmp/$kind.resume.log" || fail "$kind: did not resume at step $at"
    mv "$sae" "$tmp/$kind"
    same_file "$tmp/ref/checkpoint.safetensors" "$tmp/$kind/checkpoint.safetensors" "$kind"
    same_file "$tmp/ref/saelens/sae_weights.safetensors" "$tmp/$kind/saelens/sae_weights.safetensors" "$kind"
    [ "$(strip "$tmp/ref/metrics.jsonl")" = "$(strip "$tmp/$kind/metrics.jsonl")" ] ||
      fail "$kind: metrics differ from the uninterrupted run"
  done ;;
generate)
  mon 2 "$tmp/model.log" train-model || { cat "$tmp/model.log"; echo "FAIL: train-model"; exit 1; }
  mon 2 "$tmp/ref.log" generate --generate.out="$tmp/ref.h5" || { cat "$tmp/ref.log"; fail "uninterrupted generate"; }
  # SIGUSR1 (what mpirun forwards) to one rank once it has written 2 shards: rank 0 (the
  # coordinator, which must stop handing out shards) and rank 1 (a worker, which tells it to)
  for who in 0 1; do
    interrupt "$tmp/int$who.log" shard:2:$who USR1 0 generate --generate.out="$tmp/int$who.h5"
    cat "$tmp/int$who.log"
    [ "$rc" = 75 ] || fail "generate, rank $who signalled: exit code $rc, expected 75"
    grep -q "generate: SIGUSR1: stopped after [0-9]* more of 75 shards" "$tmp/int$who.log" || fail "generate $who: no stop line"
    [ -f "$tmp/int$who.h5.partial" ] || fail "generate $who: the partial file is gone"
    [ -f "$tmp/int$who.h5" ] && fail "generate $who: an interrupted run wrote the final file"
    if [ $who = 0 ]; then
      # the stop must be prompt: while the hook holds the coordinator nobody is handed a shard,
      # and it resumes with the signal pending, so shards must be left (no timing involved)
      ndone=$(sed -n 's/.*generate: SIGUSR1: stopped after \([0-9]*\) more of 75 shards.*/\1/p' "$tmp/int0.log" | head -1)
      [ -n "$ndone" ] && [ "$ndone" -lt 75 ] || fail "generate: the coordinator did all 75 shards after the signal (stop ignored)"
    fi
    mon 2 "$tmp/resume$who.log" generate --generate.out="$tmp/int$who.h5" || { cat "$tmp/resume$who.log"; fail "generate $who: resume"; }
    grep -qE "resuming .*: [1-9][0-9]* of 75 shards already done" "$tmp/resume$who.log" || fail "generate $who: did not resume"
    [ $who = 0 ] && grep -qE "resuming .*: 75 of 75 shards already done" "$tmp/resume0.log" &&
      fail "generate: nothing left to resume (the coordinator ignored the stop)"
    "$py" "$here/../generate/ref_generate.py" same "$tmp/ref.h5" "$tmp/int$who.h5" ||
      fail "generate $who: interrupted+resumed file differs from the uninterrupted one"
  done ;;
analyze)
  # analyze keeps no checkpoint: a stop is agreed at a block, exits 75 without writing any
  # analysis file, and a rerun starts over and ends identical to an uninterrupted run
  mon 2 "$tmp/model.log" train-model || { cat "$tmp/model.log"; echo "FAIL: train-model"; exit 1; }
  mon 2 "$tmp/gen.log" generate || { cat "$tmp/gen.log"; echo "FAIL: generate"; exit 1; }
  mon 2 "$tmp/train.log" train || { cat "$tmp/train.log"; echo "FAIL: train"; exit 1; }
  a=(--analyze.batch=1 --analyze.out_dir="$tmp/ref")
  mon 2 "$tmp/ref.log" analyze "${a[@]}" || { cat "$tmp/ref.log"; fail "uninterrupted analyze"; }
  a=(--analyze.batch=1 --analyze.out_dir="$tmp/int")
  interrupt "$tmp/int.log" step:3:1 TERM 0 analyze "${a[@]}"
  cat "$tmp/int.log"
  [ "$rc" = 75 ] || fail "analyze: exit code $rc, expected 75"
  grep -q "analyze: SIGTERM: stopped in pass 1 of 2 after 3 of" "$tmp/int.log" || fail "analyze: no stop line"
  [ -n "$(find "$tmp/int" -name 'analysis.h5*' 2>/dev/null)" ] && fail "analyze: an interrupted run wrote analysis files"
  mon 2 "$tmp/rerun.log" analyze "${a[@]}" || { cat "$tmp/rerun.log"; fail "analyze: rerun"; }
  for f in sae/analysis.h5 neurons/analysis.h5; do
    "$py" - "$tmp/ref/$f" "$tmp/int/$f" <<'PYEOF' || fail "analyze: $f of the rerun differs from the uninterrupted run"
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
assert sorted(a) == sorted(b)
for k in a:
    assert np.array_equal(a[k][...], b[k][...]), k
PYEOF
  done ;;
eval|compare)
  # two SAE sizes, so compare has a splitting pair to correlate
  sed -i 's#^sae: {#saes: [{name: S0, d_sae: 32}, {name: S1}]\nsae: {#' "$tmp/job/job.yaml"
  mon 2 "$tmp/model.log" train-model || { cat "$tmp/model.log"; echo "FAIL: train-model"; exit 1; }
  mon 2 "$tmp/gen.log" generate || { cat "$tmp/gen.log"; echo "FAIL: generate"; exit 1; }
  mon 2 "$tmp/train.log" train || { cat "$tmp/train.log"; echo "FAIL: train"; exit 1; }
  if [ $case_ = eval ]; then outs=("$tmp/job/run/sae-S0/eval.json" "$tmp/job/run/sae-S1/eval.json"); b=(--eval.batch=1)
  else outs=("$tmp/job/run/compare/splitting.json" "$tmp/job/run/compare/universality.json"); b=(--compare.batch=1); fi
  mon 2 "$tmp/ref.log" $case_ "${b[@]}" || { cat "$tmp/ref.log"; fail "uninterrupted $case_"; }
  mkdir -p "$tmp/ref"; for f in "${outs[@]}"; do cp "$f" "$tmp/ref/$(basename "$(dirname "$f")")_$(basename "$f")"; done
  rm -f "${outs[@]}"
  for sig in TERM USR1; do
    interrupt "$tmp/int$sig.log" step:3:1 $sig 0 $case_ "${b[@]}"
    cat "$tmp/int$sig.log"
    [ "$rc" = 75 ] || fail "$case_: SIG$sig: exit code $rc, expected 75"
    grep -q "$case_: SIG$sig: stopped .*after 3 of [0-9]* batches per rank, nothing written" "$tmp/int$sig.log" ||
      fail "$case_: SIG$sig: no stop line"
    for f in "${outs[@]}"; do [ -e "$f" ] && fail "$case_: SIG$sig: an interrupted run wrote $f"; done
    [ -n "$(find "$tmp/job/run" -name '*.tmp.*')" ] && fail "$case_: SIG$sig: temporary files left"
  done
  mon 2 "$tmp/rerun.log" $case_ "${b[@]}" || { cat "$tmp/rerun.log"; fail "$case_: rerun"; }
  "$py" - "$tmp/ref" "${outs[@]}" <<'PYEOF' || fail "$case_: the rerun's results differ from the uninterrupted run"
import json, os, sys
def strip(d):  # timings differ between runs; every number computed from the data must not
    if isinstance(d, dict):
        return {k: strip(v) for k, v in d.items() if k not in ("seconds", "tokens_per_s", "time", "timing", "run")}
    if isinstance(d, list): return [strip(v) for v in d]
    return d
for f in sys.argv[2:]:
    ref = os.path.basename(os.path.dirname(f)) + "_" + os.path.basename(f)
    a = strip(json.load(open(os.path.join(sys.argv[1], ref))))
    b = strip(json.load(open(f)))
    assert a == b, f
PYEOF
  ;;
run)
  # `monosem run` signalled inside train-model (rank 1 at its step 12): exit 75, the unit stays
  # "started", and the rerun resumes it and finishes every unit, identical to an uninterrupted run
  ref=(--run.out_dir="$tmp/ref" --model.dir="$tmp/ref/model" --generate.out="$tmp/ref/acts.h5"
       --sae.activations="$tmp/ref/acts.h5" --sae.out_dir="$tmp/ref/sae")
  mon 2 "$tmp/ref.log" run "${ref[@]}" || { cat "$tmp/ref.log"; fail "uninterrupted run"; }
  interrupt "$tmp/int.log" step:12:1 TERM 0 run
  cat "$tmp/int.log"
  [ "$rc" = 75 ] || fail "run: exit code $rc, expected 75"
  grep -q "train-model: SIGTERM: stopped at step 12 of 60 after writing" "$tmp/int.log" || fail "run: no stop line"
  grep -q '"state":[[:space:]]*"started"' "$tmp/job/run/stages/train-model.json" || fail "run: train-model not left 'started'"
  [ -e "$tmp/job/run/stages/generate.json" ] && fail "run: went on to generate after the signal"
  mon 2 "$tmp/rerun.log" run || { cat "$tmp/rerun.log"; fail "run: rerun"; }
  grep -q "== train-model: a run of the same configuration was interrupted: resuming" "$tmp/rerun.log" ||
    fail "run: the rerun did not resume train-model"
  grep -q "resuming from .* at step 12" "$tmp/rerun.log" || fail "run: train-model did not resume at step 12"
  same_file "$tmp/ref/model/model.safetensors" "$tmp/job/model/model.safetensors" "run"
  same_file "$tmp/ref/sae/saelens/sae_weights.safetensors" "$tmp/job/sae/saelens/sae_weights.safetensors" "run" ;;
*) echo "unknown case $case_"; exit 2 ;;
esac
[ "$fails" -eq 0 ] && echo "signals $case_: all checks passed"
exit $((fails > 0))
