#!/usr/bin/env bash
# generate's rows do not depend on which rank, batch or thread computed them: 1, 2 and 3 ranks,
# generate.batch 45 / 8 / 13 and 2 / 1 BLAS threads give bitwise identical /acts, /index,
# /tokens. The model (GELU, d_mlp 100, context 30) puts batch 45's GEMMs above OpenBLAS's
# small-matrix cut and batch 8's below it, and the GELU tails off the 8-lane grid: before the
# fix 2.8% of the floats differed between batch 45 and batch 8.
set -u
: "${MS_BIN:?}" "${MS_MPIRUN:?}" "${MS_TEST_TMP:?}" "${MS_PYTHON:?}"
TOOL=${GEN_TOOL:?gen_tool path}
GENREF="$MS_PYTHON $(cd "$(dirname "$0")/../generate" && pwd)/ref_generate.py"
d="$MS_TEST_TMP/fault_gen_repro"
rm -rf "$d"; mkdir -p "$d/corpus" "$d/tok"
cd "$d" || exit 1
$GENREF tokenizer "$d/tok" || exit 1
"$MS_PYTHON" - "$d/corpus" <<'PY'
import random, sys
r = random.Random(3)
words = "the whale sea ship captain ahab white line boat harpoon crew deck storm wind sail oil night".split()
with open(f"{sys.argv[1]}/a.txt", "w") as out:
    for doc in range(40):
        out.write(" ".join(r.choice(words) for _ in range(r.randint(200, 400))) + "\n===\n")
PY
"$TOOL" model "$d/model" 1 32 100 2 64 257 gelu 9 || exit 1
cat > job.yaml <<JOB
run: {name: repro, out_dir: $d/run, seed: 5}
corpus: {format: text, paths: ["$d/corpus/*.txt"], delimiter: "===", context: 30, heldout_fraction: 0.05,
         token_dir: $d/tokens}
tokenizer: {vocab: $d/tok/vocab.json, merges: $d/tok/merges.txt}
model: {dir: $d/model, hook: blocks.0.mlp.hook_post}
generate: {sample_per_context: 30, shard_contexts: 90, dtype: float32}
JOB
fail=0
for c in "1 45 2" "2 8 1" "3 13 1" "1 7 1"; do
  set -- $c
  if timeout 120 "$MS_MPIRUN" -n "$1" $MS_MPI_FLAGS "$MS_BIN/monosem" generate job.yaml --generate.out=$d/n$1_b$2.h5 \
       --generate.batch=$2 --run.blas_threads=$3 > n$1_b$2.log 2>&1; then echo "ok: generate -n $1 batch $2 threads $3"
  else echo "FAIL: generate -n $1 batch $2: $(tail -3 n$1_b$2.log)"; fail=1; fi
done
[ $fail -eq 0 ] || exit 1
$GENREF same n1_b45.h5 n2_b8.h5 n3_b13.h5 n1_b7.h5 || exit 1
echo "ok: rows identical across ranks, batches and threads"
