#!/bin/bash
# Fault and bad-input tests of issue 10 (label fault): every case is bounded by `timeout`, so a
# hang fails the test instead of stalling the suite. robust.sh CASE:
#   hangs      train-model checkpoint with step -5 / "abc", SAE checkpoint with corrupt state,
#              all-NaN activations with sae.skip_nonfinite, a job file of 100k nested maps
#   refuse     empty corpus / only empty documents / the one document held out, empty
#              merges.txt, empty job file (config still runs on defaults)
#   resume     harmless changes resume bitwise (log/checkpoint cadence, moved out_dir, another
#              path to the same activations); result keys refused with their names
#   outputs    read-only file system: one line naming it (no HDF5 stack, not "out of space"); a
#              full disk while checkpointing;
#              a rerun of a finished train keeps its numbers; generate checks the model before
#              the token directory; tokenize removes the stale shards of an earlier run
set -u
CASE=$1
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${MS_PYTHON:-/usr/bin/python3}
BIN=${MS_BIN:?}/monosem
MPIRUN=${MS_MPIRUN:-mpirun}
read -r -a MPIFLAGS <<< "${MS_MPI_FLAGS:-}"
T=${MS_TEST_TMP:-/tmp}/robust_$CASE
for m in "$T/ro" "$T/full"; do mountpoint -q "$m" 2>/dev/null && umount "$m"; done # left by a killed run
rm -rf "$T" && mkdir -p "$T"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
. "$HERE/lib.sh"

# ---- fixtures
corpus() { # corpus FILE NDOCS: pseudo-prose documents separated by <|doc|>
    "$PY" - "$1" "$2" <<'EOF'
import random, sys
r = random.Random(3)
w = 'the whale sea ship captain ahab white line boat harpoon crew deck storm wind'.split()
n = int(sys.argv[2])
open(sys.argv[1], 'w').write('<|doc|>\n'.join(' '.join(r.choice(w) for _ in range(r.randint(40, 120))) + '\n'
                                              for _ in range(n)))
EOF
}
model_job() { # model_job FILE OUT: tokenize + train-model job on $T/corpus.txt
    cat > "$1" <<EOF
run: {name: f, out_dir: $2, seed: 11}
corpus: {format: text, paths: [$T/corpus.txt], delimiter: "<|doc|>", context: 16, heldout_fraction: 0.1,
         shard_tokens: 4096, token_dir: $T/tokens}
tokenizer: {vocab: $T/tok/vocab.json, merges: $T/tok/merges.txt}
model: {d_model: 16, d_mlp: 32, n_heads: 2, d_head: 8, n_ctx: 16}
train_model: {steps: 30, batch: 8, lr: 5.0e-3, warmup_steps: 5, checkpoint_every: 10, eval_every: 15,
              eval_batches: 2, log_every: 5}
generate: {sample_per_context: 8}
EOF
}
model_fixture() {
    corpus "$T/corpus.txt" 60
    "$PY" "$HERE/../train_model/make_tokenizer.py" "$T/tok" "$T/corpus.txt" 40 > /dev/null || { echo "FAIL: tokenizer"; exit 1; }
    model_job "$T/job.yaml" "$T/run"
    ms 120 2 tokenize "$T/job.yaml" || { cat "$T/last.log"; echo "FAIL: tokenize"; exit 1; }
}
sae_job() { # sae_job FILE OUT_DIR ACTS [extra sae keys...]
    local f=$1 out=$2 acts=$3; shift 3
    { echo "run: {name: s, out_dir: $out, seed: 5}"
      echo "sae:"
      echo "  activations: $acts"
      printf '  %s\n' "d_sae: 64" "batch: 200" "steps: 24" "lr: 0.01" "l1_coeff: 0.3" "checkpoint_every: 8" \
          "log_every: 4" "shuffle_buffer: 2000" "median_samples: 500" "$@"; } > "$f"
}
# set_meta FILE KEY VALUE: rewrite one __metadata__ entry of a safetensors file
set_meta() {
    "$PY" - "$@" <<'EOF'
import json, struct, sys
p, k, v = sys.argv[1:4]
b = open(p, 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n]); h['__metadata__'][k] = v
t = json.dumps(h).encode(); t += b' ' * (-(8 + len(t)) % 8)
open(p, 'wb').write(struct.pack('<Q', len(t)) + t + b[8 + n:])
EOF
}
# set_i64 FILE TENSOR INDEX VALUE: overwrite one element of an I64 tensor in place
set_i64() {
    "$PY" - "$@" <<'EOF'
import hashlib, json, struct, sys
p, name, i, v = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
b = bytearray(open(p, 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
off = 8 + n + json.loads(b[8:8 + n])[name]['data_offsets'][0] + 8 * i
b[off:off + 8] = struct.pack('<q', v)
# re-sign the data checksum (a file written with bad values by a buggy or hostile writer, not
# flipped bits): what is tested here is the range check behind the checksum
old = json.loads(b[8:8 + n]).get('__metadata__', {}).get('data_sha256')
if old:
    new = hashlib.sha256(bytes(b[8 + n:])).hexdigest()
    b[8:8 + n] = bytes(b[8:8 + n]).replace(old.encode(), new.encode())
open(p, 'wb').write(b)
EOF
}

case $CASE in
hangs)
    # -- train-model: a checkpoint whose step is negative (spun forever) or not a number (became 0)
    model_fixture
    MONOSEM_TEST_HOOK=checkpoint:20:0:kill ms 120 2 train-model "$T/job.yaml"
    ck=$T/run/train_model/checkpoint.safetensors
    [ -f "$ck" ] || { cat "$T/last.log"; bad "no train-model checkpoint"; }
    cp "$ck" "$T/good.ckpt"
    for v in -5 abc 12x ""; do
        cp "$T/good.ckpt" "$ck"; set_meta "$ck" step "$v"
        expect_fail "train-model checkpoint step '$v'" "corrupt checkpoint state (step \"$v\"" 60 2 train-model "$T/job.yaml"
    done
    cp "$T/good.ckpt" "$ck"; set_meta "$ck" data_position 7
    expect_fail "train-model data_position not step x batch" "corrupt checkpoint state: data_position 7 at step 20" \
        60 2 train-model "$T/job.yaml"
    cp "$T/good.ckpt" "$ck"
    ms 120 2 train-model "$T/job.yaml" && grep -q "resuming from .* at step 20" "$T/last.log" \
        && ok "the intact checkpoint still resumes" || bad "intact checkpoint: $(tail -2 "$T/last.log")"

    # -- SAE: state values out of range in the checkpoint's "state" tensor
    "$PY" "$HERE/../sae_train/make_synth.py" "$T/a.h5" --rows 12000 --d 16 --feats 32 --seed 2 || exit 1
    sae_job "$T/s.yaml" "$T/srun" "$T/a.h5"
    MONOSEM_TEST_HOOK=checkpoint:8:*:fail ms 120 2 train "$T/s.yaml"
    sk=$T/srun/sae/checkpoint.safetensors
    cp "$sk" "$T/sgood.ckpt"
    # (index, value, what): step, epoch, reader position, threshold flag, tokens
    for c in "1 -3 step" "4 -1 reader epoch/window" "7 -200 reader position" "9 7 threshold flag" "10 999999999 tokens"; do
        set -- $c; idx=$1 val=$2; shift 2
        cp "$T/sgood.ckpt" "$sk"; set_i64 "$sk" state "$idx" "$val"
        expect_fail "SAE checkpoint state[$idx] = $val" "corrupt checkpoint: $* out of range" 60 2 train "$T/s.yaml"
    done
    cp "$T/sgood.ckpt" "$sk"; set_i64 "$sk" fire_count 3 -1
    expect_fail "SAE checkpoint firing counter < 0" "corrupt checkpoint: firing counters out of range" 60 2 train "$T/s.yaml"
    cp "$T/sgood.ckpt" "$sk"
    ms 120 2 train "$T/s.yaml" && grep -q "resuming from .* at step 8 of 24" "$T/last.log" \
        && ok "the intact SAE checkpoint still resumes" || bad "intact SAE checkpoint: $(tail -2 "$T/last.log")"

    # -- every row NaN, skipped: a full pass without a finite row is an error (re-read forever)
    "$PY" - "$T/a.h5" "$T/nan.h5" <<'EOF'
import shutil, sys, h5py, numpy as np
shutil.copy(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], 'r+') as f:
    f['acts'][...] = np.full(f['acts'].shape, np.nan, f['acts'].dtype)
EOF
    for rep in false true; do
        sae_job "$T/n.yaml" "$T/nrun-$rep" "$T/nan.h5" "skip_nonfinite: true" "repeat: $rep"
        expect_fail "all-NaN rows, skip_nonfinite, repeat $rep" "no finite row in a full pass over /acts (12000 rows" \
            60 2 train "$T/n.yaml"
    done

    # -- 100k nested maps: refused at once with the place (took 37 s)
    "$PY" -c "n=100000; open('$T/deep.yaml','w').write('{a: '*n + '1' + '}'*n + '\n')"
    s0=$(date +%s.%N)
    expect_fail "100k nested maps" "$T/deep.yaml:1:129: nesting deeper than 32 levels" 20 2 config "$T/deep.yaml"
    secs=$(echo "$(date +%s.%N) - $s0" | bc)
    echo "  refused in ${secs}s"
    [ "$(echo "$secs < 10" | bc)" = 1 ] || bad "deep YAML took ${secs}s"
    "$PY" -c "open('$T/deep2.yaml','w').write(''.join(' '*i + 'k%d:\n' % i for i in range(40)) + ' '*40 + 'x: 1\n')"
    expect_fail "40 nested block maps" "$T/deep2.yaml:33:33: nesting deeper than 32 levels" 20 1 config "$T/deep2.yaml"
    ;;

refuse)
    corpus "$T/corpus.txt" 20
    "$PY" "$HERE/../train_model/make_tokenizer.py" "$T/tok" "$T/corpus.txt" 40 > /dev/null || exit 1
    tj() { # tj FILE PATHS [extra corpus keys]: a tokenize job
        cat > "$1" <<EOF
run: {name: r, out_dir: $T/run, seed: ${4:-1}}
corpus: {format: text, paths: [$2], delimiter: "<|doc|>", token_dir: $T/tok_$(basename "$1" .yaml)${3:+, $3}}
tokenizer: {vocab: $T/tok/vocab.json, merges: ${MERGES:-$T/tok/merges.txt}}
EOF
    }
    : > "$T/empty.txt"
    tj "$T/e.yaml" "$T/empty.txt"
    expect_fail "empty corpus" "tokenize: corpus.paths (1 file(s), first $T/empty.txt) hold no document with text" 60 2 tokenize "$T/e.yaml"
    [ -f "$T/tok_e/manifest.json" ] && bad "empty corpus: a manifest was written"
    printf '\n<|doc|>\n\n<|doc|>\n' > "$T/blank.txt"
    tj "$T/b.yaml" "$T/blank.txt" "heldout_fraction: 0"
    expect_fail "only empty documents" "first $T/blank.txt) hold no document with text: the train split would be empty" \
        60 2 tokenize "$T/b.yaml"
    corpus "$T/one.txt" 1
    # one document, half held out: over seeds it lands in either split; held out = an error
    held=0 trained=0
    for seed in 1 2 3 4 5 6 7 8; do
        tj "$T/o$seed.yaml" "$T/one.txt" "heldout_fraction: 0.5" "$seed"
        if ms 60 2 tokenize "$T/o$seed.yaml"; then trained=$((trained + 1))
        elif grep -q "all 1 document(s) were drawn into the held-out split (corpus.heldout_fraction 0.5): the train split is empty" "$T/last.log"
        then held=$((held + 1))
        else bad "one document, seed $seed: $(tail -2 "$T/last.log")"; fi
    done
    [ $held -gt 0 ] && [ $trained -gt 0 ] && ok "one document: held out = refused ($held seeds), train = accepted ($trained)" \
        || bad "one document: held $held, trained $trained over 8 seeds"
    # an empty merges.txt beside a vocabulary with merged tokens: refused (was byte-level silently)
    printf '#version: 0.2\n' > "$T/merges0.txt"
    MERGES=$T/merges0.txt tj "$T/m.yaml" "$T/corpus.txt"
    expect_fail "empty merges.txt" "$T/merges0.txt: no merges (no line after #version), but the vocabulary has 40 multi-byte tokens" \
        60 2 tokenize "$T/m.yaml"
    # an empty job file: refused by stages, accepted by `config` (documented to run on defaults)
    : > "$T/empty.yaml"; printf '# nothing here\nsae:\n' > "$T/comments.yaml"
    cd "$T" || exit 1 # where ./runs/monosem would appear
    for st in train tokenize train-model generate; do
        expect_fail "empty job file: $st" "$T/empty.yaml: the job file sets no key (empty file)" 60 2 "$st" "$T/empty.yaml"
        [ -e "$T/runs" ] && bad "empty job file: $st created ./runs"
    done
    expect_fail "job file of comments" "the job file sets no key (only comments or empty sections)" 60 1 train "$T/comments.yaml"
    ms 60 1 config "$T/empty.yaml" && grep -q "name: monosem" "$T/last.log" && ok "config of an empty job prints the defaults" \
        || bad "config of an empty job: $(tail -2 "$T/last.log")"
    ms 60 1 train "$T/empty.yaml" --sae.activations=/nonexistent.h5 --run.out_dir="$T/ov"
    grep -q "sets no key" "$T/last.log" && bad "an empty job with overrides was refused as empty" || ok "an empty job with overrides is not 'empty'"
    ;;

resume)
    "$PY" "$HERE/../sae_train/make_synth.py" "$T/a.h5" --rows 12000 --d 16 --feats 32 --seed 2 || exit 1
    sae_job "$T/ja.yaml" "$T/ra" "$T/a.h5"
    ms 120 2 train "$T/ja.yaml" || { cat "$T/last.log"; bad "uninterrupted SAE run"; }
    # stopped at 8, then resumed with cadence/checkpoint changed, the out_dir moved and the
    # activations reached through another path (a symlink): same weights, bitwise
    sae_job "$T/jb.yaml" "$T/rb" "$T/a.h5"
    MONOSEM_TEST_HOOK=checkpoint:8:*:fail ms 120 2 train "$T/jb.yaml"
    mv "$T/rb" "$T/rb-moved"; mkdir -p "$T/other"; ln -s "$T/a.h5" "$T/other/acts-link.h5"
    sae_job "$T/jc.yaml" "$T/rb-moved" "$T/other/acts-link.h5"
    ms 120 2 train "$T/jc.yaml" --sae.log_every=3 --sae.checkpoint_every=5 --run.log_every_s=5 --run.name=renamed
    if grep -q "resuming from .* at step 8 of 24" "$T/last.log" &&
       cmp -s "$T/ra/sae/saelens/sae_weights.safetensors" "$T/rb-moved/sae/saelens/sae_weights.safetensors"; then
        ok "SAE resume with harmless changes: bitwise identical to the uninterrupted run"
    else bad "SAE harmless resume: $(tail -3 "$T/last.log")"; fi
    # result keys: refused, each named with both values
    sae_job "$T/jd.yaml" "$T/rd" "$T/a.h5"
    MONOSEM_TEST_HOOK=checkpoint:8:*:fail ms 120 2 train "$T/jd.yaml"
    expect_fail "SAE resume, changed lr and d_sae" \
        "$T/rd/sae/checkpoint.safetensors: changed since the checkpoint: sae.d_sae 64 -> 128, sae.lr 0.01 -> 0.02 (" \
        120 2 train "$T/jd.yaml" --sae.lr=0.02 --sae.d_sae=128
    expect_fail "SAE resume, changed seed" "changed since the checkpoint: run.seed 5 -> 6 (" 120 2 train "$T/jd.yaml" --run.seed=6
    # other data behind the same path: refused by content identity
    "$PY" "$HERE/../sae_train/make_synth.py" "$T/b.h5" --rows 12000 --d 16 --feats 32 --seed 3 || exit 1
    sae_job "$T/je.yaml" "$T/rd" "$T/b.h5"
    expect_fail "SAE resume on other activations" "is not the data the checkpoint was trained on" 120 2 train "$T/je.yaml"

    # train-model: cadence and checkpoint interval may change; lr may not
    corpus "$T/corpus.txt" 60
    "$PY" "$HERE/../train_model/make_tokenizer.py" "$T/tok" "$T/corpus.txt" 40 > /dev/null || exit 1
    model_job "$T/m.yaml" "$T/m1"
    ms 120 2 tokenize "$T/m.yaml" || { cat "$T/last.log"; exit 1; }
    ms 120 2 train-model "$T/m.yaml" --model.dir="$T/m1/model" || bad "train-model uninterrupted: $(tail -2 "$T/last.log")"
    MONOSEM_TEST_HOOK=checkpoint:20:0:kill ms 120 2 train-model "$T/m.yaml" --run.out_dir="$T/m2" --model.dir="$T/m2/model"
    expect_fail "train-model resume, changed lr" "checkpoint.safetensors: changed since the checkpoint: train_model.lr 0.005 -> 0.004 (" \
        120 2 train-model "$T/m.yaml" --run.out_dir="$T/m2" --model.dir="$T/m2/model" --train_model.lr=0.004
    ms 120 2 train-model "$T/m.yaml" --run.out_dir="$T/m2" --model.dir="$T/m2/model" \
        --train_model.log_every=3 --train_model.checkpoint_every=7 --train_model.eval_every=5
    if grep -q "resuming from .* at step 20" "$T/last.log" && cmp -s "$T/m1/model/model.safetensors" "$T/m2/model/model.safetensors"; then
        ok "train-model resume with other log/eval/checkpoint cadence: bitwise identical model"
    else bad "train-model harmless resume: $(tail -3 "$T/last.log")"; fi
    ms 120 2 train-model "$T/m.yaml" --run.out_dir="$T/m2" --model.dir="$T/m2/model"
    grep -q "train-model: already complete at step 30 (nothing to train)" "$T/last.log" &&
        cmp -s "$T/m1/model/model.safetensors" "$T/m2/model/model.safetensors" &&
        grep -q "heldout_loss_nats: [0-9]" "$T/m2/run-train-model.yaml" \
        && ok "rerun of a finished train-model: 'already complete', same model, held-out loss recorded" \
        || bad "rerun of a finished train-model: $(tail -2 "$T/last.log")"
    ;;

outputs)
    # -- a read-only file system (a read-only tmpfs; needs mount rights: root or a user namespace)
    ro=$T/ro; mkdir -p "$ro"
    if mount -t tmpfs -o ro,size=1m tmpfs "$ro" 2>/dev/null; then trap 'umount "$ro"' EXIT; rofs=1
    else rofs=0; echo "note: cannot mount a read-only tmpfs here: read-only checks skipped"; fi
    mkdir -p "$T/gtok"; "$PY" "$HERE/../generate/ref_generate.py" tokenizer "$T/gtok" > /dev/null || exit 1
    "${GEN_TOOL:?}" model "$T/model" 1 16 64 2 32 257 relu 7 > /dev/null || exit 1
    corpus "$T/corpus.txt" 12
    cat > "$T/g.yaml" <<EOF
run: {name: g, out_dir: $T/grun, seed: 11}
corpus: {format: text, paths: [$T/corpus.txt], delimiter: "<|doc|>", context: 32, heldout_fraction: 0.1, token_dir: $T/gtokens}
tokenizer: {vocab: $T/gtok/vocab.json, merges: $T/gtok/merges.txt}
model: {dir: $T/model}
generate: {sample_per_context: 8, shard_contexts: 8, batch: 8}
EOF
    if [ $rofs = 1 ]; then
        expect_fail "generate into a read-only FS" "$ro/acts.h5: cannot create the lock file $ro/.acts.h5.lock: Read-only file system" \
            120 2 generate "$T/g.yaml" --generate.out="$ro/acts.h5" --corpus.token_dir="$T/gtokens-ro"
        grep -q "free" "$T/last.log" && bad "read-only FS reported as missing space"
        echo "1 2 3 4 5 6 7 8" > "$T/ids.txt"
        expect_fail "forward into a read-only FS" "$ro/f.h5: cannot create the HDF5 file or its datasets: Read-only file system" \
            60 1 forward "$T/model" "$T/ids.txt" --hook blocks.0.mlp.hook_post --out "$ro/f.h5"
        ! grep -q "HDF5-DIAG\|#00[0-9]\|major:\|minor:" "$T/last.log" \
            && ok "one line, no HDF5 stack" || bad "HDF5 diagnostics printed: $(head -3 "$T/last.log")"
        "$PY" "$HERE/../sae_train/make_synth.py" "$T/a.h5" --rows 12000 --d 16 --feats 32 --seed 2 || exit 1
        sae_job "$T/s.yaml" "$ro/sae-run" "$T/a.h5"
        expect_fail "train into a read-only FS" "Read-only file system" 60 1 train "$T/s.yaml"
        # a full disk (64 KB tmpfs) while checkpointing: one line naming it, every rank exits
        mkdir -p "$T/full"
        if mount -t tmpfs -o size=64k tmpfs "$T/full"; then
            trap 'umount "$ro" "$T/full"' EXIT
            sae_job "$T/s.yaml" "$T/full/sae-run" "$T/a.h5"
            expect_fail "train, checkpoint on a full disk" "$T/full/sae-run/sae/checkpoint.safetensors: write failed: No space left on device" \
                60 2 train "$T/s.yaml"
            ls "$T/full/sae-run/sae" | grep -q "tmp" && bad "a temporary checkpoint was left on the full disk"
        fi
    fi

    # -- generate without a model: refused before the token directory is touched
    expect_fail "generate, model missing" "$T/nomodel/config.json: cannot read the model (model.dir): No such file or directory" \
        60 2 generate "$T/g.yaml" --model.dir="$T/nomodel"
    [ -e "$T/gtokens" ] && bad "generate without a model created/rewrote the token directory" || ok "token directory untouched"
    ms 120 2 generate "$T/g.yaml" || bad "generate: $(tail -2 "$T/last.log")"
    sum=$(cat "$T/gtokens"/* | sha256sum); mt=$(stat -c %Y.%y "$T/gtokens/manifest.json")
    touch "$T/corpus.txt" # makes the shards out of date: a missing model must still stop first
    expect_fail "generate, model missing, shards stale" "cannot read the model" 60 2 generate "$T/g.yaml" --model.dir="$T/nomodel"
    [ "$(cat "$T/gtokens"/* | sha256sum)" = "$sum" ] && [ "$(stat -c %Y.%y "$T/gtokens/manifest.json")" = "$mt" ] \
        && ok "existing token directory untouched" || bad "token directory rewritten before the model check"

    # -- tokenize: a smaller corpus replaces the shards; none of the earlier run stays beside it
    cat > "$T/t.yaml" <<EOF
run: {name: t, out_dir: $T/trun, seed: 1}
corpus: {format: text, paths: [$T/big.txt], delimiter: "<|doc|>", shard_tokens: 1024, token_dir: $T/ttok}
tokenizer: {vocab: $T/gtok/vocab.json, merges: $T/gtok/merges.txt}
EOF
    corpus "$T/big.txt" 120
    ms 60 2 tokenize "$T/t.yaml" || bad "tokenize big: $(tail -2 "$T/last.log")"
    n_big=$(ls "$T/ttok"/*.bin | wc -l)
    : > "$T/ttok/train-000099.bin.tmp.12345" # a killed run's temporary
    corpus "$T/big.txt" 10
    ms 60 2 tokenize "$T/t.yaml" || bad "tokenize small: $(tail -2 "$T/last.log")"
    listed=$("$PY" -c "import json,sys; m=json.load(open(sys.argv[1])); print(' '.join(sorted(e['file'] for s in ('train','heldout') for e in m[s])))" "$T/ttok/manifest.json")
    present=$(cd "$T/ttok" && ls | grep -v manifest.json | sort | tr '\n' ' ' | sed 's/ $//')
    [ "$listed" = "$present" ] && [ "$n_big" -gt "$(echo "$present" | wc -w)" ] \
        && ok "tokenize: only the manifest's shards remain ($n_big -> $(echo "$present" | wc -w) files)" \
        || bad "tokenize stale shards: manifest lists [$listed], directory has [$present]"

    # -- a rerun of a finished train reports the run's numbers, not zeros
    "$PY" "$HERE/../sae_train/make_synth.py" "$T/a2.h5" --rows 12000 --d 16 --feats 32 --seed 2 || exit 1
    sae_job "$T/s2.yaml" "$T/srun" "$T/a2.h5"
    ms 120 2 train "$T/s2.yaml" || bad "train: $(tail -2 "$T/last.log")"
    first=$(grep -E "sae.final_(loss|mse|fvu|l0)|sae.dead" "$T/srun/run.yaml")
    ms 120 2 train "$T/s2.yaml" || bad "train rerun: $(tail -2 "$T/last.log")"
    again=$(grep -E "sae.final_(loss|mse|fvu|l0)|sae.dead" "$T/srun/run.yaml")
    if grep -Eq "train: already complete at step 24 \(nothing to train\): loss (0\.[0-9]*[1-9]|[1-9])" "$T/last.log" &&
       ! grep -q "loss 0, MSE 0" "$T/last.log" && [ -n "$first" ] && [ "$first" = "$again" ]; then
        ok "rerun of a finished train: 'already complete', facts kept"
    else bad "rerun of a finished train: $(tail -2 "$T/last.log"); before: $first; after: $again"; fi
    ;;
*) echo "unknown case $CASE"; exit 2 ;;
esac
[ $fails -eq 0 ] && echo "$CASE: all checks passed" || { echo "$CASE: $fails failure(s)"; exit 1; }
