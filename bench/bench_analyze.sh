#!/usr/bin/env bash
# bench/bench_analyze.sh: `monosem analyze` (both passes, every SAE of the job and the neurons)
# against `monosem generate` on the same model, ranks and machine, in one run. Uses a job whose
# model, token shards and SAE exist (default: the demo's, after scripts/demo); outputs go to a
# scratch directory, never into the job's directories.
# usage: bench/bench_analyze.sh [JOB] [NP] [--key=value ...]   (defaults jobs/demo.yaml, 2)
set -eu
job=${1:-jobs/demo.yaml}; np=${2:-2}; shift $(( $# > 2 ? 2 : $# )) || true
bin=${MS_BIN:-build/apps}
tmp=${BENCH_DIR:-/tmp/monosem_bench_analyze}
rm -rf "$tmp"; mkdir -p "$tmp"
flags=(--oversubscribe); [ "$(id -u)" = 0 ] && flags+=(--allow-run-as-root)
tokens=${BENCH_TOKENS:-1000000}
# generate over the same number of tokens, every position (what analyze sees), written to scratch
mpirun -n "$np" "${flags[@]}" "$bin/monosem" generate "$job" --run.out_dir="$tmp/gen" \
  --generate.out="$tmp/gen/activations.h5" --generate.tokens="$tokens" --generate.sample_per_context=128 \
  --corpus.paths=[] "$@" > "$tmp/generate.log" 2>&1 || { cat "$tmp/generate.log"; exit 1; }
mpirun -n "$np" "${flags[@]}" "$bin/monosem" analyze "$job" --run.out_dir="$tmp/an" \
  --analyze.out_dir="$tmp/an/out" --analyze.tokens="$tokens" "$@" > "$tmp/analyze.log" 2>&1 || { cat "$tmp/analyze.log"; exit 1; }
g=$(awk '/generate.tokens_per_s/ {gsub(/"/,"",$2); print $2}' "$tmp/gen/run-generate.yaml")
a=$(awk '/analyze.tokens_per_s/ {gsub(/"/,"",$2); print $2}' "$tmp/an/run-analyze.yaml")
# process CPU seconds (average over ranks) of each stage: on a shared machine the wall-clock
# rates follow the load, the CPU cost per token much less
cpu() { awk '/^  cpu:/ {f=1} f && /avg:/ {print $2; exit}' "$1"; }
gc=$(cpu "$tmp/gen/run-generate.yaml"); ac=$(cpu "$tmp/an/run-analyze.yaml")
grep -E "tokens in|tokens/s" "$tmp/analyze.log" | tail -1
awk -v g="$g" -v a="$a" -v np="$np" -v gc="$gc" -v ac="$ac" -v n="$tokens" 'BEGIN {
  printf "analyze %d rank(s): %.0f tokens/s; generate on the same model and ranks: %.0f tokens/s; ratio %.2f (goal >= 0.5)\n", np, a, g, a / g
  printf "CPU cost: analyze %.1f us/token, generate %.1f us/token (CPU s x ranks / tokens); ratio %.2f\n", ac * np / n * 1e6, gc * np / n * 1e6, gc / ac }'
