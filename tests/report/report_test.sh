#!/bin/bash
# Tests of `monosem report` on a synthetic run (make_fixture.py: analysis files as
# docs/analysis.md lays them out, an SAE decoder, eval.json).
#   report_test.sh data     2 ranks write what 1 rank writes; every data file equals its source
#                           (check_data.py, NumPy); a rerun replaces the report whole
#   report_test.sh errors   missing analysis / broken eval.json: exit 1 on every rank, one message,
#                           no report left behind; missing eval.json, neurons or top_token
#                           column: a report anyway
#   report_test.sh browser  headless Chromium over WebDriver (browser_test.py) on a report of the
#                           real pipeline at toy scale (make_corpus.py → … → analyze) when analyze
#                           is built, else of the h5py fixture; screenshots in
#                           $MS_TEST_TMP/report_browser/shots
set -u
CASE=$1
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${MS_PYTHON:-/usr/bin/python3}
BIN=${MS_BIN:?}/monosem
MPIRUN=${MS_MPIRUN:-mpirun}
read -r -a MPIFLAGS <<< "${MS_MPI_FLAGS:-}"
T=${MS_TEST_TMP:-/tmp}/report_$CASE
rm -rf "$T" && mkdir -p "$T"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

die() { echo "FAIL: $*"; exit 1; }
report() { # report NP RUN_DIR: output in $T/last.log
    "$MPIRUN" -n "$1" "${MPIFLAGS[@]}" "$BIN" report "$2/job.yaml" > "$T/last.log" 2>&1
}

case $CASE in
data)
    "$PY" "$HERE/make_fixture.py" "$T/run" || die fixture
    report 1 "$T/run" || { cat "$T/last.log"; die "report on 1 rank"; }
    cp -r "$T/run/report" "$T/report1"
    report 2 "$T/run" || { cat "$T/last.log"; die "report on 2 ranks"; }
    cat "$T/last.log"
    diff -r "$T/report1" "$T/run/report" > /dev/null || die "2 ranks wrote another report than 1 rank"
    ls "$T/run" | grep -q "^report\.\(tmp\|old\)" && die "temporary report directories left behind"
    grep -q "report.units: 248" "$T/run/run-report.yaml" || die "run record lacks report.units"
    "$PY" "$HERE/check_data.py" "$T/run" || die "data files"
    ;;
errors)
    "$PY" "$HERE/make_fixture.py" "$T/run" --units 70 --neurons 16 || die fixture
    mv "$T/run/sae/analysis.h5" "$T/analysis.h5"
    report 2 "$T/run" && die "a report without the SAE's analysis file"
    [ "$(grep -c 'no analysis file' "$T/last.log")" = 1 ] || { cat "$T/last.log"; die "expected one 'no analysis file' message"; }
    [ -e "$T/run/report" ] && die "a failed run left a report"
    mv "$T/analysis.h5" "$T/run/sae/analysis.h5"
    echo '{"loss_recovered": 0.8,' > "$T/run/sae/eval.json"
    report 2 "$T/run" && die "a report from a broken eval.json"
    grep -q "eval.json: not valid JSON" "$T/last.log" || { cat "$T/last.log"; die "expected 'not valid JSON'"; }
    ls "$T/run" | grep -q "^report\." && die "a failed run left its temporary directory"
    rm "$T/run/sae/eval.json"
    rm -r "$T/run/neurons"
    report 2 "$T/run" || { cat "$T/last.log"; die "report without eval.json and neurons"; }
    grep -q "features only" "$T/last.log" || die "no note that the neurons are missing"
    grep -q '"eval":null' "$T/run/report/data/run.js" || die "run.js should carry eval null"
    grep -q '"nearest":{}' "$T/run/report/data/sae/block-00000.js" || die "one dictionary: no nearest lists expected"
    # without a top_token column the list's token is the centre of the first top context
    "$PY" -c "import h5py; del h5py.File('$T/run/sae/analysis.h5', 'a')['top_token']" || die "h5py edit"
    report 2 "$T/run" || { cat "$T/last.log"; die "report without top_token"; }
    "$PY" - "$T/run" <<'EOP' || die "top token fallback"
import json, sys, h5py, numpy as np
run = sys.argv[1]
t = open(run + "/report/data/sae/units.js").read()
cols = json.loads("[" + t[len("msReport.units("):-3] + "]")[1]
tt = h5py.File(run + "/sae/analysis.h5")["top_tokens"][:]
want = tt[:, 0, (tt.shape[2] - 1) // 2]
assert "top_token" not in cols and cols["_top_token"] == want.tolist(), "fallback top token"
EOP
    echo '{"oops": 1}' > "$T/run/sae/analysis.h5"
    report 1 "$T/run" && die "a report from a file that is not HDF5"
    grep -q "cannot open as HDF5" "$T/last.log" || { cat "$T/last.log"; die "expected 'cannot open as HDF5'"; }
    [ -e "$T/run/report/index.html" ] || die "the failed rerun removed the previous report"
    ;;
browser)
    "$HERE/../../scripts/install-deps" --browser > "$T/install.log" 2>&1 || { tail "$T/install.log"; die "install-deps --browser"; }
    help=$("$BIN" --help)
    if grep -q "^  analyze .*\[not built yet\]" <<<"$help"; then
        # analyze not in this build: analysis files written with h5py in its documented layout
        echo "analyze is not built: report from the h5py fixture (make_fixture.py)"
        "$PY" "$HERE/make_fixture.py" "$T/run" || die fixture
        export MS_REPORT_SEARCH=whale
    else
        # the real pipeline at toy scale: every built stage up to analyze on a synthetic corpus
        "$PY" "$HERE/make_corpus.py" "$T/corpus" || die corpus
        mkdir -p "$T/run"
        cat > "$T/run/job.yaml" <<EOT
run: {name: report-pipeline, out_dir: $T/run, seed: 3, log_every_s: 5}
corpus: {format: text, paths: [$T/corpus/corpus.txt], delimiter: "<|doc|>", context: 32, heldout_fraction: 0.1}
tokenizer: {vocab: $T/run/tok/vocab.json, merges: $T/run/tok/merges.txt, train_merges: 150}
model: {n_layers: 1, d_model: 32, d_mlp: 64, n_heads: 2, d_head: 16, n_ctx: 32, act_fn: relu}
train_model: {steps: 80, batch: 16, lr: 3.0e-3, warmup_steps: 5, checkpoint_every: 80, eval_every: 80, eval_batches: 2}
generate: {sample_per_context: 8, dtype: float32}
sae: {d_sae: 128, batch: 256, steps: 200, lr: 2.0e-3, l1_coeff: 1.0e-3, checkpoint_every: 200, log_every: 100, repeat: true}
eval: {tokens: 1500}
analyze: {tokens: 4000, top_k: 8, context_window: 4}
EOT
        for s in tokenizer-train tokenize train-model generate train eval analyze; do
            grep -q "^  $s .*\[not built yet\]" <<<"$help" && { echo "($s not built: skipped)"; continue; }
            "$MPIRUN" -n 2 "${MPIFLAGS[@]}" "$BIN" "$s" "$T/run/job.yaml" > "$T/$s.log" 2>&1 || { tail "$T/$s.log"; die "$s"; }
            echo "$s: ok"
        done
    fi
    report 2 "$T/run" || { cat "$T/last.log"; die report; }
    cat "$T/last.log"
    timeout 150 "$PY" "$HERE/browser_test.py" "$T/run/report" "$T/shots" || die "browser checks"
    ;;
*) die "unknown case $CASE" ;;
esac
echo "ok: $CASE"
