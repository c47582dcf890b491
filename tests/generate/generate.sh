#!/usr/bin/env bash
# End-to-end tests of `monosem generate` / `monosem inspect` on a tiny random model over a small
# generated text corpus: identical files from -n 1/2/4, every row recomputed (C forward and a
# NumPy oracle via h5py), kill -9 mid-run then rerun == uninterrupted, float32 and another hook,
# inspect output, and bad inputs (one clear line, every rank exits non-zero, no hang).
set -u
: "${MS_BIN:?}" "${MS_MPIRUN:?}" "${MS_TEST_TMP:?}" "${MS_PYTHON:?}"
TOOL=${GEN_TOOL:?gen_tool path}
HERE=$(cd "$(dirname "$0")" && pwd)
REF="$MS_PYTHON $HERE/ref_generate.py"
d="$MS_TEST_TMP/generate"
rm -rf "$d"; mkdir -p "$d/corpus" "$d/tok" "$d/empty"
cd "$d" || exit 1
fail=0; pass=0
ok() { pass=$((pass+1)); echo "ok: $*"; }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
run() { # np, log, args...: monosem generate under mpirun with a timeout
  local np=$1 log=$2; shift 2
  timeout 120 "$MS_MPIRUN" -n "$np" $MS_MPI_FLAGS -x MONOSEM_TEST_HOOK "$MS_BIN/monosem" generate "$d/job.yaml" "$@" >"$log" 2>&1
}

# ---- fixtures: byte-level tokenizer (ids 0..255 + <|endoftext|> 256), text, a random model
$REF tokenizer "$d/tok" || exit 1
"$MS_PYTHON" - "$d/corpus" <<'EOF'
import random, sys
r = random.Random(5)
words = "the whale sea ship captain ahab white line boat harpoon crew deck storm wind sail oil night".split()
for f in range(3):
    with open(f"{sys.argv[1]}/part{f}.txt", "w") as out:
        for doc in range(12):
            n = r.randint(60, 220)
            out.write(" ".join(r.choice(words) for _ in range(n)).capitalize() + ".\n")
            out.write("===\n")
EOF
: > "$d/empty/a.txt"; : > "$d/empty/b.txt"
"$TOOL" model "$d/model" 1 16 64 2 32 257 relu 7 || exit 1
cat > "$d/job.yaml" <<EOF
run: {name: gen, out_dir: $d/run, seed: 11}
corpus: {format: text, paths: ["$d/corpus/*.txt"], delimiter: "===", context: 32, heldout_fraction: 0.1,
         token_dir: $d/tokens}
tokenizer: {vocab: $d/tok/vocab.json, merges: $d/tok/merges.txt}
model: {dir: $d/model, hook: blocks.0.mlp.hook_post}
generate: {sample_per_context: 8, shard_contexts: 24, batch: 8, dtype: float16}
EOF

# ---- 1, 2, 4 ranks: identical files; rows equal the recomputed activations
export MONOSEM_TEST_HOOK=
for np in 1 2 4; do
  if run $np n$np.log --generate.out=$d/n$np.h5 && [ -f n$np.h5 ] && [ ! -e n$np.h5.partial ]; then ok "generate -n $np"
  else bad "generate -n $np: $(tail -3 n$np.log)"; fi
done
grep -q "tokens/s" n2.log && ok "generate logs throughput" || bad "no throughput line: $(cat n2.log)"
$REF same n1.h5 n2.h5 n4.h5 && ok "-n 1/2/4 identical" || bad "-n 1/2/4 files differ"
"$TOOL" check n2.h5 "$d/model" "$d/tokens" && ok "C forward recompute" || bad "C recompute"
$REF ref n4.h5 "$d/model" && ok "NumPy oracle via h5py" || bad "NumPy oracle"
grep -q "generate.tokens_per_s" "$d/run/run-generate.yaml" && ok "run record" || bad "run record lacks generate facts"

# ---- rerun: up to date, nothing rewritten
run 2 again.log --generate.out=$d/n1.h5 && grep -q "is up to date" again.log && ok "up to date" \
  || bad "rerun not up to date: $(tail -2 again.log)"

# ---- kill -9 of a worker after its 1st shard, then rerun; kill of rank 0 between writing rows
#      and marking its shard done (-n 1), then rerun: same file as uninterrupted
MONOSEM_TEST_HOOK=shard:1:1:kill run 2 k1.log --generate.out=$d/k1.h5; rc=$?
if [ $rc -ne 0 ] && [ -f k1.h5.partial ] && [ ! -e k1.h5 ]; then ok "killed worker leaves a partial file (exit $rc)"
else bad "kill did not stop the run as expected (exit $rc)"; fi
"$MS_BIN/monosem" inspect k1.h5.partial > k1.inspect 2>&1; grep -q "complete  *NO" k1.inspect && ok "inspect shows incomplete" \
  || bad "inspect of partial: $(cat k1.inspect)"
out=$("$TOOL" check k1.h5.partial "$d/model" "$d/tokens" 2>&1); rc=$?
[ $rc -ne 0 ] && printf '%s' "$out" | grep -q "incomplete activations file" && ok "readers refuse the incomplete file" \
  || bad "reader on a partial file: $rc $out"
MONOSEM_TEST_HOOK= run 2 k1b.log --generate.out=$d/k1.h5
if [ $? -eq 0 ] && grep -qE "resuming .* [1-9][0-9]* of [0-9]+ shards already done" k1b.log; then ok "resume after kill"
else bad "resume after kill: $(cat k1b.log)"; fi
$REF same n1.h5 k1.h5 && ok "killed+resumed == uninterrupted (worker kill)" || bad "resumed file differs"
MONOSEM_TEST_HOOK=shard-rows:3:0:kill run 1 k2.log --generate.out=$d/k2.h5; rc=$?
[ $rc -ne 0 ] && [ -f k2.h5.partial ] && ok "kill between rows and mark (exit $rc)" || bad "mid-write kill (exit $rc)"
MONOSEM_TEST_HOOK= run 4 k2b.log --generate.out=$d/k2.h5 && grep -qE "resuming .* 2 of [0-9]+ shards already done" k2b.log \
  && ok "resume after mid-write kill redoes the unmarked shard" || bad "mid-write resume: $(cat k2b.log)"
$REF same n1.h5 k2.h5 && ok "killed+resumed == uninterrupted (rank 0 kill)" || bad "resumed file differs (rank 0 kill)"

# ---- float32 and a d_model-wide hook
run 2 f32.log --generate.out=$d/f32.h5 --generate.dtype=float32 && $REF ref f32.h5 "$d/model" \
  && ok "float32 store" || bad "float32: $(tail -2 f32.log)"
run 2 mid.log --generate.out=$d/mid.h5 --model.hook=blocks.0.hook_resid_mid --generate.sample_per_context=32 \
  && $REF ref mid.h5 "$d/model" && ok "hook_resid_mid, every position" || bad "resid_mid: $(tail -2 mid.log)"
run 2 seed.log --generate.out=$d/seed.h5 --run.seed=99 --corpus.heldout_fraction=0.1 --corpus.token_dir=$d/tokens99 \
  && $REF differ n1.h5 seed.h5 && ok "another seed samples other positions" || bad "seed: $(tail -2 seed.log)"

# ---- inspect
"$MS_BIN/monosem" inspect n1.h5 > insp.log 2>&1
if grep -q "complete  *yes" insp.log && grep -qE "acts  *\([0-9]+, 64\) float16" insp.log && grep -q "hook  *blocks.0.mlp.hook_post" insp.log \
   && grep -q "model_sha256  *$(sha256sum "$d/model/model.safetensors" | cut -c1-64)" insp.log && grep -q "frac>0" insp.log; then ok "inspect"
else bad "inspect output: $(cat insp.log)"; fi
"$MS_BIN/monosem" inspect "$d/nope.h5" > insp2.log 2>&1; rc=$?
[ $rc -ne 0 ] && grep -q "nope.h5: activations file not found" insp2.log && ok "inspect missing file" || bad "inspect missing: $rc $(cat insp2.log)"

# ---- bad inputs: exit non-zero on every rank (mpirun's code), the message once, no hang
expect_err() { # name np want-substring args...
  local name=$1 np=$2 want=$3; shift 3
  local out rc n
  out=$(timeout 60 "$MS_MPIRUN" -n "$np" $MS_MPI_FLAGS "$MS_BIN/monosem" generate "$d/job.yaml" "$@" 2>&1 >/dev/null); rc=$?
  n=$(printf '%s\n' "$out" | grep -cF -- "$want")
  if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ "$n" -eq 1 ]; then ok "bad input: $name (exit $rc)"
  else bad "bad input $name: exit $rc, message seen $n times; want '$want'; got: $out"; fi
}
expect_err hook 3 "key 'model.hook': hook 'blocks.3.mlp.hook_post': layer 3 outside 0..0" \
  --model.hook=blocks.3.mlp.hook_post --generate.out=$d/bad1.h5
: > "$d/afile"
expect_err out_path 2 "$d/afile" --generate.out=$d/afile/acts.h5
mkdir -p "$d/dir.h5.partial"
expect_err unwritable 2 "$d/dir.h5.partial: cannot create the activations file" --generate.out=$d/dir.h5
expect_err empty_corpus 2 "hold no document with text: the train split would be empty" --corpus.paths="[$d/empty/*.txt]" \
  --corpus.token_dir=$d/tok_empty --generate.out=$d/bad3.h5
expect_err no_model 2 "$d/nomodel" --model.dir=$d/nomodel --generate.out=$d/bad4.h5
# disk full: a file-size limit smaller than the store (SIGXFSZ ignored, as monosem does, so a
# write past it fails with EFBIG instead of killing) -> refused up front, every rank exits
"$TOOL" model "$d/wide" 1 16 1024 2 32 257 relu 3 || exit 1
out=$( (trap '' XFSZ; ulimit -f 30000; timeout 60 "$MS_MPIRUN" -n 2 $MS_MPI_FLAGS "$MS_BIN/monosem" generate "$d/job.yaml" \
        --generate.out=$d/full.h5 --generate.dtype=float32 --generate.sample_per_context=16 --model.dir=$d/wide 2>&1 >/dev/null) ); rc=$?
n=$(printf '%s\n' "$out" | grep -cE "full.h5.partial: the activations store needs [0-9.]+ MB but the file size limit")
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ "$n" -eq 1 ]; then ok "bad input: file too large for the limit (exit $rc)"
else bad "disk full: exit $rc, message seen $n times; got: $out"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
