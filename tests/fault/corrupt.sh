#!/usr/bin/env bash
# Corrupted state is detected, never loaded silently: bytes flipped inside the latest SAE or
# train-model checkpoint -> reported as corrupt, the previous checkpoint (.prev) is used and the
# run ends bitwise identical to an uninterrupted one; both corrupt -> a clear error on every
# rank; a flipped model.safetensors or SAELens weights file is refused by its readers.
set -u
. "$(dirname "$0")/common.sh"
T="$MS_TEST_TMP/fault_corrupt"
rm -rf "$T"; mkdir -p "$T"; cd "$T" || exit 1

# ---- SAE: uninterrupted reference, then a run stopped after its step-40 checkpoint
sae_fixture "$T/s"
mon 2 ref.log train s/job.yaml --run.out_dir="$T/sref" --sae.out_dir="$T/sref/sae" || die "reference train: $(tail -3 ref.log)"
MONOSEM_TEST_HOOK=checkpoint:40:*:fail mon 2 stop.log train s/job.yaml && die "stop hook did not stop"
ck=s/run/sae/checkpoint.safetensors
[ -f $ck ] && [ -f $ck.prev ] || die "no checkpoint + checkpoint.prev after two checkpoints: $(ls s/run/sae)"
flip $ck
mon 2 res.log train s/job.yaml || die "resume after corrupting the latest checkpoint: $(tail -3 res.log)"
grep -q "checkpoint.safetensors is corrupt (.*corrupt: the sha256 of its .* data bytes" res.log \
  && grep -q "falling back to the previous checkpoint .*checkpoint.safetensors.prev" res.log \
  || die "no corrupt/fallback message: $(head -5 res.log)"
grep -q "resuming from .*checkpoint.safetensors.prev at step 30" res.log || die "did not resume from the previous checkpoint (step 30): $(grep -i resum res.log)"
[ -f $ck.corrupt ] || die "corrupt checkpoint not kept aside"
same_st sref/sae/saelens/sae_weights.safetensors s/run/sae/saelens/sae_weights.safetensors || die "SAE after fallback differs"
same_st sref/sae/checkpoint.safetensors $ck || die "SAE final state after fallback differs"
ok "SAE: corrupt latest checkpoint detected, fell back to .prev, result bitwise identical"
# both corrupt: one clear error, every rank non-zero
rm -rf s/run; MONOSEM_TEST_HOOK=checkpoint:40:*:fail mon 2 stop2.log train s/job.yaml
flip $ck; flip $ck.prev
mon 2 both.log train s/job.yaml; rc=$?
n=$(grep -c "corrupt checkpoints, none to resume from" both.log)
[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ "$n" -eq 1 ] || die "both corrupt: exit $rc, message $n times: $(cat both.log)"
ok "SAE: both checkpoints corrupt -> exit $rc: $(grep corrupt both.log | cut -c1-160)"
# SAELens weights from an SAE (sae.init) are verified too
flip sref/sae/saelens/sae_weights.safetensors
mon 2 init.log train s/job.yaml --run.out_dir="$T/sinit" --sae.out_dir="$T/sinit/sae" --sae.init="$T/sref/sae/saelens"; rc=$?
[ $rc -ne 0 ] && grep -q "sae_weights.safetensors: corrupt" init.log || die "flipped SAELens weights loaded (exit $rc): $(tail -2 init.log)"
ok "SAE: flipped saelens weights refused"

# ---- train-model: reference, then a run killed at step 30 (checkpoints 20 and 30)
model_fixture "$T/m"
mon 2 mref.log train-model m/job.yaml --run.out_dir="$T/mref" --model.dir="$T/mref/model" || die "reference train-model: $(tail -3 mref.log)"
MONOSEM_TEST_HOOK=checkpoint:30:0:kill mon 2 mk.log train-model m/job.yaml && die "kill hook did not kill"
mck=m/run/train_model/checkpoint.safetensors
[ -f $mck ] && [ -f $mck.prev ] || die "no train-model checkpoint + .prev: $(ls m/run/train_model)"
flip $mck 5
mon 2 mres.log train-model m/job.yaml || die "train-model resume after corruption: $(tail -3 mres.log)"
grep -q "is corrupt" mres.log && grep -q "resuming from .*checkpoint.safetensors.prev at step 20" mres.log \
  || die "train-model: no fallback: $(grep -i 'corrupt\|resum' mres.log)"
same_st mref/model/model.safetensors m/run/model/model.safetensors || die "model after fallback differs"
ok "train-model: corrupt latest checkpoint detected, fell back to step 20, final model bitwise identical"
# a flipped model.safetensors is refused by generate
flip m/run/model/model.safetensors 1
mon 2 gen.log generate m/job.yaml; rc=$?
n=$(grep -c "model.safetensors: corrupt" gen.log)
[ $rc -ne 0 ] && [ "$n" -eq 1 ] || die "flipped model.safetensors: exit $rc, message $n times: $(tail -3 gen.log)"
ok "generate refuses a flipped model.safetensors"
# a flipped token shard is refused by its readers (generate here), naming the shard
cp -r m/tokens m/tokens.good
"$MS_PYTHON" - m/tokens/train-000000.bin <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read()); b[32 + (len(b) - 32) // 2] ^= 0x21; open(sys.argv[1], "wb").write(b)
PY
mon 2 tokc.log generate m/job.yaml --model.dir="$T/mref/model" --generate.out="$T/tokc.h5"; rc=$?
n=$(grep -c "train-000000.bin: corrupt: its tokens do not match the header's checksum" tokc.log)
[ $rc -ne 0 ] && [ "$n" -eq 1 ] || die "flipped token shard: exit $rc, message $n times: $(tail -3 tokc.log)"
ok "a flipped token shard is refused"
# sae.h5 datasets carry HDF5's fletcher32 filter: h5py (any HDF5 reader) refuses flipped data
"$MS_PYTHON" - sref/sae/sae.h5 <<'PY' || die "sae.h5: fletcher32 check"
import sys, h5py, numpy as np
p = sys.argv[1]
with h5py.File(p) as f:
    d = f["W_dec"]
    assert d.fletcher32, "W_dec has no fletcher32 filter"
    off, want = d.id.get_chunk_info(0).byte_offset, d[...]
b = bytearray(open(p, "rb").read()); b[off + 40] ^= 0x10; open(p, "wb").write(b)
try:
    with h5py.File(p) as f:
        got = f["W_dec"][...]
    sys.exit(f"FAIL: flipped sae.h5 W_dec read without error (equal: {np.array_equal(got, want)})")
except OSError as e:
    print("ok: flipped sae.h5 refused by h5py:", str(e).splitlines()[0][:120])
PY
# activations.h5: a changed provenance attribute no longer matches meta_sha256
rm -rf m/tokens && mv m/tokens.good m/tokens
mon 2 gacts.log generate m/job.yaml --model.dir="$T/mref/model" --generate.out="$T/acts.h5" || die "generate: $(tail -3 gacts.log)"
"$MS_PYTHON" -c "
import h5py, sys
with h5py.File(sys.argv[1], 'r+') as f: f.attrs['hook'] = 'blocks.0.hook_resid_mid'" "$T/acts.h5" || die "h5py edit"
"$MS_BIN/monosem" inspect "$T/acts.h5" > insp.log 2>&1; rc=$?
[ $rc -ne 0 ] && grep -q "acts.h5: corrupt: its attributes (shape, provenance, config) do not match meta_sha256" insp.log \
  || die "changed activations attribute not detected (exit $rc): $(head -3 insp.log)"
ok "activations.h5 with a changed attribute refused"
