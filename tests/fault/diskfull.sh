#!/usr/bin/env bash
# A full disk (a small tmpfs mounted here; root needed) during generation and during SAE
# checkpointing: one clear line, every rank exits non-zero, nothing that looks complete is left,
# and the same command after space is freed completes, identical to a run that never hit it.
# A rank stops itself at a point it reports (a shard done, a checkpoint in place: MONOSEM_TEST_HOOK),
# the other ranks are stopped too, the disk is filled, and they all go on: no timer decides.
set -u
. "$(dirname "$0")/common.sh"
. "$TESTS_DIR/hook.sh"
T="$MS_TEST_TMP/fault_diskfull"
MNT="$T/mnt"
cleanup() { mountpoint -q "$MNT" && umount -l "$MNT"; }
trap cleanup EXIT INT TERM
cleanup 2>/dev/null; rm -rf "$T"; mkdir -p "$MNT"; cd "$T" || exit 1
if ! mount -t tmpfs -o size=96m tmpfs "$MNT" 2>mount.err; then
  echo "SKIP: cannot mount a tmpfs here ($(cat mount.err)); the full-disk cases need root and mount"; exit 0
fi
TOOL=${GEN_TOOL:?gen_tool path}
GENREF="$MS_PYTHON $TESTS_DIR/generate/ref_generate.py"

# stop_fill_resume MPID STAGE REPORT WHAT: waits (bounded) until the rank with the stop hook has
# reported its point and stopped there (MONOSEM_TEST_HOOK), stops the other ranks too, fills the
# tmpfs, and lets them all go on. Fails if the run ended before the point.
stop_fill_resume() {
  local mp=$1 stage=$2 rep=$3 what=$4 pids=()
  hook_wait "$rep" "$mp" "$what" > /dev/null || return 1
  mapfile -t pids < <(pgrep -P "$mp" -f "monosem $stage")
  [ ${#pids[@]} -gt 0 ] || return 1
  kill -STOP "${pids[@]}"
  fallocate -l "$(( $(stat -f -c '%a*%S' "$MNT") ))" "$MNT/filler" 2>/dev/null || dd if=/dev/zero of="$MNT/filler" bs=1M 2>/dev/null
  rm -f "$rep"; kill -CONT "${pids[@]}" # the hooked rank goes on once its report is gone
  echo "  disk filled ($(df --output=avail -k "$MNT" | tail -1 | tr -d ' ') KiB left) with ${#pids[@]} rank(s) stopped at $what"
}
# hooked NAME SPEC: MONOSEM_TEST_HOOK for a stop at SPEC (POINT:N:RANK), reporting to $T/NAME.hook
hooked() { rm -f "$T/$1.hook"; echo "$2:stop:$T/$1.hook"; }

# ---- generate: a model big enough that the run lasts a while
model_fixture "$T/m"
"$TOOL" model "$T/model" 1 256 1024 4 16 512 relu 3 || die "model"
gj=(m/job.yaml --model.dir="$T/model" --generate.sample_per_context=8)
mon 2 gref.log generate "${gj[@]}" --generate.out="$T/gref.h5" || die "generate ref: $(tail -3 gref.log)"
out="$MNT/acts.h5"
# rank 0 hands out the shards: stopped after its first one, nothing more is handed out
MONOSEM_TEST_HOOK=$(hooked gen shard:1:0) "$MS_MPIRUN" -n 2 "${MPIFLAGS[@]}" -x MONOSEM_TEST_HOOK \
  "$MS_BIN/monosem" generate "${gj[@]}" --generate.out="$out" > gfull.log 2>&1 &
mp=$!
stop_fill_resume $mp generate "$T/gen.hook" "generate's first shard on rank 0" || { wait_bounded $mp 60 generate; die "generate ended before the disk could be filled: $(tail -3 gfull.log)"; }
wait_bounded $mp 60 "generate on a full disk" > /dev/null; rc=$?
[ $rc -ne 124 ] || die "generate hangs on a full disk"
[ $rc -ne 0 ] || die "generate on a full disk exited 0: $(tail -3 gfull.log)"
# monosem's line (Open MPI's OMPIO may add its own "mca_fbtl_posix_pwritev: ..." line first)
n=$(grep -c "^$out.partial: .*: No space left on device (.* MB free): free space and rerun" gfull.log)
[ "$n" -eq 1 ] || die "generate: want one line naming the file and 'No space left on device', got: $(cat gfull.log)"
[ -e "$out" ] && die "generate left $out (looks complete) after a full disk"
ok "generate on a full disk: exit $rc, one line: $(grep "^$out.partial" gfull.log)"
rm -f "$MNT/filler"
mon 2 gre.log generate "${gj[@]}" --generate.out="$out" || die "generate rerun after freeing space: $(tail -3 gre.log)"
$GENREF same "$T/gref.h5" "$out" > /dev/null || die "generate after a full disk differs from the reference"
ok "generate rerun after freeing space completes, identical to the reference"
rm -f "$out"

# ---- train: checkpoints onto the full disk
sae_fixture "$T/s"
mon 2 sref.log train s/job.yaml --run.out_dir="$T/sref" --sae.out_dir="$T/sref/sae" || die "train ref: $(tail -3 sref.log)"
so="$MNT/sae"
MONOSEM_TEST_HOOK=$(hooked train checkpoint:10:0) "$MS_MPIRUN" -n 2 "${MPIFLAGS[@]}" -x MONOSEM_TEST_HOOK \
  "$MS_BIN/monosem" train s/job.yaml --run.out_dir="$T/srun" --sae.out_dir="$so" > sfull.log 2>&1 &
mp=$!
stop_fill_resume $mp train "$T/train.hook" "train's checkpoint at step 10" || { wait_bounded $mp 60 train; die "train ended before the disk could be filled: $(tail -3 sfull.log)"; }
wait_bounded $mp 60 "train on a full disk" > /dev/null; rc=$?
[ $rc -ne 124 ] || die "train hangs on a full disk"
[ $rc -ne 0 ] || die "train on a full disk exited 0: $(tail -3 sfull.log)"
n=$(grep -c "No space left on device" sfull.log)
[ "$n" -eq 1 ] || die "train: want one line naming 'No space left on device', got: $(cat sfull.log)"
[ -e "$so/sae.h5" ] || [ -e "$so/saelens/sae_weights.safetensors" ] && die "train left final outputs after a full disk"
ls "$so" | grep -q "\.tmp\." && die "train left temporary files: $(ls "$so")"
ok "train on a full disk: exit $rc, one line: $(grep 'No space' sfull.log)"
rm -f "$MNT/filler"
mon 2 sre.log train s/job.yaml --run.out_dir="$T/srun" --sae.out_dir="$so" || die "train rerun after freeing space: $(tail -3 sre.log)"
grep -q "resuming from" sre.log || die "train rerun did not resume from its checkpoint"
same_st sref/sae/saelens/sae_weights.safetensors "$so/saelens/sae_weights.safetensors" || die "train after a full disk differs"
ok "train rerun after freeing space resumes and ends identical to the reference"

# ---- train-model: checkpoints onto the full disk (the fixture's 60 steps, checkpoints every 10)
mj=(m/job.yaml)
mon 2 mref.log train-model "${mj[@]}" --run.out_dir="$T/mref" --model.dir="$T/mref/model" || die "train-model ref: $(tail -3 mref.log)"
mo="$MNT/mrun"
MONOSEM_TEST_HOOK=$(hooked model checkpoint:10:0) "$MS_MPIRUN" -n 2 "${MPIFLAGS[@]}" -x MONOSEM_TEST_HOOK \
  "$MS_BIN/monosem" train-model "${mj[@]}" --run.out_dir="$mo" --model.dir="$mo/model" > mfull.log 2>&1 &
mp=$!
stop_fill_resume $mp train-model "$T/model.hook" "train-model's checkpoint at step 10" || { wait_bounded $mp 60 train-model; die "train-model ended before the disk could be filled: $(tail -3 mfull.log)"; }
wait_bounded $mp 60 "train-model on a full disk" > /dev/null; rc=$?
[ $rc -ne 124 ] || die "train-model hangs on a full disk"
[ $rc -ne 0 ] || die "train-model on a full disk exited 0: $(tail -3 mfull.log)"
n=$(grep -c "No space left on device" mfull.log)
[ "$n" -eq 1 ] || die "train-model: want one line naming 'No space left on device', got: $(cat mfull.log)"
[ -e "$mo/model/model.safetensors" ] && die "train-model left a final model after a full disk"
ok "train-model on a full disk: exit $rc, one line: $(grep 'No space' mfull.log)"
rm -f "$MNT/filler"
mon 2 mre.log train-model "${mj[@]}" --run.out_dir="$mo" --model.dir="$mo/model" || die "train-model rerun: $(tail -3 mre.log)"
grep -q "resuming from" mre.log || die "train-model rerun did not resume"
same_st mref/model/model.safetensors "$mo/model/model.safetensors" || die "train-model after a full disk differs"
ok "train-model rerun after freeing space resumes and ends identical to the reference"
