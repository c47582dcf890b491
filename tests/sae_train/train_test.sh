#!/bin/bash
# End-to-end tests of `monosem train` under mpirun on synthetic activation files (make_synth.py).
#   train_test.sh ranks     params identical on 2 and 4 ranks; 1 vs 2 vs 4 ranks agree (compare_runs.py);
#                           formats; sae.init
#   train_test.sh resume    kill -9 a rank mid-run, rerun: final weights bitwise identical
#   train_test.sh recovery  known sparse ground truth recovered (mean max-cosine > 0.9)
#   train_test.sh badinput  d mismatch, incomplete file, NaN rows (error / skip), divergence
#   train_test.sh archs     topk, batchtopk, jumprelu, april-2024 on 2 ranks: outputs as documented,
#                           stop after a checkpoint + rerun = uninterrupted run, bitwise
#   train_test.sh memory    peak RSS does not grow with the file (50k vs 400k rows, same job)
#   train_test.sh final     the final weights' densities (sae.final_density_rows) equal NumPy's
#                           count on the same rows (relu-l1 and april-2024's input scaling), in
#                           metrics.jsonl, sae.h5 and sparsity.safetensors; a rerun keeps them
#   train_test.sh resample  the density criterion (sae.resample.max_density) resamples exactly the
#                           features below it over the window (NumPy on the checkpoint's counters),
#                           including rare ones the paper's never-fired rule leaves alone; they
#                           are revived; counts in the log and metrics.jsonl
#   train_test.sh repro     sae.reproducible at the demo's shapes (d_in 512; relu-l1 d_sae 2048 with
#                           resampling, topk d_sae 512 with AuxK; batch 512 in the default 8
#                           micro-shards): 1, 2, 3 and 4 ranks (1 rank on both CPUs) give bitwise
#                           identical sae.h5 datasets, checkpoints (+ .prev), SAELens files and
#                           metrics (compare_repro.py); a bad sae.micro_shards is refused
set -u
CASE=$1
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../hook.sh"
PY=${MS_PYTHON:-/usr/bin/python3}
BIN=${MS_BIN:?}/monosem
MPIRUN=${MS_MPIRUN:-mpirun}
read -r -a MPIFLAGS <<< "${MS_MPI_FLAGS:-}"
T=${MS_TEST_TMP:-/tmp}/sae_train_$CASE
rm -rf "$T" && mkdir -p "$T"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

die() { echo "FAIL: $*"; exit 1; }
run() { # run NP JOB [expect-fail]: prints output to $T/last.log
    local np=$1 job=$2
    "$MPIRUN" -n "$np" "${MPIFLAGS[@]}" "$BIN" train "$job" > "$T/last.log" 2>&1
}
job() { # job FILE OUT_DIR ACTS [extra sae lines...]
    local file=$1 out=$2 acts=$3; shift 3
    { echo "run: {name: t, out_dir: $out, seed: 5}"
      echo "sae:"
      echo "  activations: $acts"
      for l in "$@"; do echo "  $l"; done; } > "$file"
}

case $CASE in
ranks)
    "$PY" "$HERE/make_synth.py" "$T/a.h5" --rows 24000 --d 32 --feats 64 --seed 3 || die synth
    # Rank counts sum in different orders (and CPUs round differently), so runs on 1, 2 and 4
    # ranks are compared as compare_runs.py explains: a few steps closely, many steps by their
    # loss curve. Within one run every rank must hold bitwise identical parameters.
    short=("d_sae: 128" "batch: 600" "steps: 4" "lr: 0.01" "l1_coeff: 0.3" "checkpoint_every: 2"
           "log_every: 1" "shuffle_buffer: 5000" "median_samples: 2000")
    # a strong L1 kills features quickly so that resampling (rank-agreed draw) happens at step 20
    common=("d_sae: 128" "batch: 600" "steps: 30" "lr: 0.01" "l1_coeff: 0.3" "checkpoint_every: 10"
            "log_every: 5" "shuffle_buffer: 5000" "median_samples: 2000" "resample: {at: [20], window: 2, inputs: 3000}")
    for np in 1 2 4; do
        job "$T/s$np.yaml" "$T/s$np" "$T/a.h5" "${short[@]}"
        run $np "$T/s$np.yaml" || { cat "$T/last.log"; die "short train on $np ranks"; }
        job "$T/j$np.yaml" "$T/r$np" "$T/a.h5" "${common[@]}"
        run $np "$T/j$np.yaml" || { cat "$T/last.log"; die "train on $np ranks"; }
        if [ $np -gt 1 ]; then
            grep -q "params_identical_across_ranks: yes (checked at 3 checkpoints over $np ranks)" "$T/r$np/run.yaml" \
                || { grep params_identical "$T/r$np/run.yaml"; die "invariant not checked on $np ranks"; }
        fi
    done
    grep -q "step 20: resampled [1-9][0-9]* dead" "$T/last.log" || { grep resampled "$T/last.log"; die "no neuron resampled at step 20"; }
    "$PY" "$HERE/compare_runs.py" short "$T/s1/sae" "$T/s2/sae" "$T/s4/sae" || die "1 vs 2 vs 4 ranks differ after 4 steps"
    "$PY" "$HERE/compare_runs.py" long "$T/r1/sae" "$T/r2/sae" "$T/r4/sae" || die "1 vs 2 vs 4 ranks: loss curves differ"
    "$PY" "$HERE/check_formats.py" sae "$T/r2/sae" 32 128 || die formats
    # sae.init: start from r2's SAELens directory; one step at a negligible lr keeps its weights
    job "$T/ji.yaml" "$T/ri" "$T/a.h5" "d_sae: 128" "batch: 600" "steps: 1" "lr: 1e-20" \
        "init: $T/r2/sae/saelens" "median_samples: 2000" "shuffle_buffer: 5000"
    run 2 "$T/ji.yaml" || { cat "$T/last.log"; die "train from sae.init"; }
    "$PY" - "$T" <<'PYEOF' || die "sae.init did not load the SAELens weights"
import sys, h5py, numpy as np
t = sys.argv[1]
a, b = h5py.File(f"{t}/r2/sae/sae.h5"), h5py.File(f"{t}/ri/sae/sae.h5")
for k in ("W_enc", "b_enc", "W_dec", "b_dec"):
    d = np.abs(a[k][...] - b[k][...]).max()
    print(f"sae.init: {k} max abs change {d:.2e}")
    assert d < 1e-5, k
PYEOF
    job "$T/jd.yaml" "$T/rd" "$T/a.h5" "d_sae: 256" "batch: 600" "steps: 1" "init: $T/r2/sae/saelens"
    run 2 "$T/jd.yaml" && die "sae.init with another d_sae accepted"
    grep -q "cfg.json: d_in 32, d_sae 128; this run has d_in 32" "$T/last.log" || { cat "$T/last.log"; die "init mismatch message"; }
    ;;
resume)
    "$PY" "$HERE/make_synth.py" "$T/a.h5" --rows 100000 --d 64 --feats 128 --seed 4 || die synth
    common=("d_sae: 512" "batch: 400" "steps: 240" "lr: 0.01" "l1_coeff: 0.3" "checkpoint_every: 15"
            "log_every: 5" "shuffle_buffer: 20000" "median_samples: 2000" "resample: {at: [150], window: 2, inputs: 4000}")
    job "$T/ja.yaml" "$T/ra" "$T/a.h5" "${common[@]}"
    job "$T/jb.yaml" "$T/rb" "$T/a.h5" "${common[@]}"
    run 2 "$T/ja.yaml" || { cat "$T/last.log"; die "uninterrupted run"; }
    # rank 1 stops itself right after the checkpoint at step 45 (MONOSEM_TEST_HOOK), then kill -9
    MONOSEM_TEST_HOOK="checkpoint:45:1:stop:$T/b1.hook" "$MPIRUN" -n 2 "${MPIFLAGS[@]}" -x MONOSEM_TEST_HOOK \
        "$BIN" train "$T/jb.yaml" > "$T/b1.log" 2>&1 &
    MPID=$!
    RANK_PID=$(hook_wait "$T/b1.hook" $MPID "the checkpoint at step 45") || die "run to kill: $(tail -3 "$T/b1.log")"
    kill -9 "$RANK_PID"
    wait_bounded $MPID 60 "mpirun after the kill of rank 1"; rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || die "killed run: exit $rc (0: finished; 124: mpirun hung)"
    [ -f "$T/rb/sae/sae.h5" ] && die "killed run wrote its final SAE"
    run 2 "$T/jb.yaml" || { cat "$T/last.log"; die "resumed run"; }
    grep -q "resuming from" "$T/last.log" || die "rerun did not resume"
    ls "$T/rb/sae" | grep -q "\.tmp\." && die "temporary files left after the resumed run"
    grep "resuming" "$T/last.log"
    grep -q "step 150: resampled [1-9][0-9]* dead" "$T/last.log" || { grep resampled "$T/last.log"; die "no neuron resampled after the resume"; }
    cmp "$T/ra/sae/saelens/sae_weights.safetensors" "$T/rb/sae/saelens/sae_weights.safetensors" \
        || die "resumed weights differ from the uninterrupted run"
    # the whole final state too (params, Adam moments, counters, rng, reader position)
    "$PY" - "$T" "$HERE" <<'PYEOF' || die "final checkpoint state differs"
import sys, numpy as np
sys.path.insert(0, sys.argv[2])
from check_formats import read_safetensors
a, _ = read_safetensors(f"{sys.argv[1]}/ra/sae/checkpoint.safetensors")
b, _ = read_safetensors(f"{sys.argv[1]}/rb/sae/checkpoint.safetensors")
assert a.keys() == b.keys()
for k in a:
    assert a[k].tobytes() == b[k].tobytes(), k
print("checkpoint tensors identical:", ", ".join(sorted(a)))
PYEOF
    echo "kill -9 + resume: final weights bitwise identical"
    ;;
recovery)
    "$PY" "$HERE/make_synth.py" "$T/a.h5" --rows 200000 --d 64 --feats 256 --seed 1 || die synth
    job "$T/j.yaml" "$T/r" "$T/a.h5" "d_sae: 512" "batch: 1024" "steps: 1000" "lr: 0.01" "l1_coeff: 0.005" \
        "checkpoint_every: 0" "log_every: 100" "shuffle_buffer: 65536" "median_samples: 4096" "repeat: true"
    run 2 "$T/j.yaml" || { cat "$T/last.log"; die "train"; }
    tail -1 "$T/last.log"
    "$PY" "$HERE/check_recovery.py" "$T/r/sae/sae.h5" "$T/a.h5.truth.npy" 0.9 || die "features not recovered"
    ;;
badinput)
    "$PY" "$HERE/make_synth.py" "$T/a.h5" --rows 6000 --d 16 --feats 32 --seed 2 || die synth
    "$PY" "$HERE/make_synth.py" "$T/inc.h5" --rows 6000 --d 16 --feats 32 --incomplete || die synth
    "$PY" "$HERE/make_synth.py" "$T/nan.h5" --rows 6000 --d 16 --feats 32 --nan 1234 --nan 1300 || die synth
    base=("d_sae: 64" "batch: 200" "shuffle_buffer: 2000" "median_samples: 500")
    base=("${base[@]}" "steps: 20" "checkpoint_every: 5")
    job "$T/j1.yaml" "$T/r1" "$T/a.h5" "${base[@]}" "d_in: 32"
    run 2 "$T/j1.yaml" && die "d mismatch accepted"
    grep -q "activations have d = 16 but sae.d_in is 32" "$T/last.log" || { cat "$T/last.log"; die "d mismatch message"; }
    job "$T/j2.yaml" "$T/r2" "$T/inc.h5" "${base[@]}"
    run 2 "$T/j2.yaml" && die "incomplete file accepted"
    grep -q "incomplete activations file (2 of 4 shards done" "$T/last.log" || { cat "$T/last.log"; die "incomplete message"; }
    job "$T/j3.yaml" "$T/r3" "$T/nan.h5" "${base[@]}" "shuffle: false"
    run 2 "$T/j3.yaml" && die "NaN rows accepted"
    grep -q "/acts rows 1234..1234: 1 row" "$T/last.log" || { cat "$T/last.log"; die "NaN message"; }
    job "$T/j4.yaml" "$T/r4" "$T/nan.h5" "${base[@]}" "skip_nonfinite: true" "log_every: 1"
    run 2 "$T/j4.yaml" || { cat "$T/last.log"; die "skip_nonfinite run failed"; }
    grep -q '"skipped": 2' "$T/r4/sae/metrics.jsonl" || die "skipped rows not counted"
    job "$T/j5.yaml" "$T/r5" "$T/a.h5" "${base[@]:0:4}" "lr: 10" "steps: 25" "checkpoint_every: 1"
    run 2 "$T/j5.yaml" && die "divergence not detected"
    grep -q "training diverged at step" "$T/last.log" || { cat "$T/last.log"; die "divergence message"; }
    grep "diverged" "$T/last.log" | head -1
    [ -f "$T/r5/sae/checkpoint.safetensors" ] || die "last checkpoint not kept"
    echo "bad inputs: clear errors, skip counted, divergence detected"
    ;;
archs)
    "$PY" "$HERE/make_synth.py" "$T/a.h5" --rows 24000 --d 32 --feats 64 --seed 6 || die synth
    for arch in topk batchtopk jumprelu april-2024; do
        common=("arch: $arch" "d_sae: 128" "k: 4" "k_aux: 32" "dead_tokens: 1200" "batch: 600" "steps: 24"
                "checkpoint_every: 8" "log_every: 4" "shuffle_buffer: 5000" "median_samples: 2000")
        job "$T/ja.yaml" "$T/$arch-a" "$T/a.h5" "${common[@]}"
        job "$T/jb.yaml" "$T/$arch-b" "$T/a.h5" "${common[@]}"
        run 2 "$T/ja.yaml" || { cat "$T/last.log"; die "$arch"; }
        MONOSEM_TEST_HOOK=checkpoint:16:*:fail run 2 "$T/jb.yaml" && die "$arch: stop hook ignored"
        run 2 "$T/jb.yaml" || { cat "$T/last.log"; die "$arch resumed"; }
        grep -q "resuming from .* at step 16 of 24" "$T/last.log" || die "$arch: did not resume at 16"
        cmp "$T/$arch-a/sae/saelens/sae_weights.safetensors" "$T/$arch-b/sae/saelens/sae_weights.safetensors" \
            || die "$arch: resumed weights differ"
        "$PY" "$HERE/check_formats.py" sae "$T/$arch-a/sae" 32 128 || die "$arch formats"
        want=$(case $arch in topk) echo topk;; april-2024) echo standard;; *) echo jumprelu;; esac)
        grep -Eq "\"architecture\":[[:space:]]*\"$want\"" "$T/$arch-a/sae/saelens/cfg.json" || die "$arch: cfg.json architecture"
        echo "$arch: trained on 2 ranks, resumed bitwise, outputs as documented"
    done
    ;;
memory)
    rss=()
    for rows in 50000 400000; do
        "$PY" "$HERE/make_synth.py" "$T/m$rows.h5" --rows $rows --d 128 --feats 64 || die synth
        job "$T/j$rows.yaml" "$T/r$rows" "$T/m$rows.h5" "d_sae: 256" "batch: 1000" "steps: 40" \
            "checkpoint_every: 0" "log_every: 10" "shuffle_buffer: 20000" "median_samples: 2000" \
            "resample: {at: [20], window: 5, inputs: 30000}"
        /usr/bin/time -f "%M" -o "$T/rss$rows" "$BIN" train "$T/j$rows.yaml" > "$T/last.log" 2>&1 \
            || { cat "$T/last.log"; die "train on $rows rows"; }
        rss+=("$(tail -1 "$T/rss$rows")")
    done
    echo "peak RSS: ${rss[0]} KB with 50k rows, ${rss[1]} KB with 400k rows (float32 data: 25.6 / 204.8 MB)"
    [ $(( rss[1] - rss[0] )) -lt 16000 ] || die "memory grows with the file size"
    ;;
final)
    "$PY" "$HERE/make_synth.py" "$T/a.h5" --rows 24000 --d 32 --feats 64 --seed 6 || die synth
    # a strong L1 leaves features spread from dead to dense; 9600 of the 24000 rows are counted
    for arch in relu-l1 april-2024; do
        l1=0.3; [ $arch = april-2024 ] && l1=3
        job "$T/$arch.yaml" "$T/$arch" "$T/a.h5" "arch: $arch" "d_sae: 128" "batch: 600" "steps: 30" "lr: 0.01" \
            "l1_coeff: $l1" "checkpoint_every: 10" "log_every: 5" "shuffle_buffer: 5000" "median_samples: 2000" \
            "final_density_rows: 10000" "ultralow_density: 1.0e-3" "rare_density: 2.0e-2"
        run 2 "$T/$arch.yaml" || { cat "$T/last.log"; die "$arch: train"; }
        grep -q "the final weights on the first 9600 rows: dead" "$T/last.log" || { cat "$T/last.log"; die "$arch: no final line"; }
        cp "$T/$arch/sae/saelens/sparsity.safetensors" "$T/$arch.sparsity1"
        cp "$T/$arch/run.yaml" "$T/$arch.run1.yaml"
        run 2 "$T/$arch.yaml" || { cat "$T/last.log"; die "$arch: rerun"; }
        grep -q "already complete" "$T/last.log" || die "$arch: the rerun trained"
        cmp -s "$T/$arch.sparsity1" "$T/$arch/sae/saelens/sparsity.safetensors" || die "$arch: a rerun changed the densities"
        for k in final_rows final_dead final_ultralow final_rare; do
            a=$(grep "sae.$k:" "$T/$arch.run1.yaml"); b=$(grep "sae.$k:" "$T/$arch/run.yaml")
            [ -n "$a" ] && [ "$a" = "$b" ] || die "$arch: rerun's $k ('$a' then '$b')"
        done
    done
    "$PY" - "$T" <<'PYEOF' || die "final densities differ from NumPy's count"
import json, struct, sys, h5py, numpy as np
t = sys.argv[1]
def st(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        a, e = v["data_offsets"]
        out[k] = np.frombuffer(b[8 + n + a:8 + n + e], "<f4").reshape(v["shape"])
    return out, h.get("__metadata__", {})
x = h5py.File(f"{t}/a.h5", "r")["acts"][:9600].astype(np.float64)
for arch in ("relu-l1", "april-2024"):
    d = f"{t}/{arch}/sae"
    # SAELens semantics (the export folds april-2024's input scale into the weights): raw x
    w, _ = st(f"{d}/saelens/sae_weights.safetensors")
    s = float(h5py.File(f"{d}/sae.h5", "r").attrs["input_scale"])
    z = (x - w["b_dec"]) @ w["W_enc"].astype(np.float64) + w["b_enc"]
    # a pre-activation within float32 rounding of 0 may fire on either side: counted as either
    amb = np.abs(z) <= 1e-5 * (1 + np.abs(x - w["b_dec"]) @ np.abs(w["W_enc"].astype(np.float64)))
    lo, hi = ((z > 0) & ~amb).sum(0), ((z > 0) | amb).sum(0)
    sp, meta = st(f"{d}/saelens/sparsity.safetensors")
    got = np.rint((10.0 ** sp["sparsity"].astype(np.float64) - 1e-10) * 9600).astype(np.int64)
    h5d = np.rint((10.0 ** h5py.File(f"{d}/sae.h5", "r")["log10_density"][()].astype(np.float64) - 1e-10) * 9600)
    last = [json.loads(l) for l in open(f"{d}/metrics.jsonl")][-1]
    dead_lo, dead_hi = int((hi == 0).sum()), int((lo == 0).sum())
    alive = got > 0
    print(f"{arch}: input_scale {s:.4g}; fires per feature min {got.min()} median {int(np.median(got))} max {got.max()}; "
          f"ambiguous (row, feature) pairs {int(amb.sum())}; final line {dict((k, last[k]) for k in last if k.startswith('final'))}; "
          f"window estimates dead {last['dead']} rare {last['rare']}")
    assert np.all((lo <= got) & (got <= hi)), f"{arch}: fire counts outside NumPy's [{lo}, {hi}]"
    assert np.array_equal(got, h5d), f"{arch}: sae.h5 log10_density differs from sparsity.safetensors"
    assert "final weights on the first 9600 rows" in meta.get("density_source", ""), meta
    assert last["final_rows"] == 9600 and dead_lo <= last["final_dead"] <= dead_hi, last
    assert last["final_dead"] == int((got == 0).sum())
    assert last["final_ultralow"] == int((alive & (got / 9600 < 1e-3)).sum())
    assert last["final_rare"] == int((alive & (got / 9600 < 2e-2)).sum())
    if arch == "relu-l1":  # its strong L1 spreads features from dead to common: the counts mean something
        assert 0 < last["final_dead"] and last["final_rare"] < 128, "the test needs dead, rare and common features"
PYEOF
    ;;
resample)
    "$PY" "$HERE/make_synth.py" "$T/a.h5" --rows 24000 --d 32 --feats 64 --seed 4 || die synth
    # a strong L1 leaves many features firing rarely but not never by step 20
    for rule in dead density; do
        md=0; [ $rule = density ] && md=0.04
        job "$T/$rule.yaml" "$T/$rule" "$T/a.h5" "d_sae: 128" "batch: 600" "steps: 40" "lr: 0.01" "l1_coeff: 0.3" \
            "checkpoint_every: 20" "log_every: 5" "shuffle_buffer: 5000" "median_samples: 2000" \
            "resample: {at: [20], window: 10, inputs: 3000, max_density: $md}"
        # stop right after the step-20 checkpoint: its counters are what the event at step 20 sees
        MONOSEM_TEST_HOOK="checkpoint:20:*:fail" "$MPIRUN" -n 2 "${MPIFLAGS[@]}" -x MONOSEM_TEST_HOOK "$BIN" train "$T/$rule.yaml" \
            > "$T/$rule.stop.log" 2>&1 && die "$rule: the test hook did not stop the run"
        grep -q "stopped after the checkpoint at step 20 (test hook)" "$T/$rule.stop.log" || { cat "$T/$rule.stop.log"; die "$rule: run failed before the hook"; }
        cp "$T/$rule/sae/checkpoint.safetensors" "$T/$rule.ck20.safetensors"
        run 2 "$T/$rule.yaml" || { cat "$T/last.log"; die "$rule: resumed run"; }
        cp "$T/last.log" "$T/$rule.log"
    done
    "$PY" - "$T" <<'PYEOF' || die "resampling counts or revival wrong"
import json, struct, sys, h5py, numpy as np, re
t = sys.argv[1]
def tensors(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        a, e = v["data_offsets"]
        out[k] = np.frombuffer(b[8 + n + a:8 + n + e], {"I64": "<i8", "F32": "<f4"}[v["dtype"]]).reshape(v["shape"])
    return out
def logged(rule):
    m = re.search(r"step 20: resampled (\d+)", open(f"{t}/{rule}.log").read())
    return int(m.group(1)) if m else None
dead = tensors(f"{t}/dead.ck20.safetensors")
want_dead = int((dead["since_fired"] >= 10 * 600).sum())
den = tensors(f"{t}/density.ck20.safetensors")
w = den["resample_window"]; rows = w[-1]
want_den = int((w[:-1] < 0.04 * rows).sum())
print(f"window rows {rows} (10 steps x 600 = 6000); never fired in the window: {want_dead} (dead run), "
      f"{int((w[:-1] == 0).sum())} (density run); below 4% of the window: {want_den}")
print(f"logged: dead rule {logged('dead')}, density rule {logged('density')}")
assert rows == 6000
assert logged("dead") == want_dead and logged("density") == want_den
assert want_den > want_dead + 5, "the density rule must pick rare features the dead rule leaves alone"
lines = [json.loads(l) for l in open(f"{t}/density/sae/metrics.jsonl")]
l25 = [l for l in lines if l["step"] == 25][0]
assert l25["resampled"] == want_den and l25["resampled_total"] == want_den, l25
assert all(l["resampled"] == 0 for l in lines if l["step"] != 25)
# revived: the picked features fire more over steps 20..40 than the same features (the runs are
# identical up to step 20) left alone by the dead rule; fire_count runs from fire_start (0, or
# the step-20 tokens for a resampled feature; sae.dead_tokens exceeds the run)
picked = w[:-1] < 0.04 * rows
def after(rule, ck20):
    fin = tensors(f"{t}/{rule}/sae/checkpoint.safetensors")
    c = fin["fire_count"] - np.where(fin["fire_start"] == 0, ck20["fire_count"], 0)
    return c[picked] / (20 * 600)
a_dead, a_den = after("dead", dead), after("density", den)
print(f"the {picked.sum()} picked features over steps 20..40: mean density {a_dead.mean():.4f} left alone, "
      f"{a_den.mean():.4f} resampled; {int((a_den >= 0.04).sum())} resampled ones at or above 4%")
assert a_den.mean() > a_dead.mean() and (a_den >= 0.04).sum() > (a_dead >= 0.04).sum()
PYEOF
    ;;
repro)
    "$PY" "$HERE/make_synth.py" "$T/a.h5" --rows 12000 --d 512 --feats 1024 --active 8 --seed 7 || die synth
    relu=("d_sae: 2048" "batch: 512" "steps: 20" "lr: 0.003" "l1_coeff: 0.005" "checkpoint_every: 10"
          "log_every: 5" "shuffle_buffer: 4096" "median_samples: 1024" "repeat: true" "reproducible: true"
          "final_density_rows: 4096" "resample: {at: [15], window: 5, inputs: 2048, max_density: 0.02}")
    topk=("arch: topk" "d_sae: 512" "k: 32" "k_aux: 64" "dead_tokens: 2048" "batch: 512" "steps: 12" "lr: 0.001"
          "checkpoint_every: 4" "log_every: 2" "shuffle_buffer: 4096" "median_samples: 1024" "repeat: true"
          "reproducible: true" "final_density_rows: 4096")
    for arch in relu topk; do
        declare -n keys=$arch
        # one job file and one out_dir for every rank count (the config hash covers out_dir); each
        # run's outputs are moved aside. --bind-to none: 1 rank would run 2 BLAS threads, 2+ ranks 1
        job "$T/$arch.yaml" "$T/out" "$T/a.h5" "${keys[@]}"
        for np in 1 2 3 4; do
            rm -rf "$T/out"
            "$MPIRUN" -n $np "${MPIFLAGS[@]}" --bind-to none "$BIN" train "$T/$arch.yaml" > "$T/last.log" 2>&1 \
                || { cat "$T/last.log"; die "$arch on $np ranks"; }
            grep -q "reproducible: 8 micro-shards of 64 rows" "$T/last.log" || die "$arch: not in reproducible mode"
            mv "$T/out" "$T/$arch$np"
        done
        [ $arch = relu ] && { grep -q "step 15: resampled [1-9]" "$T/last.log" || { grep resampled "$T/last.log"; die "nothing resampled"; }; }
        "$PY" "$HERE/compare_repro.py" "$T/${arch}1/sae" "$T/${arch}2/sae" "$T/${arch}3/sae" "$T/${arch}4/sae" \
            || die "$arch: 1, 2, 3, 4 ranks not bitwise identical"
    done
    # the key's checks: a divisor of the batch (file:line:col), at least one shard per rank
    job "$T/bad.yaml" "$T/bad" "$T/a.h5" "batch: 512" "reproducible: true" "micro_shards: 3"
    run 1 "$T/bad.yaml" && die "micro_shards 3 of batch 512 accepted"
    grep -Eq "bad.yaml:[0-9]+:[0-9]+: key 'sae.micro_shards': expected a divisor of sae.batch \(512\)" "$T/last.log" \
        || { cat "$T/last.log"; die "micro_shards error message"; }
    job "$T/few.yaml" "$T/few" "$T/a.h5" "d_sae: 512" "batch: 512" "steps: 1" "reproducible: true" "micro_shards: 2" \
        "median_samples: 1024" "shuffle_buffer: 4096"
    run 3 "$T/few.yaml" && die "2 micro-shards on 3 ranks accepted"
    grep -q "sae.micro_shards 2 is smaller than the 3 ranks" "$T/last.log" || { cat "$T/last.log"; die "few shards message"; }
    ;;
*) die "unknown case $CASE" ;;
esac
echo "PASS: $CASE"
