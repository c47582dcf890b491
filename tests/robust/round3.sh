#!/bin/bash
# Reliability round 3 (issue 23, label fault). Every run is bounded by `timeout`, so a hang
# fails instead of stalling the suite. round3.sh CASE:
#   skip      `monosem run` checks a finished unit's outputs before skipping it: a truncated or
#             edited activations.h5, sae.h5, SAELens weights, eval.json or analysis.h5 is redone
#             (and says why), and the rerun after that skips everything again
#   validate  a saes: entry valid key by key but not as a whole is refused before any stage
#             starts (config and run), naming the entry's file:line:col
#   bounds    keys that scale work or memory beyond what the job can use are refused up front
#   garbage   NaN SAE weights behind valid checksums; top token ids outside the vocabulary
#   signals   SIGTERM/SIGUSR1 stop eval, compare and run: exit 75, no partial output, rerun completes
#   diskfull  every stage's writes onto a full tmpfs: one line, non-zero, no crash, no .tmp left
set -u
CASE=$1
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../cluster/fixture.sh"
. "$HERE/../hook.sh"
PY=${MS_PYTHON:-/usr/bin/python3}
BIN=${MS_BIN:?}/monosem
MPIRUN=${MS_MPIRUN:-mpirun}
read -r -a MPIFLAGS <<< "${MS_MPI_FLAGS:-}"
T=${MS_TEST_TMP:-/tmp}/round3_$CASE
mountpoint -q "$T/full" 2>/dev/null && umount -l "$T/full" # left by a killed run
rm -rf "$T" && mkdir -p "$T"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
. "$HERE/lib.sh"
J=$T/job/job.yaml
tiny() { make_tiny_job "$T/job" || { echo "FAIL: fixture"; exit 1; }; }
# units LOG: the units a run did not skip, one per line
units() { grep '^== ' "$1" | grep -v ': skipped' | sed 's/^== //'; }

case $CASE in
skip)
    tiny
    ms 300 2 run "$J" || { cat "$T/last.log"; bad "first run"; exit 1; }
    ms 300 2 run "$J" || bad "second run"
    [ -z "$(units "$T/last.log")" ] && ok "a rerun of a finished job skips every unit" || bad "rerun redid: $(units "$T/last.log")"
    # (file, unit it belongs to, how it is damaged)
    for c in "acts.h5 generate truncate" "sae/sae.h5 train truncate" "sae/sae.h5 train edit" \
             "sae/saelens/sae_weights.safetensors train truncate" "sae/eval.json eval truncate" \
             "sae/analysis.h5 analyze edit" "model/model.safetensors train-model truncate"; do
        set -- $c; f=$T/job/$1 unit=$2 how=$3
        cp "$f" "$T/before"
        if [ "$how" = truncate ]; then truncate -s 1000 "$f"
        else printf 'X' | dd of="$f" bs=1 seek=$(( $(stat -c %s "$f") / 2 )) conv=notrunc 2>/dev/null; fi
        ms 300 2 run "$J"; rc=$?
        redone=$(units "$T/last.log")
        if [ $rc -eq 0 ] && [ "$(echo "$redone" | head -1 | cut -d' ' -f1 | tr -d :)" = "$unit" ] &&
           echo "$redone" | head -1 | grep -qF "redone: its output $f "; then
            ok "$how $1: $(echo "$redone" | head -1)"
        else bad "$how $1: exit $rc, want '$unit' redone naming $f first; got: ${redone:-nothing redone}"; fi
        case $1 in # eval.json holds timings; HDF5 files their creation times: compared by content
        *.json) "$PY" -c "import json,sys; json.load(open(sys.argv[1]))" "$f" || bad "$1 was not remade whole" ;;
        *.h5) "$PY" - "$f" "$T/before" <<'PYEOF' || bad "$1 remade differently from the first run" ;;
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
def walk(g, out, p=""):
    for k, v in g.items():
        if isinstance(v, h5py.Group): walk(v, out, p + k + "/")
        else: out[p + k] = v[...]
x, y = {}, {}
walk(a, x); walk(b, y)
assert x.keys() == y.keys()
for k in x: assert np.array_equal(x[k], y[k]), k
PYEOF
        *) cmp -s "$f" "$T/before" || bad "$1 remade differently from the first run" ;;
        esac
        ms 300 2 run "$J" || bad "run after redoing $1"
        [ -z "$(units "$T/last.log")" ] && ok "and the next run skips everything" || bad "after $1 the next run redid: $(units "$T/last.log")"
    done
    ;; # (an edit that keeps both size and mtime of a file over 256 MiB is not re-read: docs/formats.md)
validate)
    tiny
    # topk d_sae 128 with the default k_aux 256: each key is valid, the entry is not
    sed -i 's#^sae: {#saes: [{name: S0}, {name: TK, arch: topk, k: 4, d_sae: 128}]\nsae: {#' "$J"
    line=$(grep -n '^saes:' "$J" | cut -d: -f1)
    expect_fail "config with a bad saes entry" "job.yaml:$line:20: saes entry 'TK': sae.k_aux: expected 0..d_sae (128), got 256" 60 1 config "$J"
    expect_fail "run with a bad saes entry" "saes entry 'TK': sae.k_aux" 120 2 run "$J"
    [ -e "$T/job/tokens" ] || [ -e "$T/job/run/stages" ] && bad "run started stages before refusing the entry: $(ls "$T/job" "$T/job/run" 2>&1 | tr '\n' ' ')"
    ok "nothing was made before the refusal"
    expect_fail "train with a bad saes entry" "saes entry 'TK': sae.k_aux" 60 1 train "$J" --only S0 ;;
garbage)
    tiny
    ms 300 2 run "$J" || { cat "$T/last.log"; bad "first run"; exit 1; }
    w=$T/job/sae/saelens/sae_weights.safetensors
    cp "$w" "$T/w.good"
    # NaN in W_enc with the data checksum re-signed: a diverged run's file, not flipped bits
    "$PY" - "$w" <<'PYEOF' || exit 1
import hashlib, json, struct, sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
off = 8 + n + h["W_enc"]["data_offsets"][0] + 4 * 5
b[off:off + 4] = struct.pack("<f", float("nan"))
old = h.get("__metadata__", {}).get("data_sha256")
if old:
    b[8:8 + n] = bytes(b[8:8 + n]).replace(old.encode(), hashlib.sha256(bytes(b[8 + n:])).hexdigest().encode())
open(p, "wb").write(b)
PYEOF
    for st in analyze eval; do # compare opens SAEs the same way (one SAE here: nothing to compare)
        expect_fail "$st over NaN SAE weights" "$w: tensor W_enc: element 5 is nan: expected finite weights" 120 2 $st "$J"
    done
    cp "$T/w.good" "$w"
    a=$T/job/sae/analysis.h5
    cp "$a" "$T/a.good"
    for ds in logit_top_ids top_tokens top_token; do
        cp "$T/a.good" "$a"
        "$PY" -c "
import h5py, sys
f = h5py.File(sys.argv[1], 'r+'); d = f[sys.argv[2]]
d[(3,) + (0,) * (d.ndim - 1)] = 50257 if sys.argv[2] != 'top_tokens' else -7
" "$a" $ds
        want=$([ $ds = top_tokens ] && echo "token id -7" || echo "token id 50257")
        expect_fail "report with $ds out of range" "$a: dataset $ds: unit 3 holds $want, outside the vocabulary" 60 1 report "$J"
    done
    [ -n "$(ls "$T/job/run" | grep 'report.tmp')" ] && bad "report left its temporary directory"
    cp "$T/a.good" "$a"
    ms 60 1 report "$J" && ok "the intact files still report" || bad "report on intact files: $(tail -2 "$T/last.log")" ;;
bounds)
    tiny
    # two sizes (a splitting pair for compare); the larger makes a tiny block_mb need many passes
    sed -i 's#^sae: {#saes: [{name: S0, d_sae: 32}, {name: S1, d_sae: 256}]\nsae: {#' "$J"
    ms 300 2 run "$J" || { cat "$T/last.log"; bad "first run"; exit 1; }
    # each refusal comes up front: a 30 s bound (the runs these keys asked for took minutes)
    expect_fail "analyze.top_k beyond the tokens analysed" "key 'analyze.top_k': 100000 top examples per unit, but analyze reads" \
        30 2 analyze "$J" --analyze.top_k=100000
    expect_fail "analyze.context_window beyond a context" "key 'analyze.context_window': 4096 tokens each side, but a context holds corpus.context 16 tokens: expected at most 15" \
        30 2 analyze "$J" --analyze.context_window=4096
    expect_fail "compare.block_mb tiny" "key 'compare.block_mb': 0.001 MiB makes" 30 2 compare "$J" --compare.block_mb=0.001
    ms 120 2 compare "$J" --compare.block_mb=0.05 && grep -q "pass(es)" "$T/last.log" \
        && ok "compare at the block size it suggests ($(grep -o '[0-9]* pass(es)' "$T/last.log"))" || bad "compare at block_mb 0.05: $(tail -2 "$T/last.log")"
    ms 120 2 analyze "$J" --analyze.top_k=50 --analyze.context_window=15 --analyze.out_dir="$T/az" \
        && ok "analyze at the bounds (top_k 50, context_window 15)" || bad "analyze at the bounds: $(tail -2 "$T/last.log")" ;;
diskfull)
    MNT=$T/full
    mkdir -p "$MNT"
    trap 'mountpoint -q "$MNT" && umount -l "$MNT"' EXIT
    if ! mount -t tmpfs -o size=8m tmpfs "$MNT" 2>"$T/mount.err"; then
        echo "SKIP: cannot mount a tmpfs here ($(cat "$T/mount.err")); the full-disk cases need root and mount"; exit 0
    fi
    tiny
    ms 300 2 run "$J" || { cat "$T/last.log"; bad "first run"; exit 1; }
    # (stage, its outputs redirected into the full file system); eval writes beside the SAE,
    # compare and report under run.out_dir: those read copies placed there before filling
    for c in "tokenize --corpus.token_dir=$MNT/tokens" \
             "train-model --model.dir=$MNT/model --train_model.dir=$MNT/tm" \
             "generate --generate.out=$MNT/acts.h5" "train --sae.out_dir=$MNT/sae" \
             "eval --sae.out_dir=$MNT/sae" "analyze --analyze.out_dir=$MNT/az" \
             "compare --run.out_dir=$MNT/run" "report --run.out_dir=$MNT/run"; do
        set -- $c; st=$1; shift
        for left in 0 6; do # KiB left: the first write fails, or one after a few succeeded
            find "$MNT" -mindepth 1 -delete
            case $st in eval) cp -r "$T/job/sae" "$MNT/sae"; rm -f "$MNT"/sae/eval* "$MNT"/sae/checkpoint* ;;
                        compare|report) mkdir -p "$MNT/run"; cp -r "$T/job/run/neurons" "$MNT/run/" ;; esac
            mountpoint -q "$MNT" || { bad "$MNT is no longer a tmpfs"; exit 1; } # never fill the real disk
            fallocate -l $(( $(stat -f -c '%a*%S' "$MNT") - left * 1024 )) "$MNT/filler" 2>/dev/null
            ms 120 2 $st "$J" "$@"; rc=$?
            tmps=$(find "$MNT" -name '*.tmp*')
            # the failed write's own error, or generate's up-front space check naming what it needs
            n=$(grep -c "No space left on device\|but its file system has .* MB free" "$T/last.log")
            if [ $rc -eq 124 ] || [ $rc -ge 128 ] || grep -q "Signal: Segmentation\|Signal: Abort" "$T/last.log"; then
                bad "$st, $left KiB left: exit $rc (crash or hang): $(grep -v '^ ' "$T/last.log" | tail -3)"
            elif [ -n "$tmps" ]; then bad "$st, $left KiB left: temporary files left: $tmps"
            elif [ $rc -ne 0 ] && [ "$n" -lt 1 ]; then bad "$st, $left KiB left: exit $rc without saying the disk is full: $(tail -3 "$T/last.log")"
            elif [ $rc -ne 0 ]; then ok "$st, $left KiB left: exit $rc: $(grep -m1 'No space left on device\|MB free' "$T/last.log")"
            else ok "$st, $left KiB left: its outputs fit (exit 0)"; fi
        done
    done
    # the disk fills after generate's space check, before the 2-rank store exists (it hung):
    # rank 0 held at the point it reports (hook "create"), both ranks stopped, the disk filled
    find "$MNT" -mindepth 1 -delete
    rep=$T/create.hook
    MONOSEM_TEST_HOOK="create:1:0:stop:$rep" timeout 120 "$MPIRUN" -n 2 "${MPIFLAGS[@]}" -x MONOSEM_TEST_HOOK \
        "$BIN" generate "$J" --generate.out="$MNT/acts.h5" > "$T/create.log" 2>&1 &
    mp=$!
    if hook_wait "$rep" "$mp" "generate's create point on rank 0" 60 > /dev/null; then
        mapfile -t pids < <(pgrep -P "$mp" -f "monosem generate")
        kill -STOP "${pids[@]}"
        mountpoint -q "$MNT" && fallocate -l $(( $(stat -f -c '%a*%S' "$MNT") )) "$MNT/filler"
        rm -f "$rep"; kill -CONT "${pids[@]}"
        wait_bounded "$mp" 100 "generate creating its store on a full disk" > /dev/null; rc=$?
        n=$(grep -c "acts.h5.partial: cannot reserve the .* MB the activations store needs: No space left on device" "$T/create.log")
        if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $rc -lt 128 ] && [ "$n" -eq 1 ] && [ -z "$(find "$MNT" -name '*.tmp*')" ]; then
            ok "disk full between the check and the create on 2 ranks: exit $rc, $(grep 'cannot reserve' "$T/create.log")"
        else bad "disk full at generate's create: exit $rc (124 = hang), message seen $n times, left: $(ls "$MNT"); $(tail -3 "$T/create.log")"; fi
        rm -f "$MNT/filler"
        ms 120 2 generate "$J" --generate.out="$MNT/acts.h5" && [ -f "$MNT/acts.h5" ] \
            && ok "and generate completes once space is freed" || bad "generate after freeing space: $(tail -2 "$T/last.log")"
    else bad "generate never reached its create point: $(tail -3 "$T/create.log")"; wait "$mp"; fi ;;
*) echo "unknown case $CASE"; exit 2 ;;
esac
[ "$fails" -eq 0 ] && echo "round3 $CASE: all checks passed"
exit $((fails > 0))
