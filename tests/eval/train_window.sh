#!/bin/bash
# Training-time density statistics come from a recent window (sae.dead_tokens tokens), are
# labelled as estimates, and a window longer than the run is warned about (with
# sae.final_density_rows 0: the final weights' count, the default, is sae_train_final's test):
#   - the final sparsity.safetensors densities sum to about the final L0 (a lifetime average
#     would carry the run's dense start), on a run whose L0 falls a lot;
#   - metrics.jsonl records the window; run.yaml labels dead/ultralow as training-time estimates;
#   - sae.dead_tokens longer than the run: a warning naming both numbers.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${MS_PYTHON:-/usr/bin/python3}
BIN=${MS_BIN:?}/monosem
MPIRUN=${MS_MPIRUN:-mpirun}
read -r -a MPIFLAGS <<< "${MS_MPI_FLAGS:-}"
T=${MS_TEST_TMP:-/tmp}/eval_train_window
rm -rf "$T" && mkdir -p "$T"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
die() { echo "FAIL: $*"; exit 1; }
job() { # job FILE OUT_DIR DEAD_TOKENS
    printf '%s\n' "run: {name: w, out_dir: $2, seed: 5}" "sae:" "  activations: $T/a.h5" "  d_sae: 128" \
        "  batch: 600" "  steps: 40" "  lr: 0.01" "  l1_coeff: 0.01" "  checkpoint_every: 0" "  log_every: 5" \
        "  shuffle_buffer: 5000" "  median_samples: 2000" "  dead_tokens: $3" "  final_density_rows: 0" > "$1"
}
"$PY" "$HERE/../sae_train/make_synth.py" "$T/a.h5" --rows 30000 --d 32 --feats 64 --seed 4 || die synth
job "$T/w.yaml" "$T/w" 3000
"$MPIRUN" -n 2 "${MPIFLAGS[@]}" "$BIN" train "$T/w.yaml" > "$T/w.log" 2>&1 || { cat "$T/w.log"; die "train"; }
grep -q "warning: sae.dead_tokens" "$T/w.log" && die "warned although the window fits the run"
grep -q "training-time estimates over the last 3000 tokens" "$T/w.log" || { tail -3 "$T/w.log"; die "final line not labelled"; }
grep -q "sae.dead: .*training-time estimate" "$T/w/run.yaml" || die "run.yaml dead not labelled"
"$PY" - "$T/w/sae" <<'PYEOF' || die "window densities"
import json, struct, sys
import numpy as np
d = sys.argv[1]
with open(f"{d}/saelens/sparsity.safetensors", "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); data = f.read()
b, e = h["sparsity"]["data_offsets"]
dens = 10.0 ** np.frombuffer(data[b:e], "<f4").astype(np.float64) - 1e-10
lines = [json.loads(l) for l in open(f"{d}/metrics.jsonl")]
assert all(l["density_window"] == 3000 for l in lines), "density_window recorded"
l0_first, l0_last = lines[0]["l0"], lines[-1]["l0"]
tail = np.mean([l["l0"] for l in lines[-2:]])
print(f"L0 {l0_first:.1f} -> {l0_last:.1f}; window densities sum {dens.sum():.2f}; "
      f"source {h['__metadata__'].get('density_source')}")
assert l0_first > 1.5 * l0_last, "the run's L0 must fall for this test to mean anything"
assert abs(dens.sum() - tail) < 0.15 * tail, "window densities sum to the recent L0"
assert "training window" in h["__metadata__"].get("density_source", "")
PYEOF
job "$T/long.yaml" "$T/long" 10000000
"$MPIRUN" -n 1 "${MPIFLAGS[@]}" "$BIN" train "$T/long.yaml" > "$T/long.log" 2>&1 || { cat "$T/long.log"; die "train long window"; }
grep -q "warning: sae.dead_tokens 10000000 exceeds this run's 24000 tokens" "$T/long.log" \
    || { head -5 "$T/long.log"; die "no warning for a window longer than the run"; }
echo "window densities, labels and the long-window warning as documented"
