#!/usr/bin/env bash
# A full disk (a small tmpfs mounted here; root needed) during generation and during SAE
# checkpointing: one clear line, every rank exits non-zero, nothing that looks complete is left,
# and the same command after space is freed completes, identical to a run that never hit it.
# The ranks are paused (SIGSTOP) right after they start writing, the disk is filled, and they go on.
set -u
. "$(dirname "$0")/common.sh"
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

# pause_fill_resume PID STAGE LOG PATTERN: waits for PATTERN in LOG (the stage is past creating
# its output), SIGSTOPs the ranks, fills the tmpfs, SIGCONTs them. Fails if the run was over.
pause_fill_resume() {
  local mp=$1 stage=$2 log=$3 pat=$4 pids=()
  for _ in $(seq 1 2000); do # PATTERN "" = LOG is a file that must exist
    if [ -z "$pat" ]; then [ -e "$log" ] && break; else grep -q "$pat" "$log" 2>/dev/null && break; fi
    kill -0 "$mp" 2>/dev/null || break; sleep 0.01
  done
  mapfile -t pids < <(pgrep -P "$mp" -f "monosem $stage")
  [ ${#pids[@]} -gt 0 ] && kill -STOP "${pids[@]}"
  fallocate -l "$(( $(stat -f -c '%a*%S' "$MNT") ))" "$MNT/filler" 2>/dev/null || dd if=/dev/zero of="$MNT/filler" bs=1M 2>/dev/null
  [ ${#pids[@]} -gt 0 ] && kill -CONT "${pids[@]}"
  echo "  disk filled ($(df --output=avail -k "$MNT" | tail -1 | tr -d ' ') KiB left) with ${#pids[@]} rank(s) paused"
  [ ${#pids[@]} -gt 0 ]
}

# ---- generate: a model big enough that the run lasts a while
model_fixture "$T/m"
"$TOOL" model "$T/model" 1 256 1024 4 16 512 relu 3 || die "model"
gj=(m/job.yaml --model.dir="$T/model" --generate.sample_per_context=8)
mon 2 gref.log generate "${gj[@]}" --generate.out="$T/gref.h5" || die "generate ref: $(tail -3 gref.log)"
out="$MNT/acts.h5"
"$MS_MPIRUN" -n 2 "${MPIFLAGS[@]}" "$MS_BIN/monosem" generate "${gj[@]}" --generate.out="$out" > gfull.log 2>&1 &
mp=$!
pause_fill_resume $mp generate gfull.log "^generate: .* contexts x" || die "generate ended before the disk could be filled"
t=0; while kill -0 $mp 2>/dev/null; do sleep 0.1; t=$((t + 1)); [ $t -lt 600 ] || { kill -9 $mp; die "generate hangs on a full disk"; }; done
wait $mp; rc=$?
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
"$MS_MPIRUN" -n 2 "${MPIFLAGS[@]}" "$MS_BIN/monosem" train s/job.yaml --run.out_dir="$T/srun" --sae.out_dir="$so" > sfull.log 2>&1 &
mp=$!
pause_fill_resume $mp train "$so/checkpoint.safetensors" "" || die "train ended before the disk could be filled"
t=0; while kill -0 $mp 2>/dev/null; do sleep 0.1; t=$((t + 1)); [ $t -lt 600 ] || { kill -9 $mp; die "train hangs on a full disk"; }; done
wait $mp; rc=$?
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

# ---- train-model: checkpoints onto the full disk (more steps than the fixture: a run that lasts)
mj=(m/job.yaml --train_model.steps=6000 --train_model.checkpoint_every=100 --train_model.warmup_steps=50)
mon 2 mref.log train-model "${mj[@]}" --run.out_dir="$T/mref" --model.dir="$T/mref/model" || die "train-model ref: $(tail -3 mref.log)"
mo="$MNT/mrun"
"$MS_MPIRUN" -n 2 "${MPIFLAGS[@]}" "$MS_BIN/monosem" train-model "${mj[@]}" --run.out_dir="$mo" --model.dir="$mo/model" > mfull.log 2>&1 &
mp=$!
pause_fill_resume $mp train-model "$mo/train_model/checkpoint.safetensors" "" || die "train-model ended before the disk could be filled"
t=0; while kill -0 $mp 2>/dev/null; do sleep 0.1; t=$((t + 1)); [ $t -lt 600 ] || { kill -9 $mp; die "train-model hangs on a full disk"; }; done
wait $mp; rc=$?
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
