#!/usr/bin/env bash
# End-to-end tests of `monosem analyze` on a tiny random model and SAE: the outputs of 1 and 3
# ranks are identical, and every dataset equals a brute-force NumPy recomputation from the
# weights and the token shards (top-k, windows, interval samples, histograms, logit effects,
# measures); on a model whose MLP sees the current token only, planted single-token features
# rank as more single-meaning than two-token features and than the neurons; bad inputs fail
# with one line on every rank.
set -u
: "${MS_BIN:?}" "${MS_MPIRUN:?}" "${MS_TEST_TMP:?}" "${MS_PYTHON:?}"
HERE=$(cd "$(dirname "$0")" && pwd)
REF="$MS_PYTHON $HERE/ref_analyze.py"
d="$MS_TEST_TMP/analyze"
rm -rf "$d"; mkdir -p "$d"
cd "$d" || exit 1
fail=0; pass=0
ok() { pass=$((pass+1)); echo "ok: $*"; }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
run() { # np dir log args...
  local np=$1 dir=$2 log=$3; shift 3
  timeout 300 "$MS_MPIRUN" -n "$np" $MS_MPI_FLAGS "$MS_BIN/monosem" analyze "$dir/job.yaml" "$@" >"$log" 2>&1
}
job() { # dir: a job over dir's fixtures
  local x=$1
  cat > "$x/job.yaml" <<EOT
run: {name: an, out_dir: $x/run, seed: 77}
corpus: {format: text, paths: ["$x/corpus/*.txt"], delimiter: "===", context: 32, heldout_fraction: 0.1,
         token_dir: $x/tokens}
tokenizer: {vocab: $x/tok/vocab.json, merges: $x/tok/merges.txt}
model: {dir: $x/model, hook: blocks.0.mlp.hook_post}
sae: {out_dir: $x/sae, d_sae: 96}
generate: {sample_per_context: 8}
analyze: {tokens: 1300, batch: 4, top_k: 6, context_window: 3, intervals: 11, interval_samples: 3,
          hist_bins: 16, n_logits: 5}
EOT
}

# ---- random model and SAE: 1 vs 3 ranks, NumPy oracle
mkdir -p r && $REF fixtures "$d/r" || exit 1
job "$d/r"
timeout 120 "$MS_BIN/monosem" tokenize "$d/r/job.yaml" > r/tokenize.log 2>&1 || { bad "tokenize: $(tail -3 r/tokenize.log)"; }
for np in 1 3; do
  if run $np "$d/r" r/n$np.log --analyze.out_dir=$d/r/out$np; then ok "analyze -n $np"
  else bad "analyze -n $np: $(tail -5 r/n$np.log)"; fi
done
for k in sae neurons; do
  $REF same r/out1/$k/analysis.h5 r/out3/$k/analysis.h5 && ok "$k: -n 1 and -n 3 identical" || bad "$k: -n 1 / -n 3 differ"
  $REF check "$d/r" r/out3/$k/analysis.h5 $k && ok "$k: NumPy recomputation" || bad "$k: NumPy recomputation"
done
grep -q "features vs neurons" r/n3.log && grep -q "top_token_share" r/n3.log && ok "comparison printed" \
  || bad "no comparison table: $(cat r/n3.log)"
[ "$(grep -c "features vs neurons" r/n3.log)" = 1 ] && ok "printed once (rank 0)" || bad "printed more than once"
grep -q "analyze.sae.median_top_token_share" r/run/run-analyze.yaml && grep -q "analyze.neurons.median_eff_tokens" r/run/run-analyze.yaml \
  && grep -q "analyze.tokens_per_s" r/run/run-analyze.yaml && ok "run record" || bad "run record lacks analyze facts"
# default places: beside the SAE and under run.out_dir/neurons
run 2 "$d/r" r/def.log && [ -f r/sae/analysis.h5 ] && [ -f r/run/neurons/analysis.h5 ] && ok "default output places" \
  || bad "default outputs: $(tail -3 r/def.log)"
$REF same r/out1/sae/analysis.h5 r/sae/analysis.h5 && ok "-n 2 identical too" || bad "-n 2 differs"

# ---- planted single-token features vs neurons
mkdir -p p && $REF fixtures "$d/p" planted || exit 1
job "$d/p"
sed -i 's/d_sae: 96/d_sae: 15/' p/job.yaml
timeout 120 "$MS_BIN/monosem" tokenize "$d/p/job.yaml" > p/tokenize.log 2>&1 || bad "tokenize (planted)"
if run 2 "$d/p" p/n2.log --analyze.tokens=3000; then ok "analyze planted"; else bad "analyze planted: $(tail -5 p/n2.log)"; fi
$REF planted p/sae/analysis.h5 p/run/neurons/analysis.h5 "$d/p" && ok "planted features rank as single-meaning" \
  || bad "planted ranking"

# ---- a saes: list mixing architectures (issue 21): every stage opens a trained SAE the one way,
# from what training saved, so a topk entry over a relu-l1 sae section is encoded as topk by
# analyze and compare alike (they once rebuilt it from the job's sae section, as relu-l1)
mkdir -p m && $REF fixtures "$d/m" && $REF mixed "$d/m" || exit 1
job "$d/m"
sed -i "s/heldout_fraction: 0.1/heldout_fraction: 0.3/" m/job.yaml # eval needs held-out contexts
cat >> m/job.yaml <<EOT
saes:
  - {name: R, d_sae: 96}
  - {name: TK, arch: topk, k: 4, k_aux: 24, d_sae: 48}
compare: {tokens: 640}
eval: {tokens: 256}
EOT
timeout 120 "$MS_BIN/monosem" tokenize "$d/m/job.yaml" > m/tokenize.log 2>&1 || bad "tokenize (mixed)"
run 2 "$d/m" m/analyze.log && ok "analyze (mixed saes)" || bad "analyze mixed: $(tail -5 m/analyze.log)"
for n in R TK; do
  $REF check "$d/m" m/run/sae-$n/analysis.h5 sae "$d/m/run/sae-$n" && ok "$n: analyze = NumPy encoding of the saved SAE" \
    || bad "$n: analyze differs from a NumPy encoding of the saved SAE"
done
timeout 300 "$MS_MPIRUN" -n 2 $MS_MPI_FLAGS "$MS_BIN/monosem" eval "$d/m/job.yaml" > m/eval.log 2>&1 || bad "eval mixed: $(tail -5 m/eval.log)"
"$MS_PYTHON" - "$d/m/run" <<'PYEOF' && ok "TK: eval L0 = k and analyze's densities sum to it" || bad "TK: eval/analyze L0 disagree"
import sys, json, h5py
d = sys.argv[1]
l0 = json.load(open(f"{d}/sae-TK/eval.json"))["reconstruction"]["l0"]
dens = h5py.File(f"{d}/sae-TK/analysis.h5", "r")["density"][:].sum()
print(f"TK: eval L0 {l0:.3f}, sum of analyze densities {dens:.3f} (k 4)")
sys.exit(0 if 3.5 <= l0 <= 4 and 3.5 <= dens <= 4 + 1e-4 and abs(l0 - dens) < 0.25 else 1)
PYEOF
timeout 300 "$MS_MPIRUN" -n 2 $MS_MPI_FLAGS "$MS_BIN/monosem" compare "$d/m/job.yaml" > m/compare.log 2>&1 || bad "compare mixed: $(tail -5 m/compare.log)"
$REF corr "$d/m" m/run/compare/splitting.h5 TK R 640 && ok "compare: TK vs R activation correlations = NumPy's" \
  || bad "compare: TK vs R correlations differ from NumPy's encoding of the saved SAEs"

# ---- bad inputs: one line, every rank non-zero, no hang
run 2 "$d/r" b1.log --sae.out_dir=$d/nowhere; rc=$?
[ $rc -ne 0 ] && grep -q "nowhere/saelens/cfg.json" b1.log && ok "missing SAE: clear error (exit $rc)" \
  || bad "missing SAE: rc $rc $(cat b1.log)"
run 2 "$d/r" b2.log --model.hook=blocks.0.hook_resid_mid; rc=$?
[ $rc -ne 0 ] && grep -q "d_in 64" b2.log && ok "SAE/hook width mismatch refused (exit $rc)" || bad "width mismatch: rc $rc $(cat b2.log)"

run 2 "$d/r" b3.log --analyze.out_dir=$d/r/outtmp --analyze.scratch_dir=$d/r/job.yaml/x; rc=$?
[ $rc -ne 0 ] && [ "$(grep -c "cannot create a scratch file" b3.log)" = 1 ] && [ ! -e r/outtmp/sae/analysis.h5 ] \
  && ok "unusable scratch directory: one line, no output (exit $rc)" || bad "bad scratch dir: rc $rc $(cat b3.log)"

echo "analyze tests: $pass passed, $fail failed"
[ $fail -eq 0 ]
